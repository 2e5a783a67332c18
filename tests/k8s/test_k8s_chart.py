"""charts/atcr-verify-provider: helm lint and template, values schema, kubeconform, cross-checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.k8s_support import (
    CHART,
    REGO_FILE,
    check_objects,
    k8s_tools,
    load_docs,
    one,
    run,
    tool,
)

KUBE_VERSION = "1.30.14"
NS = "gatekeeper-system"


def template(*args: str) -> tuple[int, str, str]:
    r = run(
        [
            tool("helm"),
            "template",
            "atcr-verify-provider",
            str(CHART),
            "-n",
            NS,
            "--kube-version",
            KUBE_VERSION,
            *args,
        ]
    )
    return r.returncode, r.stdout, r.stderr


def rendered(*args: str) -> str:
    rc, out, err = template(*args)
    assert rc == 0, err
    return out


def test_helm_lint_strict() -> None:
    for values in sorted((CHART / "ci").glob("*.yaml")):
        r = run(
            [
                tool("helm"),
                "lint",
                "--strict",
                "--kube-version",
                KUBE_VERSION,
                "-n",
                NS,
                "-f",
                str(values),
                str(CHART),
            ]
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "[WARNING]" not in r.stdout and "[ERROR]" not in r.stdout, r.stdout


def test_default_render_matches_the_contract() -> None:
    docs = load_docs(rendered())
    assert sorted(d["kind"] for d in docs) == sorted(
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "Secret",
            "Provider",
            "ConstraintTemplate",
            "AtcrVerifiedImages",
            "AtcrVerifiedImages",
        ]
    )
    check_objects(docs)
    assert one(docs, "Provider")["spec"] == {
        **one(docs, "Provider")["spec"],
        "url": "https://atcr-verify-provider.gatekeeper-system:8443/validate",
        "timeout": 2,
    }
    for c in (d for d in docs if d["kind"] == "AtcrVerifiedImages"):
        assert c["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        assert c["spec"]["match"]["namespaceSelector"] == {
            "matchLabels": {"atcr-verify": "enabled"}
        }


def test_byo_certificate_render() -> None:
    docs = load_docs(rendered("-f", str(CHART / "ci" / "byo-cert-values.yaml")))
    assert not [d for d in docs if d["kind"] == "Secret"]
    # provider.timeout 4 presumes Gatekeeper's webhook timeout was raised (documented).
    check_objects(docs, mtls=False, webhook_timeout=5)
    dep = one(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert (
        c["image"]
        == "registry.example.com/atcr/atcr-verify-provider@sha256:" + "0123456789abcdef" * 4
    )
    assert "--plain-http=registry.local:5000" in c["args"]
    cm = one(docs, "ConfigMap")
    assert set(cm["data"]) == {"policy.yaml", "policy.team-a.yaml"}
    (constraint,) = [d for d in docs if d["kind"] == "AtcrVerifiedImages"]
    assert constraint["spec"]["parameters"]["namespacedKeys"] is True
    assert constraint["spec"]["match"]["excludedNamespaces"] == ["kube-*", NS]


def test_template_rego_is_the_rego_file() -> None:
    ct = one(load_docs(rendered()), "ConstraintTemplate")
    assert ct["spec"]["targets"][0]["rego"] == REGO_FILE.read_text()


def test_kubeconform_strict(tmp_path: Path) -> None:
    tool("kubeconform")
    files = []
    for values in sorted((CHART / "ci").glob("*.yaml")):
        f = tmp_path / values.name
        f.write_text(rendered("-f", str(values)))
        files.append(str(f))
    r = k8s_tools("validate", *files)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "deadline=2"], "deadline (2 s) must be below provider.timeout"),
        (["--set", "tls.source=existingSecret"], "existingSecret"),
        (["--set", "tls.source=vault"], "source"),
        (["--set", "replicass=3"], "replicass"),
        (["--set", "provider.timeout=0"], "timeout"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "constraints.enforcementAction=block"], "enforcementAction"),
        (["--set", "policy.default="], "default"),
    ],
)
def test_bad_values_are_refused(args: list[str], message: str) -> None:
    rc, _, err = template(*args)
    assert rc != 0
    assert message in err, err


def test_mtls_off_mounts_no_client_ca() -> None:
    docs = load_docs(rendered("--set", "mtls.enabled=false"))
    check_objects(docs, mtls=False)
