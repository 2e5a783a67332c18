"""The installed ``atcr-ratify`` run as Ratify runs it, against the REAL local network and registry.

Each case publishes real images, records and signature artifacts, then hands the plugin exactly
what Ratify would: the three RATIFY_VERIFIER_* variables and the stdin document. Every run is
also checked for Ratify's parsing trap: the answer must be the only line containing ``{`` on
stdout and stderr together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atcr_devnet import Account, LocalNetwork, Publisher
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE
from tests.ratify.harness import (
    PLUGIN_TYPE,
    VERIFIER_NAME,
    PluginRun,
    plugin_config,
    plugin_input,
    reference_desc,
    run_plugin,
)
from tests.support.devnet_policy import policy_text


def trusting(network: LocalNetwork, *accounts: Account, **details: Any) -> str:
    return policy_text(network.registry, {a.did: dict(details) for a in accounts})


def verify(
    network: LocalNetwork,
    tmp_path: Path,
    policy: str,
    subject: str,
    desc: dict[str, Any],
    *,
    use_http: bool = True,
    version: str = "1.0.0",
    **config: Any,
) -> PluginRun:
    stdin = plugin_input(
        plugin_config(network, policy, tmp_path / "cache", **config), desc, use_http=use_http
    )
    return run_plugin(stdin, subject=subject, version=version)


def denied(run: PluginRun, reason: str) -> dict[str, Any]:
    result = run.result
    assert result["isSuccess"] is False, result
    assert reason in result["message"], result["message"]
    assert reason in result["extensions"]["reason"]
    assert result["extensions"]["outcome"] == "failed"
    assert result["extensions"]["verified"] is False
    return result


# --- admitted -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0.0", "0.1.0"])
def test_signed_image_is_success_with_provenance_in_extensions(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path, version: str
) -> None:
    signed = publisher.publish_signed_image(account, "ratify")
    run = verify(
        network,
        tmp_path,
        trusting(network, account),
        signed.reference,
        reference_desc(signed.artifact),
        version=version,
    )
    result = run.result
    assert result["isSuccess"] is True
    assert result["name"] == VERIFIER_NAME and result["type"] == PLUGIN_TYPE
    assert result["message"] == f"signed by trusted DID {account.did}"
    extensions = result["extensions"]
    assert extensions["did"] == account.did
    assert extensions["recordUri"] == signed.record.uri
    assert extensions["policy"] == "local-images"
    assert extensions["reason"] == result["message"]
    assert extensions["digest"] == signed.image.digest
    assert extensions["artifactDigest"] == signed.artifact.digest
    assert extensions["outcome"] == "verified" and extensions["verified"] is True
    assert extensions["source"] == "plugin"
    assert "handle" in extensions
    assert run.stderr.startswith("INFO: atcr-ratify: ") and "{" not in run.stderr


def test_tag_subject_is_resolved_like_ratify_sends_it(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifytag", tag="v1")
    assert signed.image.tag_reference is not None
    run = verify(
        network,
        tmp_path,
        trusting(network, account),
        signed.image.tag_reference,
        reference_desc(signed.artifact),
    )
    result = run.result
    assert result["isSuccess"] is True
    assert result["extensions"]["digest"] == signed.image.digest


def test_plain_http_parameter_works_without_the_store_use_http(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifyplain")
    desc = reference_desc(signed.artifact)
    policy = trusting(network, account)
    https_only = verify(network, tmp_path, policy, signed.reference, desc, use_http=False)
    assert https_only.result["isSuccess"] is False
    assert https_only.result["extensions"]["outcome"] == "error"
    plain = verify(
        network,
        tmp_path,
        policy,
        signed.reference,
        desc,
        use_http=False,
        plainHttp=network.registry,
    )
    assert plain.result["isSuccess"] is True


def test_audit_action_admits_an_untrusted_signature_and_says_so(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    mallory = publisher.create_account("mallory")
    signed = publisher.publish_signed_image(mallory, "ratifyaudit")
    policy = policy_text(network.registry, {account.did: {}}, action="audit")
    result = verify(
        network, tmp_path, policy, signed.reference, reference_desc(signed.artifact)
    ).result
    assert result["isSuccess"] is True
    assert result["extensions"]["verified"] is False
    assert result["extensions"]["action"] == "audit"
    assert result["message"].startswith("audit only:")


# --- denied: every denial case of the core --------------------------------------------------------


def test_signature_by_untrusted_did_is_not_success(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    mallory = publisher.create_account("mallory")
    signed = publisher.publish_signed_image(mallory, "ratifyuntrusted")
    result = denied(
        verify(
            network,
            tmp_path,
            trusting(network, account),
            signed.reference,
            reference_desc(signed.artifact),
        ),
        "not a trusted DID",
    )
    assert result["extensions"]["did"] == mallory.did


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"validFrom": "2020-01-01T00:00:00Z", "expiresAt": "2021-01-01T00:00:00Z"}, "expired"),
        ({"validFrom": "2999-01-01T00:00:00Z", "expiresAt": None}, "starts at"),
    ],
)
def test_signer_outside_trust_window_is_not_success(
    network: LocalNetwork,
    publisher: Publisher,
    account: Account,
    tmp_path: Path,
    window: dict[str, Any],
    reason: str,
) -> None:
    signed = publisher.publish_signed_image(account, "ratifywindow")
    denied(
        verify(
            network,
            tmp_path,
            trusting(network, account, **window),
            signed.reference,
            reference_desc(signed.artifact),
        ),
        reason,
    )


def test_deleted_record_revokes_the_signature(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifyrevoked")
    publisher.delete_record(account, signed.record.uri)
    denied(
        verify(
            network,
            tmp_path,
            trusting(network, account),
            signed.reference,
            reference_desc(signed.artifact),
        ),
        "is not in the repository",
    )


def test_record_for_another_digest_is_not_success(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    repository = publisher.image_repository(account, "ratifyswap")
    image = publisher.push_image(repository, "a")
    other = publisher.push_image(repository, "b")
    record = publisher.write_manifest_record(
        account, repository="ratifyswap", digest=other.digest, media_type=other.media_type
    )
    artifact = publisher.attach_signature(image, account=account, record=record)
    denied(
        verify(
            network, tmp_path, trusting(network, account), image.reference, reference_desc(artifact)
        ),
        f"record binds {other.digest}",
    )


def test_artifact_whose_subject_is_another_image_is_not_success(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    repository = publisher.image_repository(account, "ratifysubject")
    image = publisher.push_image(repository, "a")
    other = publisher.push_image(repository, "b")
    record = publisher.write_manifest_record(
        account, repository="ratifysubject", digest=image.digest, media_type=image.media_type
    )
    artifact = publisher.attach_signature(
        image, account=account, record=record, subject_override=other.descriptor()
    )
    denied(
        verify(
            network, tmp_path, trusting(network, account), image.reference, reference_desc(artifact)
        ),
        "signature artifact refers to another image",
    )


def test_key_rotated_away_is_not_success_strict_and_lenient(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifyrotated")
    publisher.rotate_signing_key(account, install_in_pds=False)
    policy = trusting(network, account)
    desc = reference_desc(signed.artifact)
    denied(
        verify(network, tmp_path, policy, signed.reference, desc),
        "signing key that is not the DID document's current key",
    )
    denied(
        verify(network, tmp_path, policy, signed.reference, desc, strictHints=False),
        "does not verify",
    )


# --- could not decide: exit 0, isSuccess false, "could not decide" --------------------------------


def test_unreachable_pds_could_not_decide(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    publisher.move_pds(account, "http://127.0.0.1:9")  # before publishing: the hints agree
    signed = publisher.publish_signed_image(account, "ratifypds")
    run = verify(
        network,
        tmp_path,
        trusting(network, account),
        signed.reference,
        reference_desc(signed.artifact),
    )
    result = run.result
    assert result["isSuccess"] is False
    assert result["message"].startswith("could not decide: ")
    assert result["extensions"]["outcome"] == "error"
    assert result["extensions"]["did"] == account.did


def test_unreachable_registry_could_not_decide(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifyregistry")
    moved = signed.reference.replace(network.registry, "127.0.0.1:9", 1)
    policy = policy_text(network.registry, {account.did: {}}, scope="127.0.0.1:9/**")
    run = verify(network, tmp_path, policy, moved, reference_desc(signed.artifact))
    result = run.result
    assert result["isSuccess"] is False
    assert result["message"].startswith("could not decide: ")
    assert result["extensions"]["outcome"] == "error"
    cached = list((tmp_path / "cache" / "verdicts").glob("*.json"))
    assert cached == []  # an outage is never remembered as a verdict


# --- artifacts that are not ours ------------------------------------------------------------------


def test_reference_that_is_not_an_atproto_signature_is_not_success(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifyforeign")
    desc = {
        **reference_desc(signed.artifact),
        "artifactType": "application/vnd.cncf.notary.signature",
    }
    result = verify(network, tmp_path, trusting(network, account), signed.reference, desc).result
    assert result["isSuccess"] is False
    assert "is not an ATProto signature artifact" in result["message"]
    assert result["extensions"]["artifactDigest"] == signed.artifact.digest


def test_image_manifest_posing_as_a_signature_is_not_success(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifyposing")
    other = publisher.push_image(signed.image.repository, "other")
    desc = {
        "mediaType": other.media_type,
        "digest": other.digest,
        "size": other.size,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
    }
    result = verify(network, tmp_path, trusting(network, account), signed.reference, desc).result
    assert result["isSuccess"] is False
    assert result["extensions"]["outcome"] == "failed"


# --- logs -----------------------------------------------------------------------------------------


def test_log_file_takes_the_log_lines_and_stderr_stays_empty(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifylog")
    log_file = tmp_path / "plugin.log"
    run = verify(
        network,
        tmp_path,
        trusting(network, account),
        signed.reference,
        reference_desc(signed.artifact),
        logFile=str(log_file),
    )
    assert run.result["isSuccess"] is True
    assert run.stderr == ""
    assert f"INFO atcr-ratify: {signed.reference}" in log_file.read_text()
