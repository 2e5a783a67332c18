"""The REAL Ratify v1 CLI (``ratify verify``, built from ``github.com/ratify-project/ratify``)
verifying real images through this plugin, against the real local network and registry.

Ratify's oras store lists referrers with oras-go v2: Debian's registry (distribution 2.8) has no
Referrers API, so oras-go falls back to the ``sha256-<hex>`` tag schema, which is where the
publisher lists signature artifacts. With ``configPolicy``, ``ratify verify`` exits 0 even when
verification fails: the JSON is what is asserted. The binary is built by ``make ratify-tool``
(mk/ratify.mk); when it is missing these tests FAIL, they never skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from atcr_devnet import Account, LocalNetwork, Publisher
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE
from tests.ratify.harness import PLUGIN_TYPE, VERIFIER_NAME, logging_proxy, plugin_executable
from tests.support.devnet_policy import policy_text


def ratify_binary() -> Path:
    tools = os.environ.get("ATCR_TOOLS_BIN") or str(Path.home() / ".cache" / "atcr-tools" / "bin")
    path = Path(tools) / "ratify"
    if not path.is_file():
        pytest.fail(
            f"the ratify CLI is missing at {path}: run `make ratify-tool` (mk/ratify.mk)",
            pytrace=False,
        )
    return path


def ratify_config(
    tmp_path: Path,
    network: LocalNetwork,
    account: Account,
    verifier: dict[str, Any],
    registry: str | None = None,
) -> Path:
    """A CLI config: oras store over plain HTTP, configPolicy requiring our artifact type."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    binary = plugins / str(verifier.get("type") or verifier["name"])
    if not binary.exists():
        binary.symlink_to(plugin_executable())  # Ratify finds the plugin by type (or name)
    config = {
        "store": {
            "version": "1.0.0",
            "plugins": [
                {
                    "name": "oras",
                    "useHttp": True,
                    "localCachePath": str(tmp_path / "oras-cache"),
                }
            ],
        },
        "policy": {
            "version": "1.0.0",
            "plugin": {
                "name": "configPolicy",
                "artifactVerificationPolicies": {SIGNATURE_ARTIFACT_TYPE: "all"},
            },
        },
        "verifier": {
            "pluginBinDirs": [str(plugins)],
            "plugins": [
                {
                    "artifactTypes": SIGNATURE_ARTIFACT_TYPE,
                    "policy": policy_text(registry or network.registry, {account.did: {}}),
                    "plcUrl": network.plc_url,
                    "allowPrivateNetworks": True,
                    "cacheDir": str(tmp_path / "plugin-cache"),
                    "timeout": 10,
                    **verifier,
                }
            ],
        },
        "executor": {"verificationRequestTimeout": 20000},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def ratify_verify(config: Path, subject: str, tmp_path: Path) -> dict[str, Any]:
    env = {**os.environ, "HOME": str(tmp_path), "RATIFY_CONFIG": str(tmp_path / ".ratify")}
    proc = subprocess.run(
        [str(ratify_binary()), "verify", "-c", str(config), "-s", subject],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    report: dict[str, Any] = json.loads(proc.stdout)
    report.setdefault("isSuccess", False)  # Go's omitempty drops a false isSuccess
    return report


def test_ratify_verify_admits_a_signed_image_through_the_plugin(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    signed = publisher.publish_signed_image(account, "ratifycli")
    with logging_proxy(network.registry_url) as registry:
        config = ratify_config(
            tmp_path,
            network,
            account,
            {"name": VERIFIER_NAME, "type": PLUGIN_TYPE, "version": "1.0.0"},
            registry=registry.host,
        )
        subject = signed.reference.replace(network.registry, registry.host, 1)
        report = ratify_verify(config, subject, tmp_path)
    assert report["isSuccess"] is True, report
    (verifier,) = report["verifierReports"]
    assert verifier["isSuccess"] is True
    assert verifier["artifactType"] == SIGNATURE_ARTIFACT_TYPE
    assert verifier["referenceDigest"] == signed.artifact.digest
    assert verifier["name"] == VERIFIER_NAME and verifier["type"] == PLUGIN_TYPE
    assert verifier["message"] == f"signed by trusted DID {account.did}"
    assert verifier["extensions"]["did"] == account.did
    assert verifier["extensions"]["recordUri"] == signed.record.uri
    # oras-go asked for the Referrers API, got 404 (distribution 2.8 has none) and fell back to
    # the sha256-<hex> tag schema; then the plugin fetched the artifact itself.
    repository = signed.image.repository
    ratify_calls = [r for r in registry.requests if not r.user_agent.startswith("atcr-verifier")]
    referrers = [r for r in ratify_calls if r.path.startswith(f"/v2/{repository}/referrers/")]
    assert referrers and all(r.status == 404 for r in referrers), ratify_calls
    tag_index = f"/v2/{repository}/manifests/{signed.image.signature_tag}"
    assert any(r.path == tag_index and r.status == 200 for r in ratify_calls), ratify_calls
    plugin_calls = [r for r in registry.requests if r.user_agent.startswith("atcr-verifier")]
    artifact = f"/v2/{repository}/manifests/{signed.artifact.digest}"
    assert any(r.path == artifact and r.status == 200 for r in plugin_calls), plugin_calls


def test_ratify_verify_denies_an_unsigned_image(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    image = publisher.push_image(publisher.image_repository(account, "ratifycliunsigned"))
    config = ratify_config(tmp_path, network, account, {"name": PLUGIN_TYPE})
    report = ratify_verify(config, image.reference, tmp_path)
    assert report["isSuccess"] is False, report


def test_ratify_verify_reports_an_untrusted_signature_as_failed(
    network: LocalNetwork, publisher: Publisher, account: Account, tmp_path: Path
) -> None:
    """No ``version``: the CLI sends its default 0.1.0, which the plugin accepts."""
    mallory = publisher.create_account("mallory")
    signed = publisher.publish_signed_image(mallory, "ratifycliuntrusted", tag="v1")
    assert signed.image.tag_reference is not None
    config = ratify_config(tmp_path, network, account, {"name": PLUGIN_TYPE})
    report = ratify_verify(config, signed.image.tag_reference, tmp_path)
    assert report["isSuccess"] is False, report
    text = json.dumps(report)
    assert "not a trusted DID" in text
