"""Bounded, guarded HTTP for untrusted upstreams.

Every byte the verifier reads comes through :class:`HttpFetcher`: bodies are read up to a hard
limit, each call has a total deadline (a trickling server cannot stall us past it), redirects are
refused unless the caller fetches content-addressed data, and the SSRF guard refuses loopback,
private, link-local and metadata addresses unless the settings allow them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx

from .errors import AddressBlocked, ResponseTooLarge, UpstreamError, UpstreamTimeout

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RedirectPolicy = Literal["never", "same-host", "any-guarded"]

_GUARD_TTL_SECONDS = 30.0
_MAX_REDIRECTS = 3


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """How the verifier may talk to the network."""

    allow_private_networks: bool = False
    """Allow every address (tests and air-gapped clusters that run their own PDS)."""
    allowed_networks: tuple[IPNetwork, ...] = ()
    """Non-global networks that are allowed anyway, e.g. ``127.0.0.0/8`` in tests."""
    request_timeout: float = 5.0
    """Total seconds for one HTTP exchange, body included."""
    connect_timeout: float = 2.0
    user_agent: str = "atcr-verifier/0.1"


@dataclass(frozen=True, slots=True)
class FetchedResponse:
    """A fully read, size-bounded response."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes = field(repr=False)

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", "replace")


def is_blocked_address(address: IPAddress, settings: NetworkSettings) -> bool:
    """True when the SSRF guard must refuse ``address``."""
    if settings.allow_private_networks:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in settings.allowed_networks):
        return False
    return not address.is_global or address.is_multicast


class AddressGuard:
    """Resolves hostnames and refuses non-public addresses; remembers decisions briefly.

    The check runs before connecting; a DNS answer that changes between the check and the
    connection (rebinding) is bounded by the short memory of this guard and documented in
    SECURITY notes as a residual risk.
    """

    def __init__(self, settings: NetworkSettings) -> None:
        self._settings = settings
        self._decisions: dict[str, float] = {}

    async def check(self, host: str) -> None:
        if not host:
            raise AddressBlocked("URL has no host")
        if self._settings.allow_private_networks:
            return
        now = time.monotonic()
        if self._decisions.get(host, 0.0) > now:
            return
        for address in await self._resolve(host):
            if is_blocked_address(address, self._settings):
                raise AddressBlocked(
                    f"refusing to connect to {host} ({address}): not a public address"
                )
        self._decisions[host] = now + _GUARD_TTL_SECONDS

    async def _resolve(self, host: str) -> list[IPAddress]:
        literal = host.strip("[]")
        try:
            return [ipaddress.ip_address(literal)]
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                literal, None, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise UpstreamError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise UpstreamError(f"cannot resolve {host}: no addresses")
        return addresses


class HttpFetcher:
    """GET with size limits, deadlines, a redirect policy and the SSRF guard."""

    def __init__(self, client: httpx.AsyncClient, settings: NetworkSettings) -> None:
        self._client = client
        self._settings = settings
        self._guard = AddressGuard(settings)
        self.bytes_received: dict[str, int] = {}
        """Body bytes read so far per origin; benchmarks report them per verification."""

    @staticmethod
    def new_client(settings: NetworkSettings) -> httpx.AsyncClient:
        """The one client configuration the verifier uses (no redirects, no env proxies)."""
        return httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout),
            headers={"User-Agent": settings.user_agent},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def get(
        self,
        url: str,
        *,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        redirects: RedirectPolicy = "never",
        method: str = "GET",
    ) -> FetchedResponse:
        """Fetch ``url`` and read at most ``max_bytes`` of body within the total deadline."""
        try:
            async with asyncio.timeout(self._settings.request_timeout):
                return await self._get_following(url, max_bytes, headers, redirects, method)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{_origin(url)} did not answer in time") from exc

    async def _get_following(
        self,
        url: str,
        max_bytes: int,
        headers: Mapping[str, str] | None,
        redirects: RedirectPolicy,
        method: str,
    ) -> FetchedResponse:
        first_host = urlsplit(url).netloc
        request_headers = dict(headers or {})
        for _ in range(_MAX_REDIRECTS + 1):
            response = await self._get_once(url, max_bytes, request_headers, method)
            if response.status not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location")
            if redirects == "never" or not location:
                raise UpstreamError(
                    f"{_origin(url)} redirected; redirects are not followed here",
                    status=response.status,
                )
            target = urljoin(url, location)
            target_host = urlsplit(target).netloc
            if urlsplit(target).scheme not in ("http", "https"):
                raise UpstreamError(f"{_origin(url)} redirected to a non-HTTP URL")
            if target_host != first_host:
                if redirects == "same-host":
                    raise UpstreamError(f"{_origin(url)} redirected to another host")
                # Content-addressed data may come from a storage host; never send credentials.
                request_headers.pop("Authorization", None)
            url = target
        raise UpstreamError(f"{_origin(url)} redirected too many times")

    async def _get_once(
        self, url: str, max_bytes: int, headers: Mapping[str, str], method: str
    ) -> FetchedResponse:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UpstreamError(f"unsupported URL scheme {parts.scheme!r}")
        await self._guard.check(parts.hostname or "")
        try:
            async with self._client.stream(method, url, headers=headers) as response:
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise ResponseTooLarge(
                        f"{_origin(url)} announced {declared} bytes (limit {max_bytes})",
                        status=response.status_code,
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResponseTooLarge(
                            f"{_origin(url)} sent more than {max_bytes} bytes",
                            status=response.status_code,
                        )
                    chunks.append(chunk)
                origin = _origin(url)
                self.bytes_received[origin] = self.bytes_received.get(origin, 0) + size
                return FetchedResponse(
                    url=url,
                    status=response.status_code,
                    headers=response.headers,
                    body=b"".join(chunks),
                )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{_origin(url)} timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{_origin(url)}: {type(exc).__name__}") from exc


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
