"""``verify_artifact`` when the artifact itself cannot be fetched: "could not decide", not denied.

Before the signer is known nothing says the signature is untrusted, so a registry outage must not
read as a denial (it would be cached as one, and reported as evidence found wanting).
"""

from __future__ import annotations

import pytest

from atcr_devnet import Account, LocalNetwork, Publisher
from atcr_verify import Outcome, Verifier, load_policy
from atcr_verify.oci.manifest import OCI_MANIFEST, parse_descriptor
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE
from tests.support.devnet_policy import policy_text, settings_for

pytestmark = pytest.mark.network


async def test_unreachable_registry_is_undecided_for_one_artifact(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "artifactfault")
    descriptor = parse_descriptor(
        {
            "mediaType": OCI_MANIFEST,
            "digest": signed.artifact.digest,
            "size": signed.artifact.size,
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
        }
    )
    gone = signed.reference.replace(network.registry, "127.0.0.1:9", 1)
    policy = load_policy(policy_text("127.0.0.1:9", {account.did: {}}))
    async with Verifier(policy, settings_for(network)) as verifier:
        verdict = await verifier.verify_artifact(gone, descriptor)
        reachable = await verifier.verify_artifact(
            signed.reference,
            descriptor,
            policy=load_policy(policy_text(network.registry, {account.did: {}})),
        )
    assert not verdict.allowed
    assert verdict.outcome is Outcome.ERROR
    (signature,) = verdict.signatures
    assert signature.did is None and signature.error is not None
    assert reachable.allowed and reachable.outcome is Outcome.VERIFIED
