"""ATProto identity: DID documents (did:plc, did:web) and bidirectional handle checks.

The DID document is the only authority for a signer's key and PDS: whatever a signature artifact
claims is a hint. Resolution is strict (``id`` must equal the DID, exactly one usable ``#atproto``
key, a well-formed ``#atproto_pds`` endpoint) because a lenient parser is an attacker's lever.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .crypto import PublicKey, parse_legacy_key, parse_multikey
from .errors import (
    DidDocumentError,
    Fault,
    KeyFormatError,
    MalformedData,
    NotFound,
    UpstreamError,
    VerifyError,
)
from .net import HttpFetcher

_DID_PLC = re.compile(r"did:plc:[a-z2-7]{24}")
_DID_GENERIC = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_HANDLE = re.compile(
    r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)
_HOSTNAME = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DISALLOWED_TLDS = frozenset(
    {"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"}
)
_LEGACY_KEY_TYPES = frozenset(
    {"EcdsaSecp256k1VerificationKey2019", "EcdsaSecp256r1VerificationKey2019"}
)
_MAX_DID_LENGTH = 2048
_MAX_HANDLE_LENGTH = 253


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    """Where and how identities are resolved."""

    plc_url: str = "https://plc.directory"
    max_document_bytes: int = 64 * 1024
    allow_http_pds: bool = False
    """Accept ``http://`` PDS endpoints (local test networks only)."""
    allow_did_web_localhost_port: bool = False
    """Accept ``did:web:localhost%3A<port>`` over http (local test setups only)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a DID document says, reduced to what verification needs."""

    did: str
    signing_key: PublicKey
    pds_endpoint: str
    claimed_handle: str | None
    """First ``at://`` alias; only a bidirectional check turns it into a verified handle."""


def validate_did(did: str) -> None:
    """Raise :class:`DidDocumentError` unless ``did`` is a did:plc or did:web we can resolve."""
    if len(did) > _MAX_DID_LENGTH or not _DID_GENERIC.fullmatch(did):
        raise DidDocumentError(f"not a valid DID: {did[:80]!r}")
    if did.startswith("did:plc:"):
        if not _DID_PLC.fullmatch(did):
            raise DidDocumentError(f"not a valid did:plc: {did[:80]!r}")
        return
    if did.startswith("did:web:"):
        _did_web_host(did, allow_localhost_port=True)
        return
    raise DidDocumentError(f"unsupported DID method: {did.split(':')[1]!r}")


def _did_web_host(did: str, *, allow_localhost_port: bool) -> str:
    """The host of a did:web; paths are refused, a port only for localhost in test setups."""
    suffix = did[len("did:web:") :]
    if ":" in suffix:
        raise DidDocumentError("did:web with a path is not supported by atproto")
    host = unquote(suffix).lower()
    name, _, port = host.partition(":")
    if port and (name != "localhost" or not port.isdigit() or not allow_localhost_port):
        raise DidDocumentError("did:web may carry a port only for localhost in test setups")
    if not _HOSTNAME.fullmatch(name):
        raise DidDocumentError(f"did:web host is not a hostname: {name[:80]!r}")
    return host


def validate_handle(handle: str) -> str:
    """Normalise a handle (lowercase) or raise :class:`MalformedData`."""
    if len(handle) > _MAX_HANDLE_LENGTH or not _HANDLE.fullmatch(handle):
        raise MalformedData(f"not a valid handle: {handle[:80]!r}")
    normalised = handle.lower()
    if normalised.rsplit(".", 1)[-1] in _DISALLOWED_TLDS:
        raise MalformedData(f"handle uses a disallowed top-level domain: {normalised!r}")
    return normalised


