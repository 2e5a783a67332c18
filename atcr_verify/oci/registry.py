"""An OCI distribution client that resolves images and discovers ATProto signature artifacts.

Everything the registry says is untrusted: manifests are addressed and checked by their sha256
digest (the ``Docker-Content-Digest`` header is only ever cross-checked, never believed), sizes
are bounded, and the number of artifacts an image may carry is capped because anyone who can push
to a repository can attach thousands.

Authentication follows the distribution token spec. Choices made here:

* Registry credentials (``RegistrySettings.credentials``) are sent as HTTP Basic to the token
  realm that the registry's own ``WWW-Authenticate`` challenge names, even on another host:
  that is how Docker Hub (``registry-1.docker.io`` → ``auth.docker.io``) and docker itself work.
  The realm must be ``https`` (or a host listed in ``plain_http_hosts``), carry no userinfo, is
  reached through the SSRF guard, and may not redirect. A challenge that arrives from another
  host after a redirect (a storage backend) is never answered.
* Tokens are cached per (registry, scope) until shortly before ``expires_in`` (default 60 s);
  the only scope ever requested is ``repository:<name>:pull``, whatever the challenge asks for.
* Blobs follow redirects to any host (``any-guarded``): they are content-addressed and checked
  by digest and size, and the fetcher drops ``Authorization`` when the host changes. Manifests,
  referrers and tokens never follow redirects.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

from ..errors import (
    ConfigError,
    DigestMismatch,
    InvalidReference,
    LimitExceeded,
    NotFound,
    OciFormatError,
    UpstreamError,
)
from ..net import FetchedResponse, HttpFetcher, RedirectPolicy
from .manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    digest_matches,
    loads_strict_json,
    parse_image_manifest,
    parse_index,
    parse_manifest,
    sha256_digest,
)
from .reference import DOCKER_HUB, ImageReference, is_sha256_digest
from .signature import SIGNATURE_ARTIFACT_TYPE, SignatureDocument, parse_signature_document

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
"""Every manifest kind we can read; distribution rewrites or refuses types we do not accept."""

MAX_CHALLENGE_LENGTH = 8 * 1024
_MAX_TOKEN_LENGTH = 16 * 1024
_DEFAULT_TOKEN_TTL = 60.0
_BASIC_TTL = 300.0
_MAX_CACHED_AUTH = 256
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_LINK = re.compile(r"<([^>]*)>([^,<]*)")
_LINK_REL = re.compile(r';\s*rel\s*=\s*"?([^";]*)"?', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How the client talks to registries; defaults suit public registries over HTTPS."""

    plain_http_hosts: frozenset[str] = frozenset()
    """``host:port`` values reached over plain HTTP (local and test registries)."""
    credentials: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, hash=False
    )
    """Registry host → (username, password); never printed."""
    max_manifest_bytes: int = 4 * 1024 * 1024
    max_signature_blob_bytes: int = 64 * 1024
    max_artifacts: int = 16
    """Signature artifacts per image; more is refused rather than fetched."""
    max_token_bytes: int = 64 * 1024
    max_referrer_pages: int = 4
    """Pages of the Referrers API followed through ``Link: rel="next"``."""

    def __post_init__(self) -> None:
        for name in (
            "max_manifest_bytes",
            "max_signature_blob_bytes",
            "max_artifacts",
            "max_token_bytes",
            "max_referrer_pages",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"RegistrySettings.{name} must be a positive integer")


@dataclass(frozen=True, slots=True)
class ResolvedManifest:
    """The manifest (or index) an image reference resolves to, with its computed digest."""

    digest: str
    media_type: str
    size: int
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """One challenge of a ``WWW-Authenticate`` header; scheme and parameter names lowercased."""

    scheme: str
    params: Mapping[str, str]


