"""TLS 1.3 server contexts with optional mTLS, reloaded from disk without a restart.

The listening socket keeps the context it was created with; that first context carries an
``sni_callback`` that moves every new handshake to the *current* context (OpenSSL's
``SSL_set_SSL_CTX``: certificate, key and client-CA store all come from the new context). OpenSSL
calls the servername callback on every ClientHello, with or without SNI, so clients that connect
by IP address are switched too. Connections already open keep their certificate.

Files are polled (:mod:`provider.reload`) because a rotated Secret is a symlink swap. A reload
that fails (a half-written pair, a key that does not match) keeps the previous context.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from structlog.typing import FilteringBoundLogger

from atcr_verify import ConfigError

from .metrics import ProviderMetrics
from .reload import stamps


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())


def build_server_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS 1.3-only server context; with a client CA, a client certificate is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(files.cert, files.key)
        if files.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=files.client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files {_names(files)}: {exc}") from exc
    return context


def certificate_expiry(cert: Path) -> float | None:
    """notAfter of the first certificate in ``cert`` (Unix time), for the expiry metric."""
    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return None
    return leaf.not_valid_after_utc.timestamp()


class ReloadingServerContext:
    """Owns the listening context and swaps the one used for new handshakes on file changes."""

    def __init__(
        self, files: TlsFiles, metrics: ProviderMetrics, logger: FilteringBoundLogger
    ) -> None:
        self.files = files
        self._metrics = metrics
        self._log = logger
        self._seen = stamps(files.paths)
        self._failed: object = None
        self.server_context = build_server_context(files)
        """The context to listen with; never replaced (the socket keeps it)."""
        self.current = self.server_context
        self.server_context.sni_callback = self._select
        self.reloads = 0
        self._record_expiry()

    def _select(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        current = self.current
        if current is not context:
            connection.context = current

    def check(self) -> bool:
        """Reload when a file changed; True when a new context is in force."""
        seen = stamps(self.files.paths)
        if seen in (self._seen, self._failed):
            return False
        try:
            context = build_server_context(self.files)
        except ConfigError as error:
            # A rotation may be half-way (new cert, old key): keep serving; the next change of
            # any file is tried again.
            self._failed = seen
            self._metrics.tls_reloads.labels("failure").inc()
            self._log.error("TLS reload failed; keeping the previous certificate", error=str(error))
            return False
        self._seen = seen
        self.current = context
        self.reloads += 1
        self._metrics.tls_reloads.labels("success").inc()
        self._record_expiry()
        self._log.info("TLS certificate reloaded", files=_names(self.files))
        return True

    def _record_expiry(self) -> None:
        expiry = certificate_expiry(self.files.cert)
        if expiry is not None:
            self._metrics.tls_expiry.set(expiry)


def _names(files: TlsFiles) -> str:
    return ", ".join(str(p) for p in files.paths)
