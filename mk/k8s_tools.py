#!/usr/bin/env python3
"""Helpers for the Kubernetes checks in mk/k8s.mk (no network beyond the Go module proxy).

capabilities [--check]   rego/capabilities.json = OPA capabilities of the oldest OPA that a
                         supported Gatekeeper embeds + Gatekeeper's external_data builtin
sync-rego [--check]      copy rego/atcrverifiedimages.rego into the ConstraintTemplate YAML and
                         the Helm chart (--check: fail on any drift instead)
schemas OUTDIR FILE...   write kubeconform schemas (standalone, strict) for the kinds in FILEs,
                         derived offline from k8s.io/kubernetes' swagger.json and Gatekeeper's
                         CRDs, both taken from the Go module cache (`go mod download`)
validate FILE...         schemas + kubeconform -strict on FILEs (what `make manifests-check` and
                         `make chart-lint` run)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
REGO = ROOT / "rego" / "atcrverifiedimages.rego"
CAPABILITIES = ROOT / "rego" / "capabilities.json"
TEMPLATE_YAML = ROOT / "manifests" / "gatekeeper" / "constrainttemplate.yaml"
CHART_REGO = ROOT / "charts" / "atcr-verify-provider" / "files" / "atcrverifiedimages.rego"
VERSIONS_MK = ROOT / "mk" / "versions.mk"
VERSIONS_ENV = ROOT / "e2e" / "versions.env"

# Gatekeeper's external_data builtin, as the frameworks module registers it:
# types.NewFunction(types.Args(types.A), types.A)
EXTERNAL_DATA_DECL = {
    "name": "external_data",
    "decl": {"type": "function", "args": [{"type": "any"}], "result": {"type": "any"}},
}


def versions() -> dict[str, str]:
    """The pins: e2e/versions.env (shared with the e2e suite) + mk/versions.mk."""
    out = {}
    for path in (VERSIONS_ENV, VERSIONS_MK):
        for line in path.read_text().splitlines():
            m = re.match(r"^([A-Z0-9_]+)\s*:?=\s*([^\s$]+)\s*(#.*)?$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def tool(name: str) -> str:
    """A tool from the pinned tools dir, else PATH; exits when neither has it."""
    bindir = Path(os.environ.get("ATCR_TOOLS_BIN", Path.home() / ".cache/atcr-tools/bin"))
    if (bindir / name).is_file():
        return str(bindir / name)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and (Path(d) / name).is_file():
            return str(Path(d) / name)
    sys.exit(f"k8s_tools: {name} not found in {bindir} or PATH: run `make tools`")


# --- capabilities ----------------------------------------------------------------------------


def capabilities_text() -> str:
    version = versions()["OPA_CAPABILITIES_VERSION"]
    raw = subprocess.run(
        [tool("opa"), "capabilities", "--version", version],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    caps = json.loads(raw)
    caps["builtins"] = [b for b in caps["builtins"] if b["name"] != "external_data"]
    caps["builtins"].append(EXTERNAL_DATA_DECL)
    return json.dumps(caps, indent=2, sort_keys=True) + "\n"


def cmd_capabilities(check: bool) -> int:
    text = capabilities_text()
    if check:
        if not CAPABILITIES.exists() or CAPABILITIES.read_text() != text:
            print(
                f"{CAPABILITIES.relative_to(ROOT)} is stale: run `make rego-sync`", file=sys.stderr
            )
            return 1
        print(f"{CAPABILITIES.relative_to(ROOT)}: up to date")
        return 0
    CAPABILITIES.write_text(text)
    print(f"wrote {CAPABILITIES.relative_to(ROOT)}")
    return 0


# --- rego copies ------------------------------------------------------------------------------


def embed_rego(template_text: str, rego: str) -> str:
    """Replace the `rego: |` block scalar of the template text with `rego`, indented."""
    lines = template_text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(- )?rego: \|\s*$", line)
        if m:
            indent = len(m.group(1)) + (2 if m.group(2) else 0)
            end = i + 1
            while end < len(lines) and (
                not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip(" ")) > indent
            ):
                end += 1
            pad = " " * (indent + 2)
            block = [(pad + r if r.strip() else "\n") for r in rego.splitlines(keepends=True)]
            return "".join([*lines[: i + 1], *block, *lines[end:]])
    raise SystemExit("no `rego: |` block in the ConstraintTemplate YAML")


def embedded_rego(path: Path) -> str:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    (template,) = [d for d in docs if d.get("kind") == "ConstraintTemplate"]
    (target,) = template["spec"]["targets"]
    return str(target["rego"])


def cmd_sync_rego(check: bool) -> int:
    rego = REGO.read_text()
    problems = []
    if check:
        if embedded_rego(TEMPLATE_YAML) != rego:
            problems.append(
                f"{TEMPLATE_YAML.relative_to(ROOT)}: embedded rego differs from {REGO.name}"
            )
        if not CHART_REGO.exists() or CHART_REGO.read_text() != rego:
            problems.append(f"{CHART_REGO.relative_to(ROOT)} differs from {REGO.relative_to(ROOT)}")
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `make rego-sync`", file=sys.stderr)
            return 1
        print("rego copies: identical to rego/atcrverifiedimages.rego")
        return 0
    TEMPLATE_YAML.write_text(embed_rego(TEMPLATE_YAML.read_text(), rego))
    CHART_REGO.write_text(rego)
    assert embedded_rego(TEMPLATE_YAML) == rego
    print(f"synced {TEMPLATE_YAML.relative_to(ROOT)} and {CHART_REGO.relative_to(ROOT)}")
    return 0


# --- schemas ----------------------------------------------------------------------------------


def go_module_dir(module: str, version: str) -> Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)
    if "Error" in info:
        sys.exit(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def load_docs(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for p in paths:
        for doc in yaml.safe_load_all(p.read_text()):
            if isinstance(doc, dict) and doc:
                yield doc


def schema_file_name(api_version: str, kind: str) -> str:
    """kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}.json."""
    group_parts = api_version.split("/")
    suffix = "-" + group_parts[0].split(".")[0].lower()
    if len(group_parts) > 1:
        suffix += "-" + group_parts[1].lower()
    return f"{kind.lower()}{suffix}.json"


def strictify(node: Any) -> Any:
    """Objects with properties reject unknown ones (kubeconform -strict semantics)."""
    if isinstance(node, dict):
        node = {k: strictify(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["oneOf"] = [{"type": "string"}, {"type": "integer"}]
        return node
    if isinstance(node, list):
        return [strictify(v) for v in node]
    return node


class Swagger:
    """Kubernetes' OpenAPI v2 document turned into standalone JSON schemas."""

    INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
    OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

    def __init__(self, path: Path) -> None:
        self.defs: dict[str, Any] = json.loads(path.read_text())["definitions"]
        self.defs[self.INT_OR_STRING] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        self.defs[self.QUANTITY] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
        self.gvk: dict[tuple[str, str], str] = {}
        for name, d in self.defs.items():
            for g in d.get("x-kubernetes-group-version-kind", []):
                api_version = f"{g['group']}/{g['version']}" if g["group"] else g["version"]
                self.gvk[(api_version, g["kind"])] = name

    def closure(self, roots: Iterable[str]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        todo = list(roots)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen[name] = self.defs[name]
            todo.extend(re.findall(r'"#/definitions/([^"]+)"', json.dumps(self.defs[name])))
        return seen

    def schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        name = self.gvk.get((api_version, kind))
        if name is None:
            return None
        root = copy.deepcopy(self.defs[name])
        root["properties"]["apiVersion"] = {"type": "string", "enum": [api_version]}
        root["properties"]["kind"] = {"type": "string", "enum": [kind]}
        root["required"] = sorted({*root.get("required", []), "apiVersion", "kind"})
        root["definitions"] = {k: v for k, v in self.closure([name]).items() if k != name}
        root["definitions"][name] = self.defs[name]
        result: dict[str, Any] = strictify(root)
        return result

    def with_object_meta(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A CRD schema whose metadata is checked as a real ObjectMeta."""
        schema = copy.deepcopy(schema)
        schema.setdefault("properties", {})["metadata"] = {
            "$ref": f"#/definitions/{self.OBJECT_META}"
        }
        schema["definitions"] = self.closure([self.OBJECT_META])
        return schema


def crd_schemas(crd_paths: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for doc in load_docs(crd_paths):
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for v in doc["spec"]["versions"]:
            schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            schema.setdefault("properties", {})
            schema["properties"]["apiVersion"] = {
                "type": "string",
                "enum": [f"{group}/{v['name']}"],
            }
            schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            out[(f"{group}/{v['name']}", kind)] = schema
    return out


def constraint_schemas(
    templates: Iterable[dict[str, Any]], match_crd: Path
) -> dict[tuple[str, str], dict[str, Any]]:
    """Schemas Gatekeeper generates for constraint kinds: match + enforcementAction + parameters."""
    (match_doc,) = [
        d for d in load_docs([match_crd]) if d.get("kind") == "CustomResourceDefinition"
    ]
    match = match_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "embeddedMatch"
    ]
    out = {}
    for t in templates:
        kind = t["spec"]["crd"]["spec"]["names"]["kind"]
        params = (
            t["spec"]["crd"]["spec"]
            .get("validation", {})
            .get("openAPIV3Schema", {"x-kubernetes-preserve-unknown-fields": True})
        )
        spec = {
            "type": "object",
            "properties": {
                "match": match,
                "enforcementAction": {"type": "string"},
                "scopedEnforcementActions": {"type": "array", "items": {"type": "object"}},
                "parameters": params,
            },
        }
        for version in ("v1beta1", "v1alpha1", "v1"):
            api_version = f"constraints.gatekeeper.sh/{version}"
            out[(api_version, kind)] = {
                "type": "object",
                "required": ["apiVersion", "kind", "metadata", "spec"],
                "properties": {
                    "apiVersion": {"type": "string", "enum": [api_version]},
                    "kind": {"type": "string", "enum": [kind]},
                    "metadata": {"type": "object"},
                    "spec": spec,
                    "status": {"type": "object"},
                },
            }
    return out


def write_schemas(outdir: Path, files: list[Path]) -> list[str]:
    v = versions()
    k8s = go_module_dir("k8s.io/kubernetes", v["KUBERNETES_VERSION"])
    gk = go_module_dir("github.com/open-policy-agent/gatekeeper/v3", v["GATEKEEPER_VERSION"])
    swagger = Swagger(k8s / "api" / "openapi-spec" / "swagger.json")
    crds = crd_schemas(
        sorted((gk / "manifest_staging" / "charts" / "gatekeeper" / "crds").glob("*.yaml"))
    )
    docs = list(load_docs(files))
    # Constraint kinds come from our ConstraintTemplate(s), whether or not they are in `files`.
    templates = [
        d for d in load_docs([TEMPLATE_YAML, *files]) if d.get("kind") == "ConstraintTemplate"
    ]
    constraints = constraint_schemas(
        templates, gk / "config" / "crd" / "bases" / "match.gatekeeper.sh_matchcrd.yaml"
    )
    outdir.mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    for gvk in sorted({(d.get("apiVersion", ""), d.get("kind", "")) for d in docs}):
        schema = swagger.schema(*gvk)
        if schema is None and gvk in crds:
            schema = swagger.with_object_meta(strictify(crds[gvk]))
        if schema is None and gvk in constraints:
            schema = swagger.with_object_meta(strictify(constraints[gvk]))
        if schema is None:
            missing.append("/".join(gvk))
            continue
        schema["$schema"] = "http://json-schema.org/draft-04/schema#"
        name = schema_file_name(*gvk)
        (outdir / name).write_text(json.dumps(schema))
        written.append(name)
    if missing:
        sys.exit(f"no offline schema for: {', '.join(missing)}")
    return written


def cmd_schemas(outdir: Path, files: list[Path]) -> int:
    for name in write_schemas(outdir, files):
        print(outdir / name)
    return 0


def cmd_validate(files: list[Path], kube_version: str | None) -> int:
    kube_version = kube_version or versions()["KUBERNETES_VERSION"].lstrip("v")
    with tempfile.TemporaryDirectory(prefix="atcr-schemas-") as tmp:
        written = write_schemas(Path(tmp), files)
        cmd = [
            tool("kubeconform"),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-kubernetes-version",
            kube_version,
            "-schema-location",
            f"{tmp}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            *map(str, files),
        ]
        print(f"kubeconform: {len(written)} kinds ({', '.join(sorted(written))})", flush=True)
        return subprocess.run(cmd, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("capabilities")
    p.add_argument("--check", action="store_true")
    p = sub.add_parser("sync-rego")
    p.add_argument("--check", action="store_true")
    p = sub.add_parser("schemas")
    p.add_argument("outdir", type=Path)
    p.add_argument("files", type=Path, nargs="+")
    p = sub.add_parser("validate")
    p.add_argument("--kube-version")
    p.add_argument("files", type=Path, nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "capabilities":
        return cmd_capabilities(a.check)
    if a.cmd == "sync-rego":
        return cmd_sync_rego(a.check)
    if a.cmd == "schemas":
        return cmd_schemas(a.outdir, a.files)
    return cmd_validate(a.files, a.kube_version)


if __name__ == "__main__":
    sys.exit(main())
