"""Benchmark of the verification core against the real local network (``make bench``).

Measures, on loopback:
- cold verification: wall time, own CPU (``time.process_time``) and the rest (waiting on the
  network and the servers), with a fresh Verifier per run (empty caches, new connections);
- cached verdict cost: ``await Verifier.verify()`` and the I/O-free ``Verifier.cached()``;
- bytes fetched from the PDS per verification for 10, 1,000 and 10,000-record repositories.

Prints a table with each figure next to its target and the seed documents' figure, and writes
the same as JSON to ``bench/results/core.json`` so commits can be compared.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from atcr_devnet import LocalNetwork, Publisher
from atcr_verify import (
    IdentitySettings,
    NetworkSettings,
    RegistrySettings,
    Verifier,
    VerifierSettings,
    load_policy,
)

RESULTS = Path(__file__).resolve().parent / "results"


def settings(network: LocalNetwork) -> VerifierSettings:
    return VerifierSettings(
        network=NetworkSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)),
        registry=RegistrySettings(plain_http_hosts=frozenset({network.registry})),
        identity=IdentitySettings(plc_url=network.plc_url, allow_http_pds=True),
        verify_handles=False,
    )


def policy_for(network: LocalNetwork, dids: list[str]) -> str:
    trusted = "".join(f"  {did}: {{name: bench}}\n" for did in dids)
    return (
        f"version: 1.0\ntrustedDIDs:\n{trusted}policies:\n  - name: bench\n"
        f"    scope: '{network.registry}/**'\n    require: {{signature: true}}\n"
    )


async def cold_runs(
    network: LocalNetwork, policy_text: str, image: str, runs: int
) -> dict[str, float]:
    policy = load_policy(policy_text)
    walls, cpus = [], []
    for _ in range(runs):
        async with Verifier(policy, settings(network)) as verifier:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            verdict = await verifier.verify(image)
            cpus.append(time.process_time() - cpu0)
            walls.append(time.perf_counter() - wall0)
        assert verdict.allowed, verdict.reason
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3, "wait_ms": max(wall - cpu, 0) * 1e3}


async def cached_cost(
    network: LocalNetwork, policy_text: str, image: str, iterations: int
) -> dict[str, float]:
    async with Verifier(load_policy(policy_text), settings(network)) as verifier:
        assert (await verifier.verify(image)).allowed
        start = time.perf_counter()
        for _ in range(iterations):
            await verifier.verify(image)
        verify_us = (time.perf_counter() - start) / iterations * 1e6
        start = time.perf_counter()
        for _ in range(iterations):
            verifier.cached(image)
        peek_us = (time.perf_counter() - start) / iterations * 1e6
    return {"verify_us": verify_us, "cached_us": peek_us}


async def pds_bytes(network: LocalNetwork, policy_text: str, image: str) -> int:
    async with Verifier(load_policy(policy_text), settings(network)) as verifier:
        assert (await verifier.verify(image)).allowed
        return verifier.fetcher.bytes_received.get(network.pds_url, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--sizes", default="10,1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with LocalNetwork() as network, Publisher.from_network(network) as publisher:
        print(f"network up in {network.startup_seconds:.1f}s", file=sys.stderr)
        repos: dict[int, tuple[str, str]] = {}
        for size in sizes:
            account = publisher.create_account(f"bench{size}")
            fill_start = time.perf_counter()
            publisher.write_many_records(account, max(size - 1, 0))
            signed = publisher.publish_signed_image(account, f"bench{size}")
            print(
                f"repo with {size} records ready in {time.perf_counter() - fill_start:.1f}s",
                file=sys.stderr,
            )
            repos[size] = (account.did, signed.image.reference)
        dids = [did for did, _ in repos.values()]
        policy_text = policy_for(network, dids)
        smallest = repos[sizes[0]][1]

        async def measure() -> dict[str, Any]:
            await cold_runs(network, policy_text, smallest, 2)  # warm the servers' own caches
            return {
                "cold": await cold_runs(network, policy_text, smallest, args.runs),
                "cached": await cached_cost(network, policy_text, smallest, args.iterations),
                "pds_bytes": {
                    str(size): await pds_bytes(network, policy_text, image)
                    for size, (_, image) in repos.items()
                },
            }

        results = asyncio.run(measure())

    cold, cached, sizes_bytes = results["cold"], results["cached"], results["pds_bytes"]
    spread = max(sizes_bytes.values()) - min(sizes_bytes.values())
    rows = [
        ("cold verification, own CPU", f"{cold['cpu_ms']:.1f} ms", "≤ 20 ms", "1-5 ms sig only"),
        (
            "cold verification, wall (loopback)",
            f"{cold['wall_ms']:.1f} ms",
            "-",
            f"150-700 ms (= {150 / cold['wall_ms']:.0f}-{700 / cold['wall_ms']:.0f}× ours)",
        ),
        ("cold verification, network wait", f"{cold['wait_ms']:.1f} ms", "-", "-"),
        (
            "cached verdict, await verify()",
            f"{cached['verify_us']:.1f} µs",
            "≤ 50 µs",
            f"< 10 ms (= {10_000 / cached['verify_us']:.0f}× ours)",
        ),
        ("cached verdict, cached()", f"{cached['cached_us']:.1f} µs", "≤ 50 µs", "-"),
        *(
            (
                f"PDS bytes, {int(size):,}-record repo",
                f"{count:,} B",
                "flat ± few KB",
                "getRepo: grows",
            )
            for n, count in sizes_bytes.items()
        ),
        ("PDS bytes spread 10 → 10,000 records", f"{spread:,} B", "≤ ~4 KB", "-"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':>12}  {'target':>14}  seed documents")
    for name, value, target, seed in rows:
        print(f"{name:<{width}}  {value:>12}  {target:>14}  {seed}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS / 'core.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
