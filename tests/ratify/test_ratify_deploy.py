"""The Kubernetes artifacts under ``ratify_plugin/deploy``: the sample Verifier is what the
plugin accepts once Ratify's controller has turned it into a config, and the image puts the
plugin where that Verifier names it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from atcr_verify.oci.manifest import OCI_MANIFEST
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE
from tests.ratify.harness import plugin_input, run_plugin

DEPLOY = Path(__file__).resolve().parents[2] / "ratify_plugin" / "deploy"


def documents() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "verifier.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs}


def controller_config(verifier: dict[str, Any]) -> dict[str, Any]:
    """What Ratify v1's SpecToVerifierConfig builds: parameters flattened, then name/type/types;
    the type is spec.type, else spec.name (Helm-shipped CRDs have no spec.type)."""
    spec = verifier["spec"]
    config = json.loads(json.dumps(spec.get("parameters", {})))
    config["name"] = verifier["metadata"]["name"]
    config["type"] = spec.get("type") or spec["name"]
    config["artifactTypes"] = spec["artifactTypes"]
    return config


def test_sample_verifier_fits_the_helm_crd_and_names_the_plugin() -> None:
    verifier = documents()["Verifier"]
    assert verifier["apiVersion"] == "config.ratify.deislabs.io/v1beta1"
    spec = verifier["spec"]
    assert "type" not in spec  # the Helm-shipped CRD has no spec.type: spec.name is the binary
    assert spec["name"] == "atcr-ratify"
    assert spec["artifactTypes"] == SIGNATURE_ARTIFACT_TYPE
    assert set(spec) <= {"name", "version", "artifactTypes", "address", "source", "parameters"}
    assert spec["version"] in ("1.0.0", "0.1.0")


def test_sample_policy_requires_the_atproto_artifact_type() -> None:
    policy = documents()["Policy"]
    assert policy["metadata"]["name"] == "ratify-policy"
    assert policy["spec"]["type"] == "config-policy"
    required = policy["spec"]["parameters"]["artifactVerificationPolicies"]
    assert required[SIGNATURE_ARTIFACT_TYPE] in ("all", "any")


def test_sample_verifier_parameters_are_accepted_by_the_plugin(tmp_path: Path) -> None:
    config = {**controller_config(documents()["Verifier"]), "cacheDir": str(tmp_path / "c")}
    desc = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "ab" * 32,
        "size": 600,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
    }
    # An image outside every scope: the sample policy's defaultAction decides without network.
    run = run_plugin(plugin_input(config, desc), subject="ghcr.io/someone/app@sha256:" + "cd" * 32)
    result = run.result
    assert result["name"] == "verifier-atcr" and result["type"] == "atcr-ratify"
    assert result["isSuccess"] is False
    assert "no policy scope matches ghcr.io/someone/app (defaultAction: deny)" in result["message"]


def test_image_puts_the_plugin_where_the_verifier_names_it() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    name = documents()["Verifier"]["spec"]["name"]
    assert f"ln -s /usr/local/bin/atcr-ratify /.ratify/plugins/{name}" in dockerfile
    assert re.search(r"^ARG RATIFY_VERSION=v1\.4\.\d+$", dockerfile, re.MULTILINE)
    assert "FROM python:3.11-slim" in dockerfile
    root = DEPLOY.parents[1]
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE):
        assert (root / source).exists(), source
