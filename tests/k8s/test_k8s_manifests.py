"""manifests/: kubeconform against offline Kubernetes + Gatekeeper schemas, and cross-checks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.k8s.k8s_support import (
    GEN_CERTS,
    MANIFESTS,
    ROOT,
    b64_cert,
    check_objects,
    k8s_tools,
    load_docs,
    one,
    run,
    tool,
)

SOURCE_FILES = sorted(
    [
        *(MANIFESTS / "provider").glob("*.yaml"),
        *(MANIFESTS / "gatekeeper").glob("*.yaml"),
        *(MANIFESTS / "constraints").glob("*.yaml"),
    ]
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    r = run(["bash", str(GEN_CERTS), str(out)])
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def applied(generated: Path) -> list[Path]:
    """What the README tells users to kubectl apply (the placeholder Provider replaced)."""
    files = [f for f in SOURCE_FILES if f.name != "provider.yaml"]
    return [*files, generated / "tls-secret.yaml", generated / "provider.yaml"]


def test_every_object_lives_in_gatekeeper_system_or_is_cluster_scoped() -> None:
    docs = load_docs(SOURCE_FILES)
    assert not [d for d in docs if d["kind"] == "Namespace"], (
        "never own (and delete) gatekeeper-system"
    )
    for d in docs:
        if d["kind"] in ("Provider", "ConstraintTemplate", "AtcrVerifiedImages"):
            assert "namespace" not in d["metadata"]
        else:
            assert d["metadata"]["namespace"] == "gatekeeper-system", d["metadata"]["name"]


def test_kubeconform_strict(applied: list[Path]) -> None:
    tool("kubeconform")
    r = k8s_tools("validate", *map(str, applied), *map(str, SOURCE_FILES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in r.stdout


def test_kubeconform_catches_mistakes(tmp_path: Path) -> None:
    tool("kubeconform")
    dep = (MANIFESTS / "provider" / "deployment.yaml").read_text()
    constraint = (MANIFESTS / "constraints" / "atcr-verified-images.yaml").read_text()
    provider = (MANIFESTS / "gatekeeper" / "provider.yaml").read_text()
    broken = {
        "unknown-field.yaml": dep.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"),
        "wrong-type.yaml": dep.replace("replicas: 2", "replicas: two"),
        "constraint-param.yaml": constraint.replace("namespacedKeys:", "namespaceKeys:"),
        "constraint-match.yaml": constraint.replace("namespaceSelector:", "namespaceSelecter:"),
        "provider-timeout.yaml": provider.replace("timeout: 2", 'timeout: "2"'),
    }
    for name, text in broken.items():
        assert text not in (dep, constraint, provider), name
        (tmp_path / name).write_text(text)
    r = k8s_tools("validate", *(str(tmp_path / name) for name in broken))
    assert r.returncode != 0
    invalid = {
        line.split(" - ")[0].split("/")[-1]
        for line in r.stdout.splitlines()
        if " is invalid: " in line
    }
    assert invalid == set(broken), r.stdout


def test_objects_agree_with_each_other(applied: list[Path]) -> None:
    check_objects(load_docs(applied))


def test_constraints_apply_to_labelled_namespaces_only() -> None:
    docs = load_docs([MANIFESTS / "constraints" / "atcr-verified-images.yaml"])
    deny = one(docs, "AtcrVerifiedImages", "atcr-verified-images")
    warn = one(docs, "AtcrVerifiedImages", "atcr-unverified-images")
    for c in (deny, warn):
        assert c["spec"]["match"]["namespaceSelector"] == {
            "matchLabels": {"atcr-verify": "enabled"}
        }
        assert c["spec"]["match"]["excludedNamespaces"] == ["gatekeeper-system"]
    assert deny["spec"]["enforcementAction"] == "deny"
    assert deny["spec"]["parameters"]["reportUnverified"] is False
    assert warn["spec"]["enforcementAction"] == "warn"
    assert warn["spec"]["parameters"]["reportUnverified"] is True


def test_placeholder_provider_is_refused_by_gatekeeper_rules() -> None:
    """The unfilled Provider must not pass Gatekeeper's caBundle check (base64 PEM x509)."""
    provider = one(load_docs([MANIFESTS / "gatekeeper" / "provider.yaml"]), "Provider")
    with pytest.raises(ValueError):
        b64_cert(provider["spec"]["caBundle"])


def test_gen_certs_works_from_any_directory(tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(MANIFESTS, copy)
    r = run(["bash", str(copy / "gen-certs.sh"), "out"], cwd=tmp_path, env={**os.environ})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "provider.yaml").is_file()
    assert ROOT not in (tmp_path / "out").resolve().parents
