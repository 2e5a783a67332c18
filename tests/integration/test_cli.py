"""``atcr-verify`` run as a process, as CI pipelines run it, against the real local network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from atcr_devnet import Account, LocalNetwork, Publisher

pytestmark = pytest.mark.network


def cli() -> str:
    path = shutil.which("atcr-verify")
    assert path, "the atcr-verify console script is not installed (pip install -e .)"
    return path


def run(
    network: LocalNetwork, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "ATCR_PLC_URL": network.plc_url,
        "ATCR_PLAIN_HTTP": network.registry,
        "ATCR_ALLOW_PRIVATE_NETWORKS": "1",
        **(env or {}),
    }
    return subprocess.run(
        [cli(), *args], capture_output=True, text=True, env=environment, timeout=60, check=False
    )


@pytest.fixture
def policy_file(tmp_path: Path, network: LocalNetwork, account: Account) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"version: 1.0\ntrustedDIDs:\n  {account.did}: {{name: Alice}}\n"
        f"policies:\n  - name: local\n    scope: '{network.registry}/**'\n"
        "    require: {signature: true}\n    action: enforce\n"
    )
    return path


def test_signed_image_exits_0_with_the_documented_json(
    network: LocalNetwork, publisher: Publisher, account: Account, policy_file: Path
) -> None:
    signed = publisher.publish_signed_image(account, "cli")
    result = run(
        network, "verify", signed.image.reference, "--policy", str(policy_file), "--output", "json"
    )
    assert result.returncode == 0, result.stderr
    verdict: dict[str, Any] = json.loads(result.stdout)
    assert {
        "image",
        "digest",
        "allowed",
        "verified",
        "policy",
        "action",
        "reason",
        "signatures",
    } <= set(verdict)
    assert verdict["allowed"] is True and verdict["verified"] is True
    assert verdict["digest"] == signed.image.digest
    assert verdict["policy"] == "local" and verdict["action"] == "enforce"
    (signature,) = verdict["signatures"]
    assert {"did", "handle", "recordUri", "valid", "trusted", "error"} <= set(signature)
    assert signature["did"] == account.did
    assert signature["recordUri"] == signed.record.uri
    assert signature["valid"] is True and signature["trusted"] is True


def test_text_output_names_the_signer_and_record(
    network: LocalNetwork, publisher: Publisher, account: Account, policy_file: Path
) -> None:
    signed = publisher.publish_signed_image(account, "clitext")
    result = run(network, "verify", signed.image.reference, "--policy", str(policy_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ADMITTED")
    assert account.did in result.stdout
    assert signed.record.uri in result.stdout


def test_unsigned_image_exits_1(
    network: LocalNetwork, publisher: Publisher, account: Account, policy_file: Path
) -> None:
    image = publisher.push_image(publisher.image_repository(account, "cliunsigned"))
    result = run(network, "verify", image.reference, "--policy", str(policy_file))
    assert result.returncode == 1
    assert result.stdout.startswith("DENIED")
    assert "no ATProto signature artifact" in result.stdout


def test_several_images_answer_an_array_and_the_worst_exit_code(
    network: LocalNetwork, publisher: Publisher, account: Account, policy_file: Path
) -> None:
    signed = publisher.publish_signed_image(account, "climany")
    unsigned = publisher.push_image(publisher.image_repository(account, "climany"), "bare")
    result = run(
        network,
        "verify",
        signed.image.reference,
        unsigned.reference,
        "--policy",
        str(policy_file),
        "--output",
        "json",
    )
    assert result.returncode == 1
    verdicts = json.loads(result.stdout)
    assert [v["allowed"] for v in verdicts] == [True, False]


def test_unreachable_pds_exits_3(
    network: LocalNetwork, publisher: Publisher, account: Account, policy_file: Path
) -> None:
    publisher.move_pds(account, "http://127.0.0.1:9")  # before publishing: the hints agree
    signed = publisher.publish_signed_image(account, "clipds")
    result = run(network, "verify", signed.image.reference, "--policy", str(policy_file))
    assert result.returncode == 3, result.stdout
    assert "outcome: error" in result.stdout


def test_invalid_policy_exits_2_naming_file_and_path(network: LocalNetwork, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1.0\npolicies:\n  - name: x\n    scope: 'atcr.io/*'\n    action: block\n"
    )
    result = run(network, "verify", "atcr.io/alice/app:1", "--policy", str(bad))
    assert result.returncode == 2
    assert f"{bad}: policies[0].action: must be enforce or audit" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "NOT A REFERENCE", "--policy", "{policy}"],
        ["verify", "atcr.io/alice/app"],
        ["verify", "atcr.io/alice/app", "--policy", "{policy}", "--output", "xml"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(network: LocalNetwork, policy_file: Path, args: list[str]) -> None:
    result = run(
        network, *[a.replace("{policy}", str(policy_file)) for a in args], env={"ATCR_POLICY": ""}
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_help_documents_exit_codes_and_environment() -> None:
    result = subprocess.run(
        [cli(), "verify", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for text in ("ATCR_PLC_URL", "ATCR_PLAIN_HTTP", "ATCR_ALLOW_PRIVATE_NETWORKS", "exit codes"):
        assert text in result.stdout
