"""The whole chain against the REAL local network: PLC + PDS from npm, Debian's registry.

Every image here is really pushed, every record really committed and signed by the PDS, every
DID document really served by the PLC. Where a case needs an attacker between the verifier and
the PDS (tampered proof bytes, high-S signatures), ``TamperingTransport`` rewrites the real PDS
answer in flight: it is a man-in-the-middle, not a stand-in for the PDS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from atcr_devnet import Account, LocalNetwork, Publisher
from atcr_verify import (
    IdentitySettings,
    Outcome,
    Verdict,
    Verifier,
    load_policy,
)
from atcr_verify.oci.manifest import Descriptor, parse_descriptor
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE
from atcr_verify.repo import dagcbor
from atcr_verify.repo.car import read_car
from atcr_verify.repo.cid import Cid
from tests.support.devnet_policy import policy_text, settings_for
from tests.support.keys import ORDER
from tests.support.mst_builder import write_car

pytestmark = pytest.mark.network


@asynccontextmanager
async def verifier(
    network: LocalNetwork,
    policy: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> AsyncIterator[Verifier]:
    settings = settings_for(network, **overrides)
    client = None
    if transport is not None:
        client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
    async with Verifier(load_policy(policy), settings, client=client) as v:
        yield v
    if client is not None:
        await client.aclose()


async def verify(network: LocalNetwork, policy: str, image: str, **kw: Any) -> Verdict:
    async with verifier(network, policy, **kw) as v:
        return await v.verify(image)


def trusting(network: LocalNetwork, *accounts: Account, **details: Any) -> str:
    return policy_text(network.registry, {a.did: dict(details) for a in accounts})


# --- admitted -----------------------------------------------------------------------------------


async def test_signed_image_is_admitted_with_full_provenance(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "app")
    verdict = await verify(network, trusting(network, account), signed.image.reference)
    assert verdict.allowed and verdict.verified
    assert verdict.outcome is Outcome.VERIFIED
    assert verdict.digest == signed.image.digest
    assert verdict.policy == "local-images" and verdict.action == "enforce"
    (signature,) = verdict.signatures
    assert signature.valid and signature.trusted and signature.error is None
    assert signature.did == account.did
    assert signature.record_uri == signed.record.uri
    assert signature.pds == network.pds_url
    assert signature.commit_cid and signature.commit_cid.startswith("bafyrei")


async def test_tag_reference_is_resolved_to_its_digest(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "tagged", tag="v1")
    assert signed.image.tag_reference is not None
    verdict = await verify(network, trusting(network, account), signed.image.tag_reference)
    assert verdict.allowed
    assert verdict.digest == signed.image.digest


async def test_multi_arch_index_is_verified_as_the_index_digest(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "multi", multi_arch=True)
    verdict = await verify(network, trusting(network, account), signed.image.reference)
    assert verdict.allowed and verdict.verified
    assert verdict.digest == signed.image.digest


async def test_two_trusted_signers_meet_min_signatures(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    bob = publisher.create_account("bob")
    signed = publisher.publish_signed_image(account, "dual")
    record = publisher.write_manifest_record(
        bob, repository="dual", digest=signed.image.digest, media_type=signed.image.media_type
    )
    policy = policy_text(network.registry, {account.did: {}, bob.did: {}}, min_signatures=2)
    assert not (await verify(network, policy, signed.image.reference)).allowed
    publisher.attach_signature(signed.image, account=bob, record=record)
    verdict = await verify(network, policy, signed.image.reference)
    assert verdict.allowed and verdict.verified
    assert {s.did for s in verdict.signatures} == {account.did, bob.did}


# --- denied -------------------------------------------------------------------------------------


async def test_unsigned_image_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    image = publisher.push_image(publisher.image_repository(account, "unsigned"))
    verdict = await verify(network, trusting(network, account), image.reference)
    assert not verdict.allowed
    assert verdict.outcome is Outcome.FAILED
    assert "no ATProto signature artifact" in verdict.reason


async def test_signature_by_untrusted_did_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    mallory = publisher.create_account("mallory")
    signed = publisher.publish_signed_image(mallory, "app")
    verdict = await verify(network, trusting(network, account), signed.image.reference)
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED
    (signature,) = verdict.signatures
    assert signature.did == mallory.did and not signature.trusted
    assert "not a trusted DID" in verdict.reason


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"validFrom": "2020-01-01T00:00:00Z", "expiresAt": "2021-01-01T00:00:00Z"}, "expired"),
        ({"validFrom": "2999-01-01T00:00:00Z", "expiresAt": None}, "starts at"),
    ],
)
async def test_signer_outside_trust_window_is_denied(
    network: LocalNetwork,
    publisher: Publisher,
    account: Account,
    window: dict[str, Any],
    reason: str,
) -> None:
    signed = publisher.publish_signed_image(account, "app")
    verdict = await verify(network, trusting(network, account, **window), signed.image.reference)
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED
    assert reason in verdict.reason


async def test_deleted_record_revokes_the_signature(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "revoked")
    policy = trusting(network, account)
    assert (await verify(network, policy, signed.image.reference)).allowed
    publisher.delete_record(account, signed.record.uri)
    verdict = await verify(network, policy, signed.image.reference)
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED
    assert "is not in the repository" in verdict.reason


async def test_record_for_another_digest_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    repository = publisher.image_repository(account, "swap")
    image = publisher.push_image(repository, "a")
    other = publisher.push_image(repository, "b")
    record = publisher.write_manifest_record(
        account, repository="swap", digest=other.digest, media_type=other.media_type
    )
    publisher.attach_signature(image, account=account, record=record)
    verdict = await verify(network, trusting(network, account), image.reference)
    assert not verdict.allowed
    assert f"record binds {other.digest}" in verdict.reason


async def test_artifact_whose_subject_is_another_image_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    repository = publisher.image_repository(account, "subject")
    image = publisher.push_image(repository, "a")
    other = publisher.push_image(repository, "b")
    record = publisher.write_manifest_record(
        account, repository="subject", digest=image.digest, media_type=image.media_type
    )
    publisher.attach_signature(
        image, account=account, record=record, subject_override=other.descriptor()
    )
    verdict = await verify(network, trusting(network, account), image.reference)
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED
    assert "signature artifact refers to another image" in verdict.reason


async def test_key_rotated_away_from_the_signing_key_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "rotated")
    publisher.rotate_signing_key(account, install_in_pds=False)
    verdict = await verify(
        network, trusting(network, account), signed.image.reference, strict_hints=False
    )
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED
    assert "does not verify" in verdict.reason


async def test_stale_key_hint_after_legitimate_rotation_is_denied_unless_hints_are_lenient(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "rehint")
    publisher.rotate_signing_key(account, install_in_pds=True)
    publisher.write_manifest_record(  # any write: the next commit is signed with the new key
        account, repository="other", digest=signed.image.digest, media_type=signed.image.media_type
    )
    policy = trusting(network, account)
    strict = await verify(network, policy, signed.image.reference)
    assert not strict.allowed
    assert "signing key that is not the DID document's current key" in strict.reason
    lenient = await verify(network, policy, signed.image.reference, strict_hints=False)
    assert lenient.allowed and lenient.verified


async def test_artifact_claiming_another_pds_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    image = publisher.push_image(publisher.image_repository(account, "pdshint"))
    record = publisher.write_manifest_record(
        account, repository="pdshint", digest=image.digest, media_type=image.media_type
    )
    publisher.attach_signature(
        image,
        account=account,
        record=record,
        document_overrides={"atproto": {"pdsEndpoint": "https://evil.example.com"}},
    )
    verdict = await verify(network, trusting(network, account), image.reference)
    assert not verdict.allowed
    assert "claims PDS https://evil.example.com" in verdict.reason


async def test_audit_action_admits_a_failing_image_and_says_why(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    image = publisher.push_image(publisher.image_repository(account, "audited"))
    policy = policy_text(network.registry, {account.did: {}}, action="audit")
    verdict = await verify(network, policy, image.reference)
    assert verdict.allowed and not verdict.verified
    assert verdict.reason.startswith("audit only: no ATProto signature artifact")


async def test_image_outside_every_scope_gets_the_default_action(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "app")
    policy = policy_text(network.registry, {account.did: {}}, scope="atcr.io/**")
    verdict = await verify(network, policy, signed.image.reference)
    assert not verdict.allowed and verdict.policy is None
    assert "no policy scope matches" in verdict.reason


# --- a man in the middle of the real PDS answer -------------------------------------------------


class TamperingTransport(httpx.AsyncBaseTransport):
    """Forwards to the real servers and rewrites real ``getRecord`` CARs in flight."""

    def __init__(self, rewrite: Callable[[bytes], bytes]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._rewrite = rewrite

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path != "/xrpc/com.atproto.sync.getRecord" or response.status_code != 200:
            return response
        body = await response.aread()
        await response.aclose()
        return httpx.Response(
            200, headers={"content-type": "application/vnd.ipld.car"}, content=self._rewrite(body)
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _rewrite_commit(car: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    parsed = read_car(car)
    commit = dagcbor.decode(parsed.blocks[parsed.root])
    change(commit)
    block = dagcbor.encode(commit)
    root = Cid.for_block(block)
    blocks = [(cid, data) for cid, data in parsed.blocks.items() if cid != parsed.root]
    return write_car([root], [(root, block), *blocks])


def _high_s(commit: dict[str, Any]) -> None:
    sig = commit["sig"]
    s = int.from_bytes(sig[32:], "big")
    commit["sig"] = sig[:32] + (ORDER["k256"] - s).to_bytes(32, "big")


def _flip_record_byte(car: bytes) -> bytes:
    parsed = read_car(car)
    out = bytearray(car)
    commit_block = parsed.blocks[parsed.root]
    for data in parsed.blocks.values():
        if data is not commit_block and b"io.atcr.manifest" in data and b"digest" in data:
            index = bytes(out).index(data) + data.index(b"sha256:") + 7
            out[index] = ord("0") if out[index] != ord("0") else ord("1")
            return bytes(out)
    raise AssertionError("no record block in the proof")


async def test_high_s_commit_signature_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "highs")
    transport = TamperingTransport(lambda car: _rewrite_commit(car, _high_s))
    verdict = await verify(
        network, trusting(network, account), signed.image.reference, transport=transport
    )
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED
    assert "high-S" in verdict.reason


async def test_tampered_record_bytes_are_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "tamper")
    transport = TamperingTransport(_flip_record_byte)
    verdict = await verify(
        network, trusting(network, account), signed.image.reference, transport=transport
    )
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED
    assert "hash" in verdict.reason.lower() or "cid" in verdict.reason.lower()


async def test_commit_for_another_did_is_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "otherdid")
    transport = TamperingTransport(
        lambda car: _rewrite_commit(car, lambda c: c.update(did="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"))
    )
    verdict = await verify(
        network, trusting(network, account), signed.image.reference, transport=transport
    )
    assert not verdict.allowed and verdict.outcome is Outcome.FAILED


# --- could not decide ---------------------------------------------------------------------------


async def test_unreachable_pds_is_undecided_not_denied(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "gone")
    publisher.move_pds(account, "http://127.0.0.1:9")
    verdict = await verify(
        network, trusting(network, account), signed.image.reference, strict_hints=False
    )
    assert not verdict.allowed
    assert verdict.outcome is Outcome.ERROR
    assert verdict.signatures[0].error is not None


async def test_unreachable_plc_is_undecided(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "noplc")
    settings = dataclasses.replace(
        settings_for(network),
        identity=IdentitySettings(plc_url="http://127.0.0.1:9", allow_http_pds=True),
    )
    async with Verifier(load_policy(trusting(network, account)), settings) as broken:
        verdict = await broken.verify(signed.image.reference)
    assert not verdict.allowed and verdict.outcome is Outcome.ERROR


# --- caching ------------------------------------------------------------------------------------


async def test_verdicts_are_cached_per_policy_fingerprint(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "cached")
    policy = load_policy(trusting(network, account))
    async with Verifier(policy, settings_for(network)) as v:
        first = await v.verify(signed.image.reference)
        fetched = sum(v.fetcher.bytes_received.values())
        second = await v.verify(signed.image.reference)
        assert second == first
        assert sum(v.fetcher.bytes_received.values()) == fetched  # no I/O for a cached verdict
        assert v.cached(signed.image.reference) == first
        stricter = load_policy(
            trusting(
                network, account, expiresAt=(datetime.now(UTC) - timedelta(days=1)).isoformat()
            )
        )
        assert stricter.fingerprint != policy.fingerprint
        assert v.cached(signed.image.reference, policy=stricter) is None
        denied = await v.verify(signed.image.reference, policy=stricter)
        assert not denied.allowed


# --- one artifact at a time (what Ratify asks) --------------------------------------------------


def _descriptor(artifact: Any) -> Descriptor:
    return parse_descriptor(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": artifact.digest,
            "size": artifact.size,
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
        }
    )


async def test_verify_artifact_checks_exactly_the_given_signature(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    mallory = publisher.create_account("mallory")
    signed = publisher.publish_signed_image(account, "perartifact")
    record = publisher.write_manifest_record(
        mallory,
        repository="perartifact",
        digest=signed.image.digest,
        media_type=signed.image.media_type,
    )
    forged = publisher.attach_signature(signed.image, account=mallory, record=record)
    async with verifier(network, trusting(network, account)) as v:
        good = await v.verify_artifact(signed.image.reference, _descriptor(signed.artifact))
        bad = await v.verify_artifact(signed.image.reference, _descriptor(forged))
        whole = await v.verify(signed.image.reference)
    assert good.allowed and good.verified
    assert [s.did for s in good.signatures] == [account.did]
    assert not bad.allowed and bad.outcome is Outcome.FAILED
    assert [s.did for s in bad.signatures] == [mallory.did]
    assert "not a trusted DID" in bad.reason
    assert whole.allowed and len(whole.signatures) == 2
