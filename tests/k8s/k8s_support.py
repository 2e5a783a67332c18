"""Shared helpers for the Kubernetes artifact tests (rego/, manifests/, charts/).

The tools come from `make tools` (mk/k8s.mk: $ATCR_TOOLS_BIN, default ~/.cache/atcr-tools/bin)
or PATH. A missing tool FAILS the test that needs it: these checks are never skipped.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

ROOT = Path(__file__).resolve().parents[2]
REGO_FILE = ROOT / "rego" / "atcrverifiedimages.rego"
MANIFESTS = ROOT / "manifests"
CHART = ROOT / "charts" / "atcr-verify-provider"
K8S_TOOLS = ROOT / "mk" / "k8s_tools.py"
GEN_CERTS = MANIFESTS / "gen-certs.sh"
# Gatekeeper's validating webhook timeout (its chart's validatingWebhookTimeoutSeconds default).
GATEKEEPER_WEBHOOK_TIMEOUT = 3


def tool(name: str) -> str:
    bindir = Path(os.environ.get("ATCR_TOOLS_BIN", Path.home() / ".cache" / "atcr-tools" / "bin"))
    if (bindir / name).is_file():
        return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run `make tools` (builds it into {bindir})")
    return found


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, **kw)


def k8s_tools(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(K8S_TOOLS), *args], cwd=ROOT)


def load_docs(paths: Iterable[Path] | str) -> list[dict[str, Any]]:
    if isinstance(paths, str):
        return [d for d in yaml.safe_load_all(paths) if d]
    out: list[dict[str, Any]] = []
    for p in paths:
        out.extend(d for d in yaml.safe_load_all(p.read_text()) if d)
    return out


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def b64_cert(data: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(data, validate=True))


def args_map(container: dict[str, Any]) -> dict[str, str]:
    out = {}
    for a in container.get("args", []):
        key, _, value = a.partition("=")
        out[key] = value
    return out


def check_objects(
    docs: list[dict[str, Any]],
    *,
    mtls: bool = True,
    webhook_timeout: int = GATEKEEPER_WEBHOOK_TIMEOUT,
) -> None:
    """What kubeconform cannot see: the objects agree with each other and with the contract."""
    dep = one(docs, "Deployment")
    ns = dep["metadata"]["namespace"]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), "Deployment selector must match its pod labels"
    assert dep["spec"]["replicas"] >= 2

    # hardening
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = spec["containers"]
    csc = c["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert spec.get("topologySpreadConstraints") or spec.get("affinity", {}).get("podAntiAffinity")

    # ports and probes
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443, "health": 8080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}

    # args per the service contract, and the files they name are mounted
    args = args_map(c)
    assert args["--listen"] == "0.0.0.0:8443"
    assert args["--health-listen"] == "0.0.0.0:8080"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert all(m.get("readOnly") for m in c["volumeMounts"] if m["mountPath"] != "/tmp")
    assert Path(args["--tls-cert"]).parent == Path(args["--tls-key"]).parent
    tls_volume = volumes[mounts[str(Path(args["--tls-cert"]).parent)]]
    tls_secret = tls_volume["secret"]["secretName"]
    if mtls:
        ca_volume = volumes[mounts[str(Path(args["--client-ca"]).parent)]]
        assert ca_volume["secret"]["secretName"] == "gatekeeper-webhook-server-cert"
        assert ca_volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert Path(args["--client-ca"]).name == "ca.crt"
    else:
        assert "--client-ca" not in args

    # the trust policy: RBAC on exactly that ConfigMap, and the policy is valid
    cm_ns, cm_name = args["--policy-configmap"].split("/")
    assert cm_ns == ns
    role = one(docs, "Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [cm_name],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = one(docs, "RoleBinding")
    sa = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}
    ]
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    if cms:
        from atcr_verify.policy import load_policy

        cm = one(docs, "ConfigMap", cm_name)
        assert args["--policy-key"] in cm["data"]
        for key, text in cm["data"].items():
            assert key == "policy.yaml" or (key.startswith("policy.") and key.endswith(".yaml"))
            load_policy(text, source=key)

    # the service parses these args (the real settings parser of provider/)
    from provider.settings import parse_settings

    settings = parse_settings(c["args"], {})
    deadline = settings.deadline

    # Service and PDB select the pods; the Provider points at the Service
    svc = one(docs, "Service")
    assert svc["spec"]["selector"].items() <= labels.items()
    svc_ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert svc_ports == {"https": (8443, "https"), "metrics": (8080, "health")}
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] in (1, "50%")

    provider = one(docs, "Provider")
    assert provider["spec"]["url"] == f"https://{svc['metadata']['name']}.{ns}:8443/validate"
    timeout = provider["spec"]["timeout"]
    assert isinstance(timeout, int)
    assert deadline < timeout, "the service must answer before Gatekeeper gives up"
    assert 1 <= timeout < webhook_timeout, (
        "Gatekeeper must get a system_error before the webhook times out"
    )
    ca = b64_cert(provider["spec"]["caBundle"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    # when the serving certificate is among the objects, it is for this URL and this CA
    secrets = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == tls_secret]
    for secret in secrets:
        assert secret["type"] == "kubernetes.io/tls"
        cert = b64_cert(secret["data"]["tls.crt"])
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        host = provider["spec"]["url"].split("//")[1].split(":")[0]
        assert host in sans.get_values_for_type(x509.DNSName)
        cert.verify_directly_issued_by(ca)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku

    check_policy_objects(docs, ns)


def check_policy_objects(docs: list[dict[str, Any]], provider_namespace: str) -> None:
    template = one(docs, "ConstraintTemplate", "atcrverifiedimages")
    (target,) = template["spec"]["targets"]
    assert target["target"] == "admission.k8s.gatekeeper.sh"
    assert target["rego"] == REGO_FILE.read_text(), "embedded Rego drifted from rego/"
    kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    provider = one(docs, "Provider")
    constraints = [d for d in docs if d["kind"] == kind]
    assert constraints
    enforcing = [c for c in constraints if not c["spec"]["parameters"].get("reportUnverified")]
    assert len(enforcing) == 1
    for c in constraints:
        match = c["spec"]["match"]
        assert provider_namespace in match["excludedNamespaces"]
        kinds = {
            (g, k) for entry in match["kinds"] for g in entry["apiGroups"] for k in entry["kinds"]
        }
        for needed in [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("batch", "CronJob"),
        ]:
            assert needed in kinds, f"{c['metadata']['name']} does not match {needed}"
        assert match["namespaceSelector"]
        assert c["spec"]["parameters"]["provider"] == provider["metadata"]["name"]
        if c["spec"]["parameters"].get("reportUnverified"):
            assert c["spec"]["enforcementAction"] == "warn"
