"""The service over real HTTPS with a verifier double (no network): request handling, bad input,
deadlines, concurrency, readiness and routing. The verifier itself is tested for real in
test_provider_e2e.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import time
from pathlib import Path

import pytest

from atcr_verify import Outcome
from provider.wire import DEADLINE_ERROR
from tests.provider.harness import (
    Provider,
    VerifierDouble,
    offline_policy,
    provider_settings,
    running_provider,
    verified,
    wait_for,
)
from tests.provider.pki import Pki

IMG = "registry.test/team/app"


def img(name: str) -> str:
    return f"{IMG}-{name}:1"


async def test_keys_are_deduplicated_and_all_answered(pki: Pki, offline_policy_file: Path) -> None:
    double = VerifierDouble()
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        status, document = await provider.validate([img("a"), img("b"), img("a"), img("b")])
    assert status == 200
    items = document["response"]["items"]
    assert [i["key"] for i in items] == [img("a"), img("b")]
    assert sorted(double.calls) == [img("a"), img("b")]
    assert all(i["value"]["allowed"] is True for i in items)
    assert document["response"] == {**document["response"], "idempotent": True, "systemError": ""}


async def test_cold_verifications_are_bounded_by_max_concurrency(
    pki: Pki, offline_policy_file: Path
) -> None:
    keys = [img(str(n)) for n in range(12)]
    double = VerifierDouble(delays=dict.fromkeys(keys, 0.05))
    settings = provider_settings(pki, offline_policy_file, max_concurrency=3)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        items = await provider.items(keys)
    assert set(items) == set(keys)
    assert double.peak == 3


async def test_keys_unfinished_at_the_deadline_get_an_error_and_the_rest_is_answered(
    pki: Pki, offline_policy_file: Path
) -> None:
    double = VerifierDouble(delays={img("slow"): 30.0})
    settings = provider_settings(pki, offline_policy_file, deadline=0.4)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        started = time.monotonic()
        items = await provider.items(
            [img("fast"), img("slow")],
            system_error=f"could not verify 1 image(s), e.g. {img('slow')}",
        )
        elapsed = time.monotonic() - started
        assert items[img("fast")]["value"]["allowed"] is True
        assert items[img("slow")] == {"key": img("slow"), "error": DEADLINE_ERROR}
        assert 0.35 < elapsed < 1.5
        assert await provider.metric("atcr_verifications_total", {"result": "error"}) == 1
        assert await provider.metric("atcr_provider_keys_total", {"result": "undecided"}) == 1
        await wait_for(lambda: double.running == 0)  # the late task was cancelled


async def test_nothing_answered_by_the_deadline_is_a_system_error(
    pki: Pki, offline_policy_file: Path
) -> None:
    double = VerifierDouble(delays={img("slow"): 30.0, img("slower"): 30.0})
    settings = provider_settings(pki, offline_policy_file, deadline=0.3)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        status, document = await provider.validate([img("slow"), img("slower")])
        assert status == 504
        assert document["response"]["items"] == []
        assert "deadline" in document["response"]["systemError"]
        assert await provider.metric("atcr_provider_requests_total", {"outcome": "deadline"}) == 1


async def test_a_crashing_verification_is_an_item_error_not_a_crash(
    pki: Pki, offline_policy_file: Path
) -> None:
    double = VerifierDouble(crash={img("bad")})
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        items = await provider.items(
            [img("bad"), img("good")], system_error="could not verify 1 image(s)"
        )
        assert items[img("bad")]["error"].startswith("could not verify: internal error")
        assert "value" not in items[img("bad")]
        assert items[img("good")]["value"]["allowed"] is True
        assert any(e["event"] == "verification crashed" for e in provider.log_events())


async def test_invalid_references_are_item_errors(pki: Pki, offline_policy_file: Path) -> None:
    double = VerifierDouble()
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        items = await provider.items(["UPPER/Case::x", "", img("ok")])
    assert items["UPPER/Case::x"]["error"].startswith("invalid image reference")
    assert items[""]["error"].startswith("invalid image reference")
    assert items[img("ok")]["value"]["allowed"] is True
    assert double.calls == [img("ok")]


async def test_cached_verdicts_are_answered_without_a_verification_task(
    pki: Pki, offline_policy_file: Path
) -> None:
    digest_ref = f"{IMG}@sha256:{'b' * 64}"
    double = VerifierDouble(cache={digest_ref: verified(digest_ref)})
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        items = await provider.items([digest_ref])
        assert items[digest_ref]["value"]["verified"] is True
        assert double.calls == []
        hits = [e for e in provider.log_events() if e["event"] == "verification"]
        assert hits == []  # admissions from the cache are logged at debug, below the default


async def test_cached_denials_are_still_logged(pki: Pki, offline_policy_file: Path) -> None:
    digest_ref = f"{IMG}@sha256:{'d' * 64}"
    denial = dataclasses.replace(
        verified(digest_ref), allowed=False, verified=False, outcome=Outcome.FAILED, reason="no"
    )
    double = VerifierDouble(cache={digest_ref: denial})
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        items = await provider.items([digest_ref])
        (event,) = [e for e in provider.log_events() if e["event"] == "verification"]
    assert items[digest_ref]["error"] == "no (policy test-images)"
    assert (
        event["level"] == "info"
        and event["cached"] is True
        and event["error"] == "no (policy test-images)"
    )


async def test_at_debug_level_cache_hits_are_logged_too(
    pki: Pki, offline_policy_file: Path
) -> None:
    digest_ref = f"{IMG}@sha256:{'c' * 64}"
    double = VerifierDouble(cache={digest_ref: verified(digest_ref)})
    settings = provider_settings(pki, offline_policy_file, log_level="debug")
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        await provider.items([digest_ref])
        (event,) = [e for e in provider.log_events() if e["event"] == "verification"]
    assert event["level"] == "debug" and event["cached"] is True
    assert event["image"] == digest_ref and event["error"] is None
    assert {"did", "duration"} <= set(event)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{", 400, "not valid JSON"),
        (b'{"kind": "AdmissionReview", "request": {"keys": []}}', 400, "kind must be"),
        (b'{"request": {"keys": [1, 2]}}', 400, "is not a string"),
        (json.dumps({"request": {"keys": ["i"] * 10_001}}).encode(), 400, "too many keys"),
        (b"x" * (2 * 1024 * 1024), 413, "larger than 1048576 bytes"),
    ],
)
async def test_bad_requests_get_a_system_error_and_no_items(
    pki: Pki, offline_policy_file: Path, body: bytes, status: int, message: str
) -> None:
    double = VerifierDouble()
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=double.factory) as provider:
        got_status, document = await provider.post(body)
        assert got_status == status
        assert document["kind"] == "ProviderResponse"
        assert document["response"]["items"] == []
        assert message in document["response"]["systemError"]
        assert double.calls == []
        # the server is still fine afterwards
        assert (await provider.items([img("after")]))[img("after")]["value"]["allowed"]


async def test_max_keys_is_configurable(pki: Pki, offline_policy_file: Path) -> None:
    settings = provider_settings(pki, offline_policy_file, max_keys=3)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        status, document = await p.validate([img(str(n)) for n in range(4)])
    assert status == 400 and "too many keys: 4" in document["response"]["systemError"]


async def test_a_body_trickling_past_the_deadline_is_refused(
    pki: Pki, offline_policy_file: Path
) -> None:
    settings = provider_settings(pki, offline_policy_file, deadline=0.3)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", p.https_port, ssl=pki.client_context(), server_hostname="localhost"
        )
        writer.write(
            b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"request":'
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 408")
        writer.close()


async def test_not_ready_until_a_policy_loads_then_ready(pki: Pki, tmp_path: Path) -> None:
    policy = tmp_path / "later.yaml"
    settings = provider_settings(pki, policy)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        status, body = await p.health("/readyz")
        assert status == 503 and "cannot read" in body
        assert (await p.health("/healthz"))[0] == 200
        status, document = await p.validate([img("x")])
        assert status == 503
        assert document["response"]["systemError"] == "the trust policy is not loaded yet"
        policy.write_text(offline_policy())
        await wait_for(lambda: _ready(p))
        status, body = await p.health("/readyz")
        assert json.loads(body)["status"] == "ready"
        assert (await p.items([img("x")]))[img("x")]["value"]["allowed"] is True


async def _ready(provider: Provider) -> bool:
    status, _ = await provider.health("/readyz")
    return status == 200


async def test_routes_per_port(pki: Pki, offline_policy_file: Path) -> None:
    double = VerifierDouble()
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=double.factory) as p:
        status, document = await p.validate([img("root")], path="/")
        assert status == 200 and document["response"]["items"][0]["value"]["allowed"]
        async with p.session.get(p.url + "/healthz") as r:
            assert r.status == 200
        for path in ("/metrics", "/readyz"):
            async with p.session.get(p.url + path) as r:
                assert r.status == 404, path
        async with p.session.get(p.url + "/validate") as r:
            assert r.status == 405
        async with p.session.post(p.health_url + "/validate", json={"request": {"keys": []}}) as r:
            assert r.status == 404  # never over plain HTTP
        assert (await p.health("/metrics"))[0] == 200
    assert double.closed  # the verifier's lifetime ends with the app


async def test_https_port_speaks_only_tls(pki: Pki, offline_policy_file: Path) -> None:
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.https_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(100), timeout=5)
        assert not data.startswith(b"HTTP/1.1 200")
        writer.close()


async def test_system_error_requests_are_counted(pki: Pki, offline_policy_file: Path) -> None:
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        await p.post(b"nope")
        await p.items([img("a")])
        assert await p.metric("atcr_provider_requests_total", {"outcome": "bad_request"}) == 1
        assert await p.metric("atcr_provider_requests_total", {"outcome": "ok"}) == 1
        assert await p.metric("atcr_provider_request_duration_seconds_count") == 2


def test_tls_context_module_refuses_tls_1_2_by_construction(pki: Pki) -> None:
    from provider.tls import TlsFiles, build_server_context

    context = build_server_context(TlsFiles(pki.server_cert, pki.server_key))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.verify_mode is ssl.CERT_NONE
    mtls = build_server_context(TlsFiles(pki.server_cert, pki.server_key, pki.client_ca_file))
    assert mtls.verify_mode is ssl.CERT_REQUIRED