def parse_www_authenticate(header: str) -> tuple[AuthChallenge, ...]:
    """Parse RFC 7235 challenges, including quoted strings that contain commas and escapes.

    Raises :class:`UpstreamError`: a registry that cannot state how to authenticate is a fault.
    """
    if len(header) > MAX_CHALLENGE_LENGTH:
        raise UpstreamError("WWW-Authenticate header is too long")
    challenges: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(header)
    while True:
        i, separated = _skip(header, i, " \t,")
        if i >= n:
            break
        name, j = _read_token(header, i)
        if not name:
            raise UpstreamError("malformed WWW-Authenticate header")
        k, _ = _skip(header, j, " \t")
        if challenges and k < n and header[k] == "=":
            value_start, _ = _skip(header, k + 1, " \t")
            if value_start < n and header[value_start] == '"':
                value, i = _read_quoted(header, value_start)
            else:
                value, i = _read_token(header, value_start)
                if not value:
                    raise UpstreamError("malformed WWW-Authenticate parameter")
            params = challenges[-1][1]
            key = name.lower()
            if key in params:
                raise UpstreamError(f"WWW-Authenticate repeats the parameter {key!r}")
            params[key] = value
            after, _ = _skip(header, i, " \t")
            if after < n and header[after] != ",":
                raise UpstreamError("malformed WWW-Authenticate header")
            continue
        if challenges and not separated:
            raise UpstreamError("malformed WWW-Authenticate header")
        params = {}
        challenges.append((name.lower(), params))
        i = k
        token68 = _TOKEN68.match(header, i)
        if token68 is not None:
            end, _ = _skip(header, token68.end(), " \t")
            if end >= n or header[end] == ",":
                params["token68"] = token68.group()
                i = end
    return tuple(
        AuthChallenge(scheme=scheme, params=MappingProxyType(params))
        for scheme, params in challenges
    )


def _skip(text: str, i: int, chars: str) -> tuple[int, bool]:
    saw_comma = False
    while i < len(text) and text[i] in chars:
        saw_comma = saw_comma or text[i] == ","
        i += 1
    return i, saw_comma


def _read_token(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] in _TOKEN_CHARS:
        i += 1
    return text[start:i], i


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    i += 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            i += 1
            if i >= len(text):
                break
            char = text[i]
        if char in "\r\n\x00":
            break
        out.append(char)
        i += 1
    raise UpstreamError("unterminated quoted string in WWW-Authenticate header")


@dataclass(slots=True)
class _CachedAuth:
    authorization: str = field(repr=False)
    expires: float


