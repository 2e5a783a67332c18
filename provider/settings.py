"""The provider's settings: one frozen dataclass built from argv and the environment.

Every flag has an environment equivalent so a Deployment can configure the provider either way;
an explicit flag wins over the environment. Parsing does no I/O: files named here are read when
the application starts, so a bad path is reported once, by the component that owns the file.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from atcr_verify import (
    ConfigError,
    IdentitySettings,
    NetworkSettings,
    RegistrySettings,
    VerifierSettings,
)

DEFAULT_LISTEN = "0.0.0.0:8443"
DEFAULT_HEALTH_LISTEN = "0.0.0.0:8080"
DEFAULT_PLC_URL = "https://plc.directory"
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_DEADLINE_SECONDS = 30.0
"""Kubernetes caps admission webhooks at 30 s; a longer deadline can never be used."""

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_CONFIGMAP_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_TRUE = frozenset({"1", "true", "yes", "on"})

_EPILOG = """\
environment (a flag given on the command line wins):
  ATCR_PROVIDER_LISTEN            --listen            (default 0.0.0.0:8443, HTTPS only)
  ATCR_PROVIDER_TLS_CERT          --tls-cert          (default /certs/tls.crt)
  ATCR_PROVIDER_TLS_KEY           --tls-key           (default /certs/tls.key)
  ATCR_PROVIDER_CLIENT_CA         --client-ca         (set: mTLS required)
  ATCR_PROVIDER_HEALTH_LISTEN     --health-listen     (default 0.0.0.0:8080, plain HTTP)
  ATCR_POLICY                     --policy-file       (a file, or a directory of policy files)
  ATCR_POLICY_CONFIGMAP           --policy-configmap  (NAMESPACE/NAME)
  ATCR_POLICY_KEY                 --policy-key        (default policy.yaml)
  KUBECONFIG                      --kubeconfig        (outside a cluster)
  ATCR_PROVIDER_DEADLINE          --deadline          (default 2.5 seconds)
  ATCR_PLC_URL                    --plc-url
  ATCR_PLAIN_HTTP                 --plain-http        (comma-separated HOST:PORT)
  ATCR_ALLOW_PRIVATE_NETWORKS=1   --allow-private-networks
  ATCR_ALLOW_NETWORKS             --allow-network     (comma-separated CIDRs)
  ATCR_PROVIDER_MAX_CONCURRENCY   --max-concurrency   (default 32)
  ATCR_PROVIDER_MAX_KEYS          --max-keys          (default 1000)
  ATCR_PROVIDER_RELOAD_INTERVAL   --reload-interval   (default 5 seconds)
  ATCR_PROVIDER_LOG_LEVEL         --log-level         (default info)
