"""``providerUrl``: the plugin delegates to the REAL ``atcr-verify-provider`` over HTTPS + mTLS.

The provider runs as its own process on 127.0.0.1 against the real local network, with test
certificates from ``tests.provider.pki``. The plugin then answers with the provider's IMAGE-level
verdict for each artifact, without loading the verification core.
"""

from __future__ import annotations

import subprocess
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from atcr_devnet import Account, LocalNetwork, Publisher
from atcr_devnet.network import free_port
from tests.provider.pki import Pki
from tests.ratify.harness import (
    PLUGIN_TYPE,
    VERIFIER_NAME,
    PluginRun,
    plugin_input,
    reference_desc,
    run_plugin,
)
from tests.support.devnet_policy import policy_text


@dataclass(frozen=True)
class RunningProvider:
    url: str
    pki: Pki


@pytest.fixture
def provider(network: LocalNetwork, account: Account, tmp_path: Path) -> Iterator[RunningProvider]:
    executable = Path(sysconfig.get_path("scripts")) / "atcr-verify-provider"
    assert executable.is_file(), "atcr-verify-provider is not installed"
    pki = Pki.create(tmp_path / "pki")
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(network.registry, {account.did: {}}))
    port, health = free_port(), free_port()
    log = (tmp_path / "provider.log").open("wb")
    process = subprocess.Popen(
        [
            str(executable),
            "--listen",
            f"127.0.0.1:{port}",
            "--health-listen",
            f"127.0.0.1:{health}",
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
            "--client-ca",
            str(pki.client_ca_file),
            "--policy-file",
            str(policy),
            "--plc-url",
            network.plc_url,
            "--plain-http",
            network.registry,
            "--allow-private-networks",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "provider.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the provider did not become ready"
            time.sleep(0.1)
        yield RunningProvider(f"https://127.0.0.1:{port}/validate", pki)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def delegated(
    provider: RunningProvider, subject: str, desc: dict[str, Any], **extra: Any
) -> PluginRun:
    pki = provider.pki
    config: dict[str, Any] = {
        "name": VERIFIER_NAME,
        "type": PLUGIN_TYPE,
        "providerUrl": provider.url,
        "providerCaFile": str(pki.directory / "server-ca.crt"),
        "providerCertFile": str(pki.directory / "client.crt"),
        "providerKeyFile": str(pki.directory / "client.key"),
        "timeout": 10,
        **extra,
    }
    return run_plugin(
        plugin_input({k: v for k, v in config.items() if v is not None}, desc), subject=subject
    )


def test_signed_image_is_success_through_the_provider(
    provider: RunningProvider, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "delegated")
    run = delegated(provider, signed.reference, reference_desc(signed.artifact))
    result = run.result
    assert result["isSuccess"] is True
    assert result["name"] == VERIFIER_NAME and result["type"] == PLUGIN_TYPE
    extensions = result["extensions"]
    assert extensions["source"] == "provider"
    assert extensions["did"] == account.did
    assert extensions["digest"] == signed.image.digest
    assert extensions["artifactDigest"] == signed.artifact.digest
    assert extensions["verified"] is True and extensions["outcome"] == "verified"


def test_untrusted_signature_is_not_success_with_the_providers_reason(
    provider: RunningProvider, publisher: Publisher
) -> None:
    mallory = publisher.create_account("mallory")
    signed = publisher.publish_signed_image(mallory, "delegatedbad")
    result = delegated(provider, signed.reference, reference_desc(signed.artifact)).result
    assert result["isSuccess"] is False
    assert "not a trusted DID" in result["message"]
    assert result["extensions"]["outcome"] == "failed"


def test_provider_refusing_our_certificate_could_not_decide(
    provider: RunningProvider, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "delegatednocert")
    desc = reference_desc(signed.artifact)
    result = delegated(
        provider, signed.reference, desc, providerCertFile=None, providerKeyFile=None
    ).result
    assert result["isSuccess"] is False
    assert result["message"].startswith("could not decide: provider unreachable")
    assert result["extensions"]["outcome"] == "error"


def test_provider_with_an_untrusted_certificate_could_not_decide(
    provider: RunningProvider, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "delegatedca")
    desc = reference_desc(signed.artifact)
    other_ca = str(provider.pki.directory / "other-ca.crt")
    result = delegated(provider, signed.reference, desc, providerCaFile=other_ca).result
    assert result["isSuccess"] is False
    assert result["message"].startswith("could not decide: provider unreachable")


def test_provider_down_could_not_decide(
    publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "delegateddown")
    config = {
        "name": VERIFIER_NAME,
        "providerUrl": f"http://127.0.0.1:{free_port()}/validate",
        "timeout": 2,
    }
    result = run_plugin(
        plugin_input(config, reference_desc(signed.artifact)), subject=signed.reference
    ).result
    assert result["isSuccess"] is False
    assert result["type"] == ""
    assert result["message"].startswith("could not decide: provider unreachable")
