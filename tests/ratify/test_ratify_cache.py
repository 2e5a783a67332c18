"""The disk cache shared by plugin processes, proven with the REAL PLC behind a logging proxy.

``LoggingProxy`` forwards to the real PLC and logs each request: a warm invocation that
makes no PLC request is a cache hit, not a guess.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from atcr_devnet import Account, LocalNetwork, Publisher
from tests.ratify.harness import (
    PluginRun,
    logging_proxy,
    plugin_config,
    plugin_input,
    reference_desc,
    run_plugin,
)
from tests.support.devnet_policy import policy_text


def run(
    network: LocalNetwork,
    cache: Path,
    plc_url: str,
    account: Account,
    subject: str,
    desc: dict[str, Any],
) -> PluginRun:
    policy = policy_text(network.registry, {account.did: {}})
    config = plugin_config(network, policy, cache, plcUrl=plc_url)
    return run_plugin(plugin_input(config, desc), subject=subject)


def entries(cache: Path, kind: str) -> list[Path]:
    return sorted((cache / kind).glob("*.json"))


def test_warm_cache_answers_without_the_plc_and_faster(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "cachewarm")
    desc = reference_desc(signed.artifact)
    cache = tmp_path / "cache"
    with logging_proxy(network.plc_url) as plc:
        cold = run(network, cache, plc.url, account, signed.reference, desc)
        assert cold.result["isSuccess"] is True
        assert cold.result["extensions"]["source"] == "plugin"
        assert plc.dids_requested() == [account.did]
        warm = run(network, cache, plc.url, account, signed.reference, desc)
        assert warm.result["isSuccess"] is True
        assert warm.result["extensions"]["source"] == "cache"
        assert warm.result["extensions"]["did"] == account.did
        assert plc.dids_requested() == [account.did]  # no second PLC request
        assert warm.seconds < cold.seconds
        # Another image by the same signer: a new verdict, but the DID document from disk.
        second = publisher.publish_signed_image(account, "cachewarm2")
        again = run(
            network, cache, plc.url, account, second.reference, reference_desc(second.artifact)
        )
        assert again.result["isSuccess"] is True
        assert again.result["extensions"]["source"] == "plugin"
        assert plc.dids_requested() == [account.did]
    assert len(entries(cache, "dids")) == 1
    assert len(entries(cache, "verdicts")) == 2
    assert not [p for p in (cache / "verdicts").iterdir() if p.name.startswith(".tmp-")]
    assert (cache.stat().st_mode & 0o777) == 0o700


def test_corrupted_cache_entries_are_ignored_never_trusted(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    mallory = publisher.create_account("mallory")
    forged = publisher.did_document(mallory.did)  # a real, valid document: for the wrong DID
    signed = publisher.publish_signed_image(account, "cachecorrupt")
    desc = reference_desc(signed.artifact)
    cache = tmp_path / "cache"
    with logging_proxy(network.plc_url) as plc:
        assert run(network, cache, plc.url, account, signed.reference, desc).result["isSuccess"]
        (did_entry,) = entries(cache, "dids")
        (verdict_entry,) = entries(cache, "verdicts")
        damaged = [
            b"",
            b"{not json",
            json.dumps({"key": "someone else", "fetchedAt": 1, "body": ""}).encode(),
            json.dumps({"key": account.did, "fetchedAt": "now", "body": "!!not base64!!"}).encode(),
            json.dumps(
                {
                    "key": account.did,
                    "fetchedAt": json.loads(did_entry.read_bytes())["fetchedAt"],
                    "body": base64.b64encode(json.dumps(forged).encode()).decode(),
                }
            ).encode(),
        ]
        verdict_damage = [b"", b"[]", verdict_entry.read_bytes()[:-20]]
        for index, garbage in enumerate(damaged):
            did_entry.write_bytes(garbage)
            verdict_entry.write_bytes(verdict_damage[index % len(verdict_damage)])
            result = run(network, cache, plc.url, account, signed.reference, desc).result
            assert result["isSuccess"] is True, (index, result)
            assert result["extensions"]["source"] == "plugin"
            assert result["extensions"]["did"] == account.did
            assert len(plc.dids_requested()) == index + 2  # the damaged entry was refetched
        stored = json.loads(did_entry.read_bytes())
        assert stored["key"] == account.did  # replaced by a good entry


def test_stale_did_document_is_served_only_within_the_bounded_window(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "cachestale")
    desc = reference_desc(signed.artifact)
    cache = tmp_path / "cache"

    def age_did_entry(seconds: float) -> None:
        (entry,) = entries(cache, "dids")
        document = json.loads(entry.read_bytes())
        document["fetchedAt"] -= seconds
        entry.write_text(json.dumps(document))
        for verdict in entries(cache, "verdicts"):
            verdict.unlink()

    with logging_proxy(network.plc_url) as plc:
        assert run(network, cache, plc.url, account, signed.reference, desc).result["isSuccess"]
        plc.outage = True
        age_did_entry(400)  # past the 300 s TTL, inside the 1 h stale-if-error window
        stale = run(network, cache, plc.url, account, signed.reference, desc).result
        assert stale["isSuccess"] is True
        assert len(plc.dids_requested()) == 2  # it did try the PLC first
        age_did_entry(4000)  # past the window: the outage is "could not decide"
        gone = run(network, cache, plc.url, account, signed.reference, desc).result
        assert gone["isSuccess"] is False
        assert gone["message"].startswith("could not decide: ")
        assert gone["extensions"]["outcome"] == "error"


def test_a_cache_directory_others_can_write_is_not_used(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "cacheunsafe")
    desc = reference_desc(signed.artifact)
    cache = tmp_path / "shared"
    cache.mkdir(mode=0o700)
    os.chmod(cache, 0o777)
    result = run(network, cache, network.plc_url, account, signed.reference, desc)
    assert result.result["isSuccess"] is True
    assert "WARN: atcr-ratify: not using cacheDir" in result.stderr
    assert "writable by group or others" in result.stderr
    assert list(cache.iterdir()) == []
    os.chmod(cache, 0o700)
    os.chown(cache, 65534, 65534)
    result = run(network, cache, network.plc_url, account, signed.reference, desc)
    assert result.result["isSuccess"] is True
    assert "owned by another user" in result.stderr


def test_a_denial_is_cached_briefly_and_an_admission_never_outlives_a_policy_change(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "cachepolicy")
    desc = reference_desc(signed.artifact)
    cache = tmp_path / "cache"
    trusted = policy_text(network.registry, {account.did: {}})
    expired = policy_text(
        network.registry,
        {account.did: {"validFrom": "2020-01-01T00:00:00Z", "expiresAt": "2021-01-01T00:00:00Z"}},
    )
    admitted = run_plugin(
        plugin_input(plugin_config(network, trusted, cache), desc), subject=signed.reference
    ).result
    assert admitted["isSuccess"] is True
    changed = run_plugin(
        plugin_input(plugin_config(network, expired, cache), desc), subject=signed.reference
    ).result
    assert changed["isSuccess"] is False and changed["extensions"]["source"] == "plugin"
    expiries = sorted(json.loads(p.read_bytes())["expires"] for p in entries(cache, "verdicts"))
    denial, admission = expiries
    assert 200 < admission - denial < 300  # 300 s for an admission, 30 s for a denial