"""


class HostPort(NamedTuple):
    """A listen address; ``host`` is bracket-free (``::`` for ``[::]:8443``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# A pod serves on all of its interfaces.
_ALL_INTERFACES_HTTPS = HostPort("0.0.0.0", 8443)  # noqa: S104
_ALL_INTERFACES_HEALTH = HostPort("0.0.0.0", 8080)  # noqa: S104


class ConfigMapRef(NamedTuple):
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Everything the provider process needs; ``verifier`` configures the core."""

    listen: HostPort = _ALL_INTERFACES_HTTPS
    tls_cert: Path = Path("/certs/tls.crt")
    tls_key: Path = Path("/certs/tls.key")
    client_ca: Path | None = None
    """When set, every client must present a certificate that chains to this CA (mTLS)."""
    health_listen: HostPort = _ALL_INTERFACES_HEALTH
    policy_file: Path | None = None
    policy_configmap: ConfigMapRef | None = None
    policy_key: str = "policy.yaml"
    kubeconfig: Path | None = None
    """Outside a cluster; inside one (``KUBERNETES_SERVICE_HOST`` set) the pod's account is used."""
    deadline: float = 2.5
    """Seconds for the whole answer; keep it below the Provider's ``timeout``."""
    max_concurrency: int = 32
    """Cold verifications running at once, across all requests."""
    max_keys: int = 1000
    max_key_length: int = 4096
    max_body_bytes: int = 1024 * 1024
    reload_interval: float = 5.0
    """How often certificate and policy files are polled (mounted Secrets have no inotify)."""
    watch_timeout: float = 300.0
    """Server-side timeout of one ConfigMap watch call; the watch then resumes where it was."""
    log_level: str = "info"
    verifier: VerifierSettings = field(default_factory=VerifierSettings)

    def __post_init__(self) -> None:
        if (self.policy_file is None) == (self.policy_configmap is None):
            raise ConfigError("give exactly one of --policy-file and --policy-configmap")
        if not 0 < self.deadline <= MAX_DEADLINE_SECONDS:
            raise ConfigError(f"--deadline must be between 0 and {MAX_DEADLINE_SECONDS:g} seconds")
        for name in ("max_concurrency", "max_keys", "max_key_length", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer")
        if self.reload_interval <= 0 or self.watch_timeout <= 0:
            raise ConfigError("reload and watch intervals must be positive")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
        if not self.policy_key or "/" in self.policy_key:
            raise ConfigError("--policy-key must be a file or ConfigMap key name")


def parse_host_port(text: str) -> HostPort:
    """``HOST:PORT`` or ``[V6]:PORT``; port 0 picks a free port (tests)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return HostPort(host, int(port))


def parse_configmap_ref(text: str) -> ConfigMapRef:
    namespace, sep, name = text.partition("/")
    if (
        not sep
        or len(namespace) > 63
        or not _NAMESPACE.fullmatch(namespace)
        or len(name) > 253
        or not _CONFIGMAP_NAME.fullmatch(name)
    ):
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {text!r}")
    return ConfigMapRef(namespace, name)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text!r}")
    return int(text)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser; defaults come from ``env`` so tests need not touch ``os.environ``."""
    parser = argparse.ArgumentParser(
        prog="atcr-verify-provider",
        description="OPA Gatekeeper external data provider: answers whether container images "
        "were published by trusted ATProto identities.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    add = parser.add_argument
    add(
        "--listen",
        type=parse_host_port,
        metavar="HOST:PORT",
        default=env.get("ATCR_PROVIDER_LISTEN", DEFAULT_LISTEN),
        help="HTTPS address for POST /validate",
    )
    add(
        "--tls-cert",
        type=Path,
        metavar="PATH",
        default=env.get("ATCR_PROVIDER_TLS_CERT", "/certs/tls.crt"),
        help="server certificate chain (PEM); reloaded when it changes",
    )
    add(
        "--tls-key",
        type=Path,
        metavar="PATH",
        default=env.get("ATCR_PROVIDER_TLS_KEY", "/certs/tls.key"),
        help="server private key (PEM); reloaded when it changes",
    )
    add(
        "--client-ca",
        type=Path,
        metavar="PATH",
        default=env.get("ATCR_PROVIDER_CLIENT_CA") or None,
        help="require client certificates signed by this CA (Gatekeeper's ca.crt)",
    )
    add(
        "--health-listen",
        type=parse_host_port,
        metavar="HOST:PORT",
        default=env.get("ATCR_PROVIDER_HEALTH_LISTEN", DEFAULT_HEALTH_LISTEN),
        help="plain HTTP address for /healthz, /readyz and /metrics",
    )
    source = parser.add_argument_group("trust policy (exactly one source)")
    source.add_argument(
        "--policy-file",
        type=Path,
        metavar="PATH",
        default=None,
        help="policy file, or a directory holding policy.yaml and policy.<namespace>.yaml",
    )
    source.add_argument(
        "--policy-configmap",
        type=parse_configmap_ref,
        metavar="NAMESPACE/NAME",
        default=None,
        help="ConfigMap watched through the Kubernetes API",
    )
    source.add_argument(
        "--policy-key",
        default=env.get("ATCR_POLICY_KEY", "policy.yaml"),
        help="key (or file name) of the default policy (default policy.yaml)",
    )
    source.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        default=env.get("KUBECONFIG") or None,
        help="kubeconfig for running outside a cluster",
    )
    add(
        "--deadline",
        type=_positive_float,
        metavar="SECONDS",
        default=env.get("ATCR_PROVIDER_DEADLINE", "2.5"),
        help="seconds for a whole answer, below the Provider timeout (default 2.5)",
    )
    add(
        "--plc-url",
        metavar="URL",
        default=env.get("ATCR_PLC_URL", DEFAULT_PLC_URL),
        help="PLC directory for did:plc (default https://plc.directory)",
    )
    add(
        "--plain-http",
        action="append",
        metavar="HOST:PORT",
        default=None,
        help="registry reached over plain HTTP (repeatable)",
    )
    add(
        "--allow-private-networks",
        action="store_true",
        default=env.get("ATCR_ALLOW_PRIVATE_NETWORKS", "").lower() in _TRUE,
        help="allow loopback/private addresses and http:// PDS endpoints",
    )
    add(
        "--allow-network",
        action="append",
        type=_network,
        metavar="CIDR",
        default=None,
        help="allow one non-public network, e.g. 10.0.0.0/8 (repeatable)",
    )
    add(
        "--max-concurrency",
        type=_positive_int,
        metavar="N",
        default=env.get("ATCR_PROVIDER_MAX_CONCURRENCY", "32"),
        help="cold verifications at once, across requests (default 32)",
    )
    add(
        "--max-keys",
        type=_positive_int,
        metavar="N",
        default=env.get("ATCR_PROVIDER_MAX_KEYS", "1000"),
        help="keys accepted in one request; more is a systemError (default 1000)",
    )
    add(
        "--reload-interval",
        type=_positive_float,
        metavar="SECONDS",
        default=env.get("ATCR_PROVIDER_RELOAD_INTERVAL", "5"),
        help="how often certificate and policy files are checked for changes (default 5)",
    )
    add(
        "--log-level",
        choices=LOG_LEVELS,
        default=env.get("ATCR_PROVIDER_LOG_LEVEL", "info").lower(),
    )
    return parser


def parse_settings(argv: Sequence[str] | None, env: Mapping[str, str]) -> ProviderSettings:
    """Settings from ``argv`` and ``env``; usage errors exit 2 (argparse), others raise
    :class:`ConfigError`."""
    parser = build_parser(env)
    args = parser.parse_args(argv)
    plain_http = (
        args.plain_http if args.plain_http is not None else _split(env.get("ATCR_PLAIN_HTTP"))
    )
    if args.allow_network is not None:
        networks = tuple(args.allow_network)
    else:
        try:
            networks = tuple(_network(c) for c in _split(env.get("ATCR_ALLOW_NETWORKS")))
        except argparse.ArgumentTypeError as exc:
            parser.error(f"ATCR_ALLOW_NETWORKS: {exc}")
    policy_file, policy_configmap = args.policy_file, args.policy_configmap
    if policy_file is None and policy_configmap is None:  # no flag: the environment decides
        try:
            policy_file = Path(env["ATCR_POLICY"]) if env.get("ATCR_POLICY") else None
            configmap = env.get("ATCR_POLICY_CONFIGMAP")
            policy_configmap = parse_configmap_ref(configmap) if configmap else None
        except argparse.ArgumentTypeError as exc:
            parser.error(f"ATCR_POLICY_CONFIGMAP: {exc}")
    private = bool(args.allow_private_networks)
    verifier = VerifierSettings(
        network=NetworkSettings(allow_private_networks=private, allowed_networks=networks),
        registry=RegistrySettings(plain_http_hosts=frozenset(plain_http)),
        identity=IdentitySettings(
            plc_url=args.plc_url,
            allow_http_pds=private or bool(networks),
            allow_did_web_localhost_port=private,
        ),
        verify_timeout=args.deadline,
        # Handles are display-only and the provider never shows them: skip the DNS/HTTPS work.
        verify_handles=False,
    )
    try:
        return ProviderSettings(
            listen=args.listen,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            client_ca=args.client_ca,
            health_listen=args.health_listen,
            policy_file=policy_file,
            policy_configmap=policy_configmap,
            policy_key=args.policy_key,
            kubeconfig=args.kubeconfig,
            deadline=args.deadline,
            max_concurrency=args.max_concurrency,
            max_keys=args.max_keys,
            reload_interval=args.reload_interval,
            log_level=args.log_level,
            verifier=verifier,
        )
    except ConfigError as exc:
        parser.error(exc.reason)
