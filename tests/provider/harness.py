"""Running the provider in-process on 127.0.0.1 (ports picked by the kernel) and talking to it
over real HTTPS with aiohttp, plus the one verifier double the unit tests use."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from atcr_verify import Outcome, TrustPolicy, Verdict, VerifierObserver, VerifierSettings
from atcr_verify.oci.reference import parse_reference
from provider import ProviderSettings, create_app, serve
from provider.app import METRICS, VerifierFactory, default_verifier
from provider.metrics import ProviderMetrics
from provider.settings import HostPort
from tests.provider.pki import Pki

LOOPBACK_ANY_PORT = HostPort("127.0.0.1", 0)
TRUSTED_DID = "did:plc:abcdefghijklmnopqrstuvwx"


def offline_policy(scope: str = "registry.test/**", *, action: str = "enforce") -> str:
    """A valid policy for tests that never reach a registry (images outside it are denied)."""
    return (
        f"version: 1.0\ntrustedDIDs:\n  {TRUSTED_DID}: {{name: test}}\n"
        f"policies:\n  - name: test-images\n    scope: '{scope}'\n"
        f"    require: {{signature: true}}\n    action: {action}\n"
    )


def provider_settings(pki: Pki, policy: Path, **overrides: Any) -> ProviderSettings:
    base = ProviderSettings(
        listen=LOOPBACK_ANY_PORT,
        health_listen=LOOPBACK_ANY_PORT,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        policy_file=policy,
        reload_interval=0.1,
        verifier=VerifierSettings(verify_handles=False),
    )
    return replace(base, **overrides)


@dataclass
class Provider:
    """A running provider and a session that trusts its CA (and presents the client cert)."""

    https_port: int
    health_port: int
    session: aiohttp.ClientSession
    metrics: ProviderMetrics
    logs: io.StringIO
    pki: Pki

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    async def validate(
        self, keys: Iterable[object], *, path: str = "/validate", **body: Any
    ) -> tuple[int, dict[str, Any]]:
        document = {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": list(keys)},
            **body,
        }
        return await self.post(json.dumps(document).encode(), path=path)

    async def post(self, data: bytes, *, path: str = "/validate") -> tuple[int, dict[str, Any]]:
        async with self.session.post(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        ) as response:
            return response.status, await response.json(content_type=None)

    async def items(
        self, keys: Iterable[str], *, system_error: str = ""
    ) -> dict[str, dict[str, Any]]:
        """Validate ``keys`` and return the items by key (asserting a 200 answer whose
        ``systemError`` starts with ``system_error``; empty means none)."""
        status, document = await self.validate(keys)
        assert status == 200, document
        actual = document["response"]["systemError"]
        assert actual.startswith(system_error) if system_error else actual == "", document
        assert document["response"]["idempotent"] is True
        return {item["key"]: item for item in document["response"]["items"]}

    async def health(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.health_url + path) as response:
            return response.status, await response.text()

    async def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        value = self.metrics.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if value is None else value

    def log_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line.strip()]


@asynccontextmanager
async def running_provider(
    settings: ProviderSettings,
    pki: Pki,
    *,
    verifier_factory: VerifierFactory = default_verifier,
    client_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Provider]:
    logs = io.StringIO()
    app = create_app(settings, log_stream=logs, verifier_factory=verifier_factory)
    async with serve(settings, app) as running:
        context = client_context if client_context is not None else pki.client_context()
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as session:
            yield Provider(
                running.https_port, running.health_port, session, app[METRICS], logs, pki
            )


async def wait_for(predicate: Any, within: float = 10.0, interval: float = 0.05) -> None:
    """Poll an (async or sync) predicate until it is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


@dataclass
class VerifierDouble:
    """A test double of :class:`atcr_verify.Verifier` (no network): an image is verified after
    ``delays[image]`` seconds (0 when absent); images in ``crash`` raise; ``cache`` answers the
    synchronous ``cached()`` path. Records every call and the peak of concurrent calls."""

    delays: dict[str, float] = field(default_factory=dict)
    crash: set[str] = field(default_factory=set)
    cache: dict[str, Verdict] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    closed: bool = False

    def factory(self, settings: VerifierSettings, observer: VerifierObserver) -> VerifierDouble:
        return self

    def cached(self, image: str, *, policy: TrustPolicy | None = None) -> Verdict | None:
        parse_reference(image)  # raises InvalidReference like the real one
        return self.cache.get(image)

    async def verify(self, image: str, *, policy: TrustPolicy | None = None) -> Verdict:
        self.calls.append(image)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delays.get(image, 0.0))
            if image in self.crash:
                raise RuntimeError("boom")
            return verified(image)
        finally:
            self.running -= 1

    async def aclose(self) -> None:
        self.closed = True


def verified(image: str, did: str = TRUSTED_DID) -> Verdict:
    from atcr_verify import SignatureResult

    return Verdict(
        image=image,
        digest="sha256:" + "a" * 64,
        allowed=True,
        verified=True,
        outcome=Outcome.VERIFIED,
        policy="test-images",
        action="enforce",
        reason=f"signed by trusted DID {did}",
        signatures=(SignatureResult(did=did, valid=True, trusted=True),),
    )
