"""The provider over real HTTPS (and mTLS) against the REAL local network: PLC + PDS from npm and
Debian's registry. Every image here is really pushed and every record really committed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from atcr_devnet import Account, LocalNetwork, Publisher
from atcr_devnet.network import free_port
from tests.provider.harness import Provider, provider_settings, running_provider, wait_for
from tests.provider.pki import Pki
from tests.support.devnet_policy import policy_text, settings_for

pytestmark = pytest.mark.network


@dataclass(frozen=True)
class Corpus:
    """One of each case, published once for the module."""

    alice: Account
    mallory: Account
    signed: str
    signed_tag: str
    unsigned: str
    untrusted: str
    revoked: str
    digest_mismatch: str
    unknown: str
    unreachable: str


@pytest.fixture(scope="module")
def corpus(network: LocalNetwork, publisher: Publisher) -> Corpus:
    alice = publisher.create_account("alice")
    mallory = publisher.create_account("mallory")
    signed = publisher.publish_signed_image(alice, "web", tag="v1")
    assert signed.image.tag_reference is not None
    unsigned = publisher.push_image(publisher.image_repository(alice, "unsigned"))
    untrusted = publisher.publish_signed_image(mallory, "evil")
    revoked = publisher.publish_signed_image(alice, "revoked")
    publisher.delete_record(alice, revoked.record.uri)
    repository = publisher.image_repository(alice, "swap")
    image = publisher.push_image(repository, "a")
    other = publisher.push_image(repository, "b")
    record = publisher.write_manifest_record(
        alice, repository="swap", digest=other.digest, media_type=other.media_type
    )
    publisher.attach_signature(image, account=alice, record=record)
    return Corpus(
        alice=alice,
        mallory=mallory,
        signed=signed.image.reference,
        signed_tag=signed.image.tag_reference,
        unsigned=unsigned.reference,
        untrusted=untrusted.image.reference,
        revoked=revoked.image.reference,
        digest_mismatch=image.reference,
        unknown=f"{network.registry}/{alice.handle}/never-pushed@sha256:{'0' * 64}",
        unreachable=f"127.0.0.1:9/nobody/app@sha256:{'1' * 64}",
    )


def trusting(network: LocalNetwork, *accounts: Account, action: str = "enforce") -> str:
    return policy_text(network.registry, {a.did: {} for a in accounts}, action=action)


@asynccontextmanager
async def provider_for(
    network: LocalNetwork, pki: Pki, policy: Path, **overrides: Any
) -> AsyncIterator[Provider]:
    options: dict[str, Any] = {
        "deadline": 10.0,
        "verifier": settings_for(network, verify_handles=False),
        **overrides,
    }
    settings = provider_settings(pki, policy, **options)
    async with running_provider(settings, pki) as provider:
        yield provider


@pytest.fixture
def policy_file(tmp_path: Path, network: LocalNetwork, corpus: Corpus) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(trusting(network, corpus.alice))
    return path


async def test_signed_image_is_admitted_over_mtls(
    network: LocalNetwork, corpus: Corpus, pki: Pki, policy_file: Path
) -> None:
    async with provider_for(network, pki, policy_file, client_ca=pki.client_ca_file) as p:
        items = await p.items([corpus.signed, corpus.signed_tag])
    digest = corpus.signed.split("@", 1)[1]
    for key in (corpus.signed, corpus.signed_tag):
        assert items[key] == {
            "key": key,
            "value": {
                "allowed": True,
                "verified": True,
                "digest": digest,
                "did": corpus.alice.did,
                "policy": "local-images",
                "reason": f"signed by trusted DID {corpus.alice.did}",
            },
        }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "no ATProto signature artifact found"),
        ("untrusted", "signer is not a trusted DID"),
        ("revoked", "is not in the repository"),
        ("digest_mismatch", "record binds sha256:"),
    ],
)
async def test_denials_are_item_errors_with_the_reason(
    network: LocalNetwork, corpus: Corpus, pki: Pki, policy_file: Path, case: str, reason: str
) -> None:
    key = getattr(corpus, case)
    async with provider_for(network, pki, policy_file) as p:
        items = await p.items([key])
    assert set(items[key]) == {"key", "error"}
    assert reason in items[key]["error"]
    assert items[key]["error"].endswith(" (policy local-images)")


async def test_unknown_and_unreachable_images_are_answered_with_an_error(
    network: LocalNetwork, corpus: Corpus, pki: Pki, tmp_path: Path
) -> None:
    policy = tmp_path / "everything.yaml"
    policy.write_text(policy_text(network.registry, {corpus.alice.did: {}}, scope="**"))
    async with provider_for(network, pki, policy, deadline=5.0) as p:
        status, document = await p.validate([corpus.unknown, corpus.unreachable])
    assert status == 200
    items = {item["key"]: item for item in document["response"]["items"]}
    for key in (corpus.unknown, corpus.unreachable):
        assert set(items[key]) == {"key", "error"} and items[key]["error"]
    # Undecided is also a systemError: Gatekeeper caches item errors but never systemErrors.
    assert document["response"]["systemError"].startswith("could not verify 1 image(s)")
    assert corpus.unreachable in document["response"]["systemError"]
    assert items[corpus.unreachable]["error"].startswith("could not verify")


async def test_a_mixed_ten_key_request_answers_every_key(
    network: LocalNetwork, corpus: Corpus, pki: Pki, policy_file: Path
) -> None:
    keys = [
        corpus.signed,
        corpus.signed_tag,
        corpus.unsigned,
        corpus.untrusted,
        corpus.revoked,
        corpus.digest_mismatch,
        corpus.unknown,
        "docker.io/library/nginx:1.25",  # no scope matches: defaultAction deny, no I/O
        "not a reference!",
        corpus.signed,  # a duplicate
    ]
    async with provider_for(network, pki, policy_file) as p:
        status, document = await p.validate(keys)
        assert status == 200 and document["response"]["systemError"] == ""
        items = document["response"]["items"]
        assert [i["key"] for i in items] == list(dict.fromkeys(keys))
        for item in items:
            assert ("value" in item) != ("error" in item), item
        admitted = {i["key"] for i in items if "value" in i}
        assert admitted == {corpus.signed, corpus.signed_tag}
        # the same request again is served from the verdict cache
        hits = await p.metric("atcr_cache_hits_total")
        again = await p.items(keys)
        assert again == {i["key"]: i for i in items}
        assert await p.metric("atcr_cache_hits_total") > hits


async def test_a_policy_file_change_takes_effect_without_restart(
    network: LocalNetwork, corpus: Corpus, pki: Pki, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(trusting(network, corpus.mallory))
    async with provider_for(network, pki, policy) as p:
        before = await p.items([corpus.signed])
        assert "not a trusted DID" in before[corpus.signed]["error"]
        policy.write_text(trusting(network, corpus.alice))

        async def admitted() -> bool:
            return "value" in (await p.items([corpus.signed]))[corpus.signed]

        await wait_for(admitted)
        # an invalid edit is rejected and the last good policy keeps answering
        policy.write_text("version: 1.0\npolicies: oops\n")

        async def rejected() -> bool:
            return await p.metric("atcr_policy_reload_total", {"result": "failure"}) >= 1

        await wait_for(rejected)
        assert "value" in (await p.items([corpus.signed]))[corpus.signed]


async def test_namespace_policies_and_audit(
    network: LocalNetwork, corpus: Corpus, pki: Pki, tmp_path: Path
) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "policy.yaml").write_text(trusting(network, corpus.alice))
    (directory / "policy.strangers.yaml").write_text(trusting(network, corpus.mallory))
    (directory / "policy.sandbox.yaml").write_text(trusting(network, corpus.alice, action="audit"))
    async with provider_for(network, pki, directory) as p:
        signed, unsigned = corpus.signed, corpus.unsigned
        items = await p.items(
            [signed, f"[team-a]{signed}", f"[strangers]{signed}", f"[sandbox]{unsigned}"]
        )
    assert items[signed]["value"]["verified"] is True
    assert items[f"[team-a]{signed}"]["value"]["verified"] is True  # no override: default
    assert "not a trusted DID" in items[f"[strangers]{signed}"]["error"]
    audit = items[f"[sandbox]{unsigned}"]["value"]
    assert audit["allowed"] is True and audit["verified"] is False and audit["did"] is None
    assert audit["reason"].startswith("audit only: no ATProto signature artifact")


async def test_metrics_and_logs_of_real_verifications(
    network: LocalNetwork, corpus: Corpus, pki: Pki, policy_file: Path
) -> None:
    async with provider_for(network, pki, policy_file) as p:
        await p.items([corpus.signed, corpus.unsigned, corpus.untrusted])
        await p.items([corpus.signed])  # a cache hit
        status, text = await p.health("/metrics")
        events = [e for e in p.log_events() if e["event"] == "verification"]
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("atcr_verifications_total", result="verified") == 2
    assert value("atcr_verifications_total", result="failed") == 2
    assert ("atcr_verifications_total", (("result", "error"),)) in samples
    assert value("atcr_verification_duration_seconds_count") == 4
    assert value("atcr_did_resolutions_total", result="success") == 1  # alice, once
    assert ("atcr_did_resolutions_total", (("result", "failure"),)) in samples
    assert value("atcr_cache_hits_total") >= 1
    assert value("atcr_cache_misses_total") >= 3
    assert value("atcr_provider_requests_total", outcome="ok") == 2
    assert value("atcr_provider_keys_total", result="admitted") == 2
    assert value("atcr_provider_keys_total", result="denied") == 2
    assert value("atcr_policy_reload_total", result="success") == 1
    assert value("atcr_policy_last_reload_success_timestamp_seconds") > 0
    assert any(name == "atcr_policy_info" for name, _ in samples)
    # every verification that did work is logged with image, did, duration and error; the
    # second request's admission came from the cache and is not logged at info
    assert len(events) == 3
    by_image = {e["image"]: e for e in events}
    assert by_image[corpus.signed]["did"] == corpus.alice.did
    assert by_image[corpus.signed]["error"] is None
    assert by_image[corpus.untrusted]["did"] == corpus.mallory.did
    assert "not a trusted DID" in by_image[corpus.untrusted]["error"]
    assert by_image[corpus.unsigned]["did"] is None
    assert all(isinstance(e["duration"], float) for e in events)


# --- the installed console script ----------------------------------------------------------------


def console_script() -> str:
    beside = Path(sys.executable).parent / "atcr-verify-provider"
    path = str(beside) if beside.exists() else shutil.which("atcr-verify-provider")
    assert path, "the atcr-verify-provider console script is not installed (pip install -e .)"
    return path


async def test_the_console_script_serves_until_sigterm(
    network: LocalNetwork, corpus: Corpus, pki: Pki, policy_file: Path
) -> None:
    https, health = free_port(), free_port()
    env = {
        **os.environ,
        "ATCR_PROVIDER_LISTEN": f"127.0.0.1:{https}",
        "ATCR_PROVIDER_TLS_CERT": str(pki.server_cert),
        "ATCR_PROVIDER_TLS_KEY": str(pki.server_key),
        "ATCR_POLICY": str(policy_file),
        "ATCR_PLC_URL": network.plc_url,
        "ATCR_PLAIN_HTTP": network.registry,
        "ATCR_ALLOW_PRIVATE_NETWORKS": "1",
    }
    process = await asyncio.create_subprocess_exec(
        console_script(),
        "--health-listen",
        f"127.0.0.1:{health}",
        "--client-ca",
        str(pki.client_ca_file),
        "--deadline",
        "10",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=pki.client_context())
        ) as session:

            async def ready() -> bool:
                assert process.returncode is None, await process.communicate()
                try:
                    async with session.get(f"http://127.0.0.1:{health}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_for(ready, within=30)
            body = {"kind": "ProviderRequest", "request": {"keys": [corpus.signed]}}
            async with session.post(f"https://127.0.0.1:{https}/validate", json=body) as r:
                document = await r.json()
            (item,) = document["response"]["items"]
            assert item["value"]["allowed"] is True and item["value"]["did"] == corpus.alice.did
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr
    assert b'"event": "provider listening"' in stderr


def test_the_console_script_exits_2_on_configuration_errors(tmp_path: Path) -> None:
    usage = subprocess.run(
        [console_script(), "--deadline", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert usage.returncode == 2 and "--deadline" in usage.stderr
    no_certs = subprocess.run(
        [
            console_script(),
            "--policy-file",
            str(tmp_path / "p.yaml"),
            "--tls-cert",
            str(tmp_path / "missing.crt"),
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert no_certs.returncode == 2 and "cannot load TLS files" in no_certs.stderr