def parse_did_document(did: str, body: bytes, *, allow_http_pds: bool = False) -> Identity:
    """Parse a DID document fetched for ``did`` into an :class:`Identity`."""
    try:
        document = json.loads(body, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise DidDocumentError(f"DID document for {did} is not valid JSON") from exc
    if not isinstance(document, dict):
        raise DidDocumentError("DID document is not a JSON object")
    if document.get("id") != did:
        raise DidDocumentError(f"DID document id does not match {did}")
    return Identity(
        did=did,
        signing_key=_atproto_key(did, document.get("verificationMethod")),
        pds_endpoint=_atproto_pds(document.get("service"), allow_http=allow_http_pds),
        claimed_handle=_claimed_handle(document.get("alsoKnownAs")),
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _matches_fragment(entry_id: object, did: str, fragment: str) -> bool:
    return entry_id in (f"#{fragment}", f"{did}#{fragment}")


def _atproto_key(did: str, methods: object) -> PublicKey:
    if not isinstance(methods, list):
        raise DidDocumentError("DID document has no verificationMethod list")
    candidates = [
        m for m in methods if isinstance(m, dict) and _matches_fragment(m.get("id"), did, "atproto")
    ]
    if len(candidates) != 1:
        raise DidDocumentError(
            f"DID document must have exactly one #atproto key (found {len(candidates)})"
        )
    method = candidates[0]
    method_type = method.get("type")
    multibase = method.get("publicKeyMultibase")
    if not isinstance(multibase, str) or not isinstance(method_type, str):
        raise DidDocumentError("#atproto key lacks type or publicKeyMultibase")
    if method.get("controller", did) != did:
        raise DidDocumentError("#atproto key is controlled by another DID")
    try:
        if method_type == "Multikey":
            return parse_multikey(multibase)
        if method_type in _LEGACY_KEY_TYPES:
            return parse_legacy_key(method_type, multibase)
    except KeyFormatError as exc:
        raise DidDocumentError(f"#atproto key is malformed: {exc.reason}") from exc
    raise DidDocumentError(f"unsupported verification method type {method_type[:60]!r}")


def _atproto_pds(services: object, *, allow_http: bool) -> str:
    if not isinstance(services, list):
        raise DidDocumentError("DID document has no service list")
    endpoints = [
        s
        for s in services
        if isinstance(s, dict)
        and isinstance(s.get("id"), str)
        and s["id"].endswith("#atproto_pds")
        and s.get("type") == "AtprotoPersonalDataServer"
    ]
    if len(endpoints) != 1:
        raise DidDocumentError(
            f"DID document must name exactly one #atproto_pds service (found {len(endpoints)})"
        )
    endpoint = endpoints[0].get("serviceEndpoint")
    if not isinstance(endpoint, str) or len(endpoint) > 512:
        raise DidDocumentError("#atproto_pds serviceEndpoint is not a URL")
    return normalise_pds_endpoint(endpoint, allow_http=allow_http)


def normalise_pds_endpoint(endpoint: str, *, allow_http: bool) -> str:
    """Scheme and authority only, lowercase, no trailing slash; refuses paths and credentials."""
    try:
        parts = urlsplit(endpoint)
        _ = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise DidDocumentError("PDS endpoint is not a valid URL") from exc
    allowed_schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed_schemes:
        raise DidDocumentError(f"PDS endpoint must use {' or '.join(allowed_schemes)}")
    if not parts.hostname or parts.username or parts.password:
        raise DidDocumentError("PDS endpoint must be a plain host URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise DidDocumentError("PDS endpoint must not carry a path, query or fragment")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _claimed_handle(aliases: object) -> str | None:
    if not isinstance(aliases, list):
        return None
    for alias in aliases:
        if isinstance(alias, str) and alias.startswith("at://"):
            try:
                return validate_handle(alias[len("at://") :])
            except MalformedData:
                return None
    return None


class DidDocumentStore(Protocol):
    """Raw DID documents kept across processes (a short-lived plugin has no warm memory).

    The store holds bytes, never parsed identities: every body it returns goes through the same
    strict parser as a fresh fetch, so a damaged entry is refused, not trusted. Implementations
    must not raise (a failing store is a miss) and must only be writable by the verifier's user.
    """

    def get(self, did: str) -> tuple[bytes, float] | None:
        """The stored body and its fetch time (seconds since the epoch), or None."""
        ...

    def put(self, did: str, body: bytes) -> None:
        """Remember a body that was just fetched and parsed successfully."""
        ...


class DidResolver:
    """Fetches and parses DID documents; in-memory caching is the caller's business.

    With a ``store``, a document fetched less than ``store_ttl`` seconds ago is reused without a
    request, and one up to ``store_stale_seconds`` older still is served when the fetch fails
    with a fault (bounded stale-if-error, as the in-memory cache does).
    """

    def __init__(
        self,
        fetcher: HttpFetcher,
        settings: IdentitySettings,
        *,
        store: DidDocumentStore | None = None,
        store_ttl: float = 300.0,
        store_stale_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetcher = fetcher
        self._settings = settings
        self._store = store
        self._store_ttl = store_ttl
        self._store_stale_seconds = store_stale_seconds
        self._clock = clock

    def document_url(self, did: str) -> str:
        validate_did(did)
        if did.startswith("did:plc:"):
            return f"{self._settings.plc_url.rstrip('/')}/{did}"
        host = _did_web_host(did, allow_localhost_port=self._settings.allow_did_web_localhost_port)
        scheme = "http" if host.startswith("localhost:") else "https"
        return f"{scheme}://{host}/.well-known/did.json"

    async def resolve(self, did: str) -> Identity:
        url = self.document_url(did)
        stored = self._stored(did)
        if stored is not None and stored[1] <= self._store_ttl:
            return stored[0]
        try:
            body = await self._fetch(did, url)
        except Fault:
            if stored is not None and stored[1] <= self._store_ttl + self._store_stale_seconds:
                return stored[0]
            raise
        identity = self._parse(did, body)
        if self._store is not None:
            self._store.put(did, body)
        return identity

    def _stored(self, did: str) -> tuple[Identity, float] | None:
        """A stored document that still parses, with its age; None when absent or unusable."""
        if self._store is None:
            return None
        entry = self._store.get(did)
        if entry is None:
            return None
        body, fetched_at = entry
        age = self._clock() - fetched_at
        if age < 0 or len(body) > self._settings.max_document_bytes:
            return None
        try:
            return self._parse(did, body), age
        except MalformedData:
            return None

    async def _fetch(self, did: str, url: str) -> bytes:
        response = await self._fetcher.get(
            url,
            max_bytes=self._settings.max_document_bytes,
            headers={"Accept": "application/did+ld+json, application/json"},
        )
        if response.status in (404, 410):
            raise NotFound(f"DID {did} is not registered (or was tombstoned)")
        if response.status != 200:
            raise UpstreamError(
                f"DID resolution for {did} failed with HTTP {response.status}",
                status=response.status,
            )
        return response.body

    def _parse(self, did: str, body: bytes) -> Identity:
        return parse_did_document(did, body, allow_http_pds=self._settings.allow_http_pds)


class HandleResolver:
    """Resolves a handle to a DID by DNS TXT ``_atproto.<handle>`` or HTTPS well-known."""

    def __init__(self, fetcher: HttpFetcher, *, dns_timeout: float = 2.0) -> None:
        self._fetcher = fetcher
        self._dns_timeout = dns_timeout

    async def resolve(self, handle: str) -> str | None:
        """The DID a handle claims, or None when neither method yields exactly one answer."""
        handle = validate_handle(handle)
        did = await self._resolve_dns(handle)
        if did is None:
            did = await self._resolve_http(handle)
        return did

    async def verified_handle(self, identity: Identity) -> str | None:
        """The claimed handle if it resolves back to the same DID (bidirectional), else None."""
        if identity.claimed_handle is None:
            return None
        try:
            resolved = await self.resolve(identity.claimed_handle)
        except VerifyError:
            return None
        return identity.claimed_handle if resolved == identity.did else None

    async def _resolve_dns(self, handle: str) -> str | None:
        import dns.asyncresolver  # deferred: dnspython's import is slow and often unused
        import dns.exception

        try:
            answer = await dns.asyncresolver.resolve(
                f"_atproto.{handle}", "TXT", lifetime=self._dns_timeout
            )
        except dns.exception.DNSException:
            return None
        values = [
            b"".join(record.strings).decode("ascii", "replace")
            for record in answer
            if hasattr(record, "strings")
        ]
        dids = [value[len("did=") :] for value in values if value.startswith("did=")]
        return dids[0] if len(dids) == 1 and _is_valid_did(dids[0]) else None

    async def _resolve_http(self, handle: str) -> str | None:
        try:
            response = await self._fetcher.get(
                f"https://{handle}/.well-known/atproto-did", max_bytes=2048
            )
        except VerifyError:
            return None
        if response.status != 200:
            return None
        text = response.body.decode("ascii", "replace").strip()
        return text if _is_valid_did(text) else None


def _is_valid_did(value: str) -> bool:
    try:
        validate_did(value)
    except DidDocumentError:
        return False
    return True