class RegistryClient:
    """Reads manifests, referrers and signature blobs; stateless except for cached tokens."""

    def __init__(self, fetcher: HttpFetcher, settings: RegistrySettings | None = None) -> None:
        self._fetcher = fetcher
        self._settings = settings if settings is not None else RegistrySettings()
        self._auth: dict[tuple[str, str], _CachedAuth] = {}

    # --- Public API -----------------------------------------------------------------------------

    async def resolve_digest(self, ref: ImageReference) -> ResolvedManifest:
        """Fetch the manifest ``ref`` names and compute its digest from the body."""
        if ref.digest is not None:
            if not is_sha256_digest(ref.digest):
                raise InvalidReference("only sha256 image digests are supported")
            target = ref.digest
        else:
            target = ref.tag or "latest"
        response = await self._get(
            ref,
            self._url(ref, f"/v2/{ref.repository}/manifests/{target}"),
            max_bytes=self._settings.max_manifest_bytes,
            accept=MANIFEST_ACCEPT,
        )
        _check_status(response, not_found=f"image {ref} not found", what=f"manifest of {ref}")
        digest = sha256_digest(response.body)
        if ref.digest is not None and digest != ref.digest:
            raise DigestMismatch(f"registry returned a manifest that does not hash to {ref.digest}")
        claimed = response.headers.get("docker-content-digest")
        if (
            claimed is not None
            and claimed != digest
            and not (claimed.startswith("sha512:") and digest_matches(claimed, response.body))
        ):
            raise DigestMismatch("registry's Docker-Content-Digest disagrees with the manifest")
        parsed = parse_manifest(
            response.body,
            content_type=response.headers.get("content-type"),
            max_bytes=self._settings.max_manifest_bytes,
        )
        return ResolvedManifest(
            digest=digest,
            media_type=parsed.media_type,
            size=len(response.body),
            body=response.body,
        )

    async def find_signature_artifacts(self, ref: ImageReference, digest: str) -> list[Descriptor]:
        """Descriptors of the ATProto signature artifacts attached to ``digest``.

        The Referrers API is asked first; registries without it (404, 400, 405) are read through
        the ``sha256-<hex>`` tag schema, whose absence means "no artifacts".
        """
        if not is_sha256_digest(digest):
            raise InvalidReference("only sha256 image digests are supported")
        found = await self._from_referrers_api(ref, digest)
        if found is None:
            found = await self._from_tag_schema(ref, digest)
        return found

    async def fetch_signature(
        self, ref: ImageReference, descriptor: Descriptor, image_digest: str
    ) -> SignatureDocument:
        """Fetch one signature artifact by digest and return its checked signature document."""
        if not is_sha256_digest(image_digest):
            raise InvalidReference("only sha256 image digests are supported")
        if not is_sha256_digest(descriptor.digest):
            raise OciFormatError("signature artifacts must be addressed by a sha256 digest")
        if descriptor.media_type != OCI_MANIFEST:
            raise OciFormatError("signature artifact descriptor is not an OCI image manifest")
        if descriptor.size > self._settings.max_manifest_bytes:
            raise LimitExceeded("signature artifact manifest is too large")

        response = await self._get(
            ref,
            self._url(ref, f"/v2/{ref.repository}/manifests/{descriptor.digest}"),
            max_bytes=self._settings.max_manifest_bytes,
            accept=OCI_MANIFEST,
        )
        _check_status(
            response,
            not_found=f"signature artifact {descriptor.digest} not found",
            what="signature artifact",
        )
        if sha256_digest(response.body) != descriptor.digest:
            raise DigestMismatch("signature artifact manifest does not match its digest")
        if len(response.body) != descriptor.size:
            raise DigestMismatch("signature artifact manifest does not have the declared size")
        manifest = parse_image_manifest(
            response.body,
            content_type=response.headers.get("content-type"),
            max_bytes=self._settings.max_manifest_bytes,
        )
        if manifest.media_type != OCI_MANIFEST:
            raise OciFormatError("signature artifact is not an OCI image manifest")
        artifact_type = manifest.artifact_type or manifest.config.media_type
        if artifact_type != SIGNATURE_ARTIFACT_TYPE:
            raise OciFormatError("artifact is not an ATProto signature artifact")
        if manifest.subject is None:
            raise OciFormatError("signature artifact has no subject")
        if manifest.subject.digest != image_digest:
            raise DigestMismatch("signature artifact refers to another image")
        if len(manifest.layers) != 1:
            raise OciFormatError("signature artifact must have exactly one layer")
        layer = manifest.layers[0]
        if layer.media_type != SIGNATURE_ARTIFACT_TYPE:
            raise OciFormatError("signature artifact layer has the wrong media type")
        if not is_sha256_digest(layer.digest):
            raise OciFormatError("signature blob must be addressed by a sha256 digest")
        if layer.size > self._settings.max_signature_blob_bytes:
            raise LimitExceeded("signature blob is larger than the configured limit")

        blob = layer.data if layer.data is not None else await self._fetch_blob(ref, layer)
        document = parse_signature_document(blob)
        if document.subject_digest != image_digest:
            raise DigestMismatch("signature document refers to another image")
        return document

    # --- Discovery ------------------------------------------------------------------------------

    async def _from_referrers_api(
        self, ref: ImageReference, digest: str
    ) -> list[Descriptor] | None:
        url = self._url(
            ref,
            f"/v2/{ref.repository}/referrers/{digest}"
            f"?artifactType={quote(SIGNATURE_ARTIFACT_TYPE, safe='')}",
        )
        base = urlsplit(url)
        found: dict[str, Descriptor] = {}
        for page in range(self._settings.max_referrer_pages):
            response = await self._get(
                ref, url, max_bytes=self._settings.max_manifest_bytes, accept=OCI_INDEX
            )
            if page == 0 and response.status in (400, 404, 405):
                return None  # no Referrers API here
            _check_status(response, not_found="", what="referrers")
            index = parse_index(
                response.body,
                content_type=response.headers.get("content-type"),
                max_bytes=self._settings.max_manifest_bytes,
            )
            if index.media_type != OCI_INDEX:
                raise OciFormatError("referrers response is not an OCI image index")
            self._collect(index, found, digest)
            link = _next_link(response.headers.get_list("link"))
            if link is None:
                return list(found.values())
            next_url = urljoin(url, link)
            target = urlsplit(next_url)
            if (target.scheme, target.netloc) != (base.scheme, base.netloc):
                raise UpstreamError("referrers pagination points to another host")
            url = next_url
        raise LimitExceeded(
            f"referrers of {digest} span more than {self._settings.max_referrer_pages} pages"
        )

    async def _from_tag_schema(self, ref: ImageReference, digest: str) -> list[Descriptor]:
        tag = digest.replace(":", "-", 1)
        response = await self._get(
            ref,
            self._url(ref, f"/v2/{ref.repository}/manifests/{tag}"),
            max_bytes=self._settings.max_manifest_bytes,
            accept=MANIFEST_ACCEPT,
        )
        if response.status == 404:
            return []
        _check_status(response, not_found="", what=f"referrers tag {tag}")
        index = parse_index(
            response.body,
            content_type=response.headers.get("content-type"),
            max_bytes=self._settings.max_manifest_bytes,
        )
        found: dict[str, Descriptor] = {}
        self._collect(index, found, digest)
        return list(found.values())

    def _collect(self, index: ImageIndex, found: dict[str, Descriptor], digest: str) -> None:
        """Keep signature artifacts only (registries may ignore the filter); cap their number."""
        for descriptor in index.manifests:
            if descriptor.artifact_type != SIGNATURE_ARTIFACT_TYPE:
                continue
            found.setdefault(descriptor.digest, descriptor)
            if len(found) > self._settings.max_artifacts:
                raise LimitExceeded(
                    f"more than {self._settings.max_artifacts} signature artifacts "
                    f"are attached to {digest}"
                )

    async def _fetch_blob(self, ref: ImageReference, layer: Descriptor) -> bytes:
        response = await self._get(
            ref,
            self._url(ref, f"/v2/{ref.repository}/blobs/{layer.digest}"),
            max_bytes=self._settings.max_signature_blob_bytes,
            redirects="any-guarded",
        )
        _check_status(
            response, not_found=f"signature blob {layer.digest} not found", what="signature blob"
        )
        if len(response.body) != layer.size or sha256_digest(response.body) != layer.digest:
            raise DigestMismatch("signature blob does not match its digest and size")
        return response.body

    # --- HTTP and authentication ----------------------------------------------------------------

    def _url(self, ref: ImageReference, path: str) -> str:
        plain = self._settings.plain_http_hosts
        scheme = "http" if ref.api_host in plain or ref.registry in plain else "https"
        return f"{scheme}://{ref.api_host}{path}"

    async def _get(
        self,
        ref: ImageReference,
        url: str,
        *,
        max_bytes: int,
        accept: str | None = None,
        redirects: RedirectPolicy = "never",
    ) -> FetchedResponse:
        """GET ``url``, answering one authentication challenge if the registry sends one."""
        key = (ref.api_host, _pull_scope(ref))
        headers: dict[str, str] = {}
        if accept is not None:
            headers["Accept"] = accept
        cached = self._cached_auth(key)
        if cached is not None:
            headers["Authorization"] = cached
        response = await self._fetcher.get(
            url, max_bytes=max_bytes, headers=headers, redirects=redirects
        )
        if response.status != 401:
            return response
        self._auth.pop(key, None)
        if urlsplit(response.url).netloc != urlsplit(url).netloc:
            raise UpstreamError("a redirect target demanded authentication", status=401)
        headers["Authorization"] = await self._authorize(ref, response, key)
        response = await self._fetcher.get(
            url, max_bytes=max_bytes, headers=headers, redirects=redirects
        )
        if response.status == 401:
            self._auth.pop(key, None)
            raise UpstreamError("registry refused our credentials", status=401)
        return response

    async def _authorize(
        self, ref: ImageReference, response: FetchedResponse, key: tuple[str, str]
    ) -> str:
        challenges = [
            challenge
            for value in response.headers.get_list("www-authenticate")
            for challenge in parse_www_authenticate(value)
        ]
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            token, ttl = await self._fetch_token(ref, bearer)
            return self._remember(key, f"Bearer {token}", ttl)
        if any(c.scheme == "basic" for c in challenges):
            credentials = self._credentials(ref)
            if credentials is None:
                raise UpstreamError(
                    "registry requires credentials; none are configured", status=401
                )
            return self._remember(key, _basic(credentials), _BASIC_TTL)
        raise UpstreamError("registry answered 401 without a usable challenge", status=401)

    async def _fetch_token(
        self, ref: ImageReference, challenge: AuthChallenge
    ) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise UpstreamError("Bearer challenge has no realm")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
            raise UpstreamError("token realm is not a plain http(s) URL")
        if parts.scheme == "http" and parts.netloc not in self._settings.plain_http_hosts:
            raise UpstreamError("token realm must use https")
        query = parse_qsl(parts.query, keep_blank_values=True)
        service = challenge.params.get("service")
        if service is not None:
            query.append(("service", service))
        query.append(("scope", _pull_scope(ref)))
        url = parts._replace(query=urlencode(query), fragment="").geturl()
        headers = {"Accept": "application/json"}
        credentials = self._credentials(ref)
        if credentials is not None:
            headers["Authorization"] = _basic(credentials)
        response = await self._fetcher.get(
            url, max_bytes=self._settings.max_token_bytes, headers=headers, redirects="never"
        )
        if response.status != 200:
            raise UpstreamError(
                f"token endpoint {parts.netloc} answered {response.status}",
                status=response.status,
            )
        try:
            document = loads_strict_json(
                response.body, max_bytes=self._settings.max_token_bytes, what="token response"
            )
        except OciFormatError as exc:
            raise UpstreamError(f"token endpoint {parts.netloc} sent {exc.reason}") from exc
        token = document.get("token") or document.get("access_token")
        if (
            not isinstance(token, str)
            or len(token) > _MAX_TOKEN_LENGTH
            or _HEADER_SAFE.fullmatch(token) is None
        ):
            raise UpstreamError(f"token endpoint {parts.netloc} sent no usable token")
        expires_in = document.get("expires_in")
        ttl = _DEFAULT_TOKEN_TTL
        if type(expires_in) is int and expires_in > 0:
            ttl = float(expires_in)
        return token, ttl

    def _credentials(self, ref: ImageReference) -> tuple[str, str] | None:
        """Credentials configured for the reference's registry under any of its names."""
        names = [ref.registry, ref.api_host]
        if ref.registry == DOCKER_HUB:
            names.append("index.docker.io")
        for name in names:
            found = self._settings.credentials.get(name)
            if found is not None:
                return found
        return None

    def _cached_auth(self, key: tuple[str, str]) -> str | None:
        entry = self._auth.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self._auth[key]
            return None
        return entry.authorization

    def _remember(self, key: tuple[str, str], authorization: str, ttl: float) -> str:
        now = time.monotonic()
        if len(self._auth) >= _MAX_CACHED_AUTH:
            for stale in [k for k, v in self._auth.items() if v.expires <= now]:
                del self._auth[stale]
            while len(self._auth) >= _MAX_CACHED_AUTH:
                del self._auth[next(iter(self._auth))]
        margin = min(10.0, ttl / 10)
        self._auth[key] = _CachedAuth(authorization=authorization, expires=now + ttl - margin)
        return authorization


def _pull_scope(ref: ImageReference) -> str:
    return f"repository:{ref.repository}:pull"


def _basic(credentials: tuple[str, str]) -> str:
    username, password = credentials
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _check_status(response: FetchedResponse, *, not_found: str, what: str) -> None:
    """Map a registry status to the error taxonomy; 404 is a denial only where it is definitive."""
    status = response.status
    if status == 200:
        return
    if status == 404 and not_found:
        raise NotFound(not_found)
    if status in (401, 403):
        raise UpstreamError(f"registry denied access to {what} ({status})", status=status)
    if status == 429 or status >= 500:
        raise UpstreamError(f"registry failed on {what} ({status})", status=status)
    raise UpstreamError(f"registry answered {status} for {what}", status=status)


def _next_link(values: list[str]) -> str | None:
    for value in values:
        for match in _LINK.finditer(value):
            rel = _LINK_REL.search(match.group(2))
            if rel is not None and "next" in rel.group(1).lower().split():
                return match.group(1)
    return None
