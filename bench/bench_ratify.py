"""Benchmark of the Ratify plugin process against the real local network (not a test).

Ratify starts the plugin for every artifact, so what counts is the wall time of one whole
process, start-up included. Measured on loopback with the INSTALLED ``atcr-ratify``:

- warm: the same invocation again, answered from the disk verdict cache (target <= 250 ms);
- warm DID: another artifact by a known signer (verdict miss, DID document from disk);
- cold: an empty cache directory each time (core imports, PLC, registry, PDS);
- the top entries of ``python -X importtime`` for a warm and a cold invocation.

The plugin and the core are byte-compiled first, as ``pip install`` does for an installed package.

Prints a table and writes ``bench/results/ratify.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from atcr_devnet import LocalNetwork, Publisher
from atcr_verify.oci.manifest import OCI_MANIFEST
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_WARM_MS = 250.0


def executable() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "atcr-ratify"
    if not path.is_file():
        sys.exit(f"{path} is missing: pip install -e '.[provider,dev]'")
    return path


def stdin_for(network: LocalNetwork, did: str, cache: Path, artifact: Any) -> bytes:
    policy = (
        f"version: 1.0\ntrustedDIDs:\n  {did}: {{name: bench}}\npolicies:\n  - name: bench\n"
        f"    scope: '{network.registry}/**'\n    require: {{signature: true}}\n"
    )
    return json.dumps(
        {
            "config": {
                "name": "atcr-verify",
                "type": "atcr-ratify",
                "policy": policy,
                "plcUrl": network.plc_url,
                "allowPrivateNetworks": True,
                "verifyHandles": False,
                "cacheDir": str(cache),
            },
            "storeConfig": {"store": {"name": "oras", "useHttp": True}},
            "referenceDesc": {
                "mediaType": OCI_MANIFEST,
                "digest": artifact.digest,
                "size": artifact.size,
                "artifactType": SIGNATURE_ARTIFACT_TYPE,
            },
        }
    ).encode()


def invoke(command: list[str], subject: str, stdin: bytes) -> tuple[float, dict[str, Any]]:
    env = {
        **os.environ,
        "RATIFY_VERIFIER_COMMAND": "VERIFY",
        "RATIFY_VERIFIER_SUBJECT": subject,
        "RATIFY_VERIFIER_VERSION": "1.0.0",
    }
    started = time.perf_counter()
    proc = subprocess.run(command, input=stdin, capture_output=True, env=env, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        sys.exit(f"plugin failed: {proc.stdout!r} {proc.stderr!r}")
    result: dict[str, Any] = json.loads(proc.stdout)
    if result["isSuccess"] is not True:
        sys.exit(f"plugin did not admit the signed image: {result}")
    return elapsed, result


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "min_ms": ordered[0],
        "runs": len(ordered),
    }


def top_imports(modules: str, count: int = 8) -> list[tuple[str, int]]:
    """``(module, cumulative microseconds)`` of the slowest top-level imports of ``modules``.

    Measured with ``python -X importtime -c "import ..."`` in a fresh interpreter: the warm path
    imports ``ratify_plugin.main``; a cache miss adds ``ratify_plugin.inprocess`` (the core).
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {modules}"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[str, int]] = []
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        if name.startswith("  "):  # nested: counted in its top-level importer
            continue
        rows.append((name.strip(), int(parts[1])))
    return sorted(rows, key=lambda row: row[1], reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    command = [str(executable())]
    # An installed package has bytecode (pip compiles it); an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would otherwise recompile the plugin and the core every run.
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            str(root / "ratify_plugin"),
            str(root / "atcr_verify"),
        ],
        check=True,
    )
    with LocalNetwork() as network, Publisher.from_network(network) as publisher:
        account = publisher.create_account("bench")
        images = [publisher.publish_signed_image(account, f"ratify{i}") for i in range(8)]
        workdir = Path(tempfile.mkdtemp(prefix="bench-ratify-"))
        try:
            cold: list[float] = []
            for i in range(args.cold_runs):
                cache = workdir / f"cold{i}"
                signed = images[i % len(images)]
                stdin = stdin_for(network, account.did, cache, signed.artifact)
                cold.append(invoke(command, signed.reference, stdin)[0])
            warm_cache = workdir / "warm"
            first = images[0]
            stdin = stdin_for(network, account.did, warm_cache, first.artifact)
            invoke(command, first.reference, stdin)  # fill the disk cache
            warm: list[float] = []
            for _ in range(args.runs):
                elapsed, result = invoke(command, first.reference, stdin)
                assert result["extensions"]["source"] == "cache"
                warm.append(elapsed)
            warm_did: list[float] = []
            for signed in images[1:]:
                other = stdin_for(network, account.did, warm_cache, signed.artifact)
                elapsed, result = invoke(command, signed.reference, other)
                assert result["extensions"]["source"] == "plugin"
                warm_did.append(elapsed)
            bare: list[float] = []
            for _ in range(5):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
                bare.append((time.perf_counter() - started) * 1000)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "warm": summary(warm),
        "warm_did_document": summary(warm_did),
        "cold": summary(cold),
        "bare_interpreter_ms": statistics.median(bare),
        "imports_warm_us": top_imports("ratify_plugin.main"),
        "imports_cold_us": top_imports("ratify_plugin.main, ratify_plugin.inprocess"),
        "target_warm_ms": TARGET_WARM_MS,
    }
    print(f"{'invocation':<34}{'median':>10}{'p95':>10}{'min':>10}")
    for label, key in (
        ("warm disk cache (verdict hit)", "warm"),
        ("warm DID document (verdict miss)", "warm_did_document"),
        ("cold (empty cache)", "cold"),
    ):
        row = results[key]
        print(
            f"{label:<34}{row['median_ms']:>8.0f}ms{row['p95_ms']:>8.0f}ms{row['min_ms']:>8.0f}ms"
        )
    print(f"bare interpreter (python -S -c pass): {results['bare_interpreter_ms']:.0f} ms")
    verdict = "OK" if results["warm"]["median_ms"] <= TARGET_WARM_MS else "OVER TARGET"
    print(f"target: warm <= {TARGET_WARM_MS:.0f} ms -> {verdict}")
    for label, key in (("warm", "imports_warm_us"), ("cold", "imports_cold_us")):
        print(f"slowest imports ({label}, cumulative):")
        for name, micros in results[key]:
            print(f"  {micros / 1000:8.1f} ms  {name}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ratify.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
