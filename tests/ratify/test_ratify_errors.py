"""Plugin failures: the Go skel's codes, a non-zero exit, one short JSON line, no traceback.

These need no network: each is refused before any verification starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from atcr_verify.oci.manifest import OCI_MANIFEST
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE
from tests.ratify.harness import PLUGIN_TYPE, VERIFIER_NAME, plugin_input, run_plugin

SUBJECT = "registry.test/alice/app@sha256:" + "ab" * 32
POLICY = (
    "version: 1.0\ntrustedDIDs:\n  did:plc:abcdefghijklmnopqrstuvwx: {name: test}\n"
    "policies:\n  - name: test\n    scope: 'registry.test/**'\n"
    "    require: {signature: true}\n    action: enforce\n"
)
DESC = {
    "mediaType": OCI_MANIFEST,
    "digest": "sha256:" + "cd" * 32,
    "size": 500,
    "artifactType": SIGNATURE_ARTIFACT_TYPE,
}


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": VERIFIER_NAME,
        "type": PLUGIN_TYPE,
        "policy": POLICY,
        "cacheDir": str(tmp_path / "cache"),
        **extra,
    }


def good_stdin(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return plugin_input(config(tmp_path, **extra), DESC)


@pytest.mark.parametrize(
    "missing",
    [
        ("command",),
        ("version",),
        ("subject",),
        ("command", "version", "subject"),
    ],
)
def test_missing_environment_variables_are_code_4(tmp_path: Path, missing: tuple[str, ...]) -> None:
    values: dict[str, Any] = {"command": "VERIFY", "version": "1.0.0", "subject": SUBJECT}
    for name in missing:
        values[name] = None
    error = run_plugin(good_stdin(tmp_path), **values).error
    assert error["code"] == 4
    for name in missing:
        assert f"RATIFY_VERIFIER_{name.upper()}" in error["msg"]


@pytest.mark.parametrize("version", ["2.0.0", "1.0", "v1.0.0", "1.0.0 "])
def test_unsupported_versions_are_code_6(tmp_path: Path, version: str) -> None:
    error = run_plugin(good_stdin(tmp_path), subject=SUBJECT, version=version).error
    assert error["code"] == 6
    assert "1.0.0, 0.1.0" in error["msg"]


def test_unknown_command_is_code_3(tmp_path: Path) -> None:
    error = run_plugin(good_stdin(tmp_path), subject=SUBJECT, command="VERSION").error
    assert error == {"code": 3, "msg": "unknown RATIFY_VERIFIER_COMMAND: VERSION", "details": ""}


@pytest.mark.parametrize(
    "stdin",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"config": {"name": "x"}, "referenceDesc": {"digest": "sha256:00"',
        b'{"config": "atcr", "referenceDesc": {}}',
        b"\xff\xfe{}",
        b'{"config": {"name": "x", "policy": "p"}, "referenceDesc": NaN}',
        b"[" * 100_000,
    ],
)
def test_malformed_stdin_is_code_1(stdin: bytes) -> None:
    error = run_plugin(stdin, subject=SUBJECT).error
    assert error["code"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"referenceDesc": None},
        {"referenceDesc": {"digest": "sha256:" + "cd" * 32}},
        {"referenceDesc": {**DESC, "size": "500"}},
        {"referenceDesc": {**DESC, "digest": "sha256:short"}},
        {"referenceDesc": {**DESC, "annotations": {"a": 1}}},
        {"storeConfig": {"store": {"useHttp": "yes"}}},
    ],
)
def test_stdin_of_the_wrong_shape_is_code_1(tmp_path: Path, change: dict[str, Any]) -> None:
    stdin = {**good_stdin(tmp_path), **change}
    if stdin["referenceDesc"] is None:
        del stdin["referenceDesc"]
    error = run_plugin(stdin, subject=SUBJECT).error
    assert error["code"] == 1, error


def test_oversized_stdin_is_code_1() -> None:
    error = run_plugin(b" " * (1024 * 1024 + 10), subject=SUBJECT).error
    assert error["code"] == 1
    assert "larger than" in error["msg"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "missing verifier name"),
        ({"name": None}, "missing verifier name"),
        ({"policy": None}, "config.policy or config.policyPath is required"),
        ({"policy": "version: 2.0\n"}, "config.policy"),
        ({"policyPath": "/nonexistent/policy.yaml"}, "cannot read config.policyPath"),
        ({"plcUrl": "ftp://plc"}, "config.plcUrl must be an http(s) URL"),
        ({"plainHttp": 5}, "config.plainHttp"),
        ({"timeout": "fast"}, "config.timeout"),
        ({"timeout": 0}, "config.timeout"),
        ({"allowPrivateNetworks": "maybe"}, "config.allowPrivateNetworks"),
        ({"plcURL": "https://plc.example.com"}, "unknown config parameter(s): plcURL"),
        ({"providerUrl": "https://p", "providerCertFile": "c"}, "go together"),
    ],
)
def test_invalid_configuration_is_code_2(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    entry = {k: v for k, v in {**config(tmp_path), **change}.items() if v is not None}
    if "policyPath" in change:
        del entry["policy"]
    error = run_plugin(plugin_input(entry, DESC), subject=SUBJECT).error
    assert error["code"] == 2, error
    assert message in error["msg"], error


def test_invalid_policy_names_the_file_and_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1.0\npolicies:\n  - name: x\n    scope: 'a/*'\n    action: block\n")
    entry = {k: v for k, v in config(tmp_path, policyPath=str(bad)).items() if k != "policy"}
    error = run_plugin(plugin_input(entry, DESC), subject=SUBJECT).error
    assert error["code"] == 2
    assert f"{bad}: policies[0].action: must be enforce or audit" in error["msg"]


@pytest.mark.parametrize(
    "subject", ["NOT A REFERENCE", "Registry.Test/UPPER/app:1", "a" * 5000, "x\ny"]
)
def test_unparsable_subject_is_code_7(tmp_path: Path, subject: str) -> None:
    error = run_plugin(good_stdin(tmp_path), subject=subject).error
    assert error["code"] == 7
    assert error["msg"] == "cannot parse subject reference"


def test_error_line_is_compact_one_line_json_without_secrets(tmp_path: Path) -> None:
    run = run_plugin(good_stdin(tmp_path, policy="version: 9\n"), subject=SUBJECT)
    error = run.error
    assert run.stdout.count("\n") == 1
    assert json.loads(run.stdout) == error
    assert run.stderr == ""  # error details go to the log file only, never to Ratify's message


def test_unexpected_failure_is_code_999_and_stray_output_is_quarantined(tmp_path: Path) -> None:
    """A bug inside the run (simulated by replacing ``answer``) that prints JSON to both streams
    and raises: Ratify still sees exactly one JSON line, the 999 error, and no traceback."""
    script = tmp_path / "buggy_plugin.py"
    script.write_text(
        "import sys\n"
        "import ratify_plugin.main as plugin\n"
        "def answer(*args):\n"
        "    print('{\"isSuccess\": true}')\n"
        '    print(\'{"level": "error"}\', file=sys.stderr)\n'
        "    raise RuntimeError('{secret: do not print}')\n"
        "plugin.answer = answer\n"
        "sys.exit(plugin.main())\n"
    )
    run = run_plugin(good_stdin(tmp_path), subject=SUBJECT, executable=script)
    error = run.error
    assert error == {"code": 999, "msg": "internal failure", "details": "RuntimeError"}
    assert "secret" not in run.stdout + run.stderr
    assert 'WARN: atcr-ratify: stray stdout output: ("isSuccess": true)' in run.stderr
    assert 'WARN: atcr-ratify: stray stderr output: ("level": "error")' in run.stderr
