"""`opa test` of the ConstraintTemplate Rego, and the drift checks of its copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.k8s.k8s_support import REGO_FILE, ROOT, k8s_tools, run, tool

CAPS = ROOT / "rego" / "capabilities.json"


def test_opa_unit_tests_pass() -> None:
    r = run(
        [tool("opa"), "test", "rego/", "--capabilities", str(CAPS), "--format", "json"], cwd=ROOT
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    results = json.loads(r.stdout)
    assert len(results) >= 30
    assert all(not t.get("fail") and not t.get("error") for t in results)


def test_opa_check_strict_and_formatted() -> None:
    r = run([tool("opa"), "check", "--strict", "--capabilities", str(CAPS), "rego/"], cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = run([tool("opa"), "fmt", "--list", "rego/"], cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout


def test_external_data_is_not_an_opa_builtin(tmp_path: Path) -> None:
    """Without the capabilities file the Rego does not compile: the declaration is what we test."""
    shutil.copy(REGO_FILE, tmp_path)
    r = run([tool("opa"), "check", str(tmp_path)])
    assert r.returncode != 0 and "external_data" in r.stdout + r.stderr


def test_capabilities_are_generated_from_the_pinned_opa() -> None:
    r = k8s_tools("capabilities", "--check")
    assert r.returncode == 0, r.stderr
    caps = json.loads(CAPS.read_text())
    (decl,) = [b for b in caps["builtins"] if b["name"] == "external_data"]
    assert decl["decl"] == {
        "type": "function",
        "args": [{"type": "any"}],
        "result": {"type": "any"},
    }


def test_embedded_rego_copies_do_not_drift() -> None:
    r = k8s_tools("sync-rego", "--check")
    assert r.returncode == 0, r.stderr


def test_a_broken_rego_fails_the_tests(tmp_path: Path) -> None:
    """Mutation check: dropping the fail-closed rule for unanswered images is caught."""
    for f in (ROOT / "rego").glob("*.rego"):
        shutil.copy(f, tmp_path)
    policy = tmp_path / REGO_FILE.name
    text = policy.read_text()
    assert "\tnot answered[k]\n" in text
    policy.write_text(text.replace("\tnot answered[k]\n", "\tanswered[k]\n"))
    r = run([tool("opa"), "test", str(tmp_path), "--capabilities", str(CAPS)])
    assert r.returncode != 0
    assert "test_missing_answer_fails_closed" in r.stdout
