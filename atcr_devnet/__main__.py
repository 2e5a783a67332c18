"""``atcr-devnet``: the local network with one signed and one unsigned image, for demos.

``up`` prints a JSON summary (URLs, DID, image references) to stdout, optionally writes it to
``--summary FILE`` (atomically, so a Makefile can wait for the file) and ``--env-file FILE``
(``KEY=value`` lines), then keeps running until Ctrl-C / SIGTERM, or stops at once with ``--once``.
``run -- COMMAND...`` does the same setup, runs COMMAND with ``ATCR_DEVNET_*`` variables in its
environment, stops the network and exits with COMMAND's status (no background process to manage).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from atcr_devnet.network import DevnetError, LocalNetwork
from atcr_devnet.publisher import Publisher


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _summary(network: LocalNetwork, publisher: Publisher, account_name: str) -> dict[str, Any]:
    account = publisher.create_account(account_name)
    signed = publisher.publish_signed_image(account, "demo", "signed")
    unsigned = publisher.push_image(publisher.image_repository(account, "demo"), "unsigned")
    return {
        "plc_url": network.plc_url,
        "pds_url": network.pds_url,
        "registry": network.registry,
        "handle_domain": network.handle_domain,
        "did": account.did,
        "handle": account.handle,
        "signed_image": signed.image.reference,
        "signed_tag": signed.image.tag_reference,
        "unsigned_image": unsigned.reference,
        "unsigned_tag": unsigned.tag_reference,
        "record_uri": signed.record.uri,
        "signature_artifact": signed.artifact.reference,
        "startup_seconds": round(network.startup_seconds, 2),
    }


def _env_lines(summary: dict[str, Any]) -> str:
    return "".join(f"ATCR_DEVNET_{key.upper()}={value}\n" for key, value in summary.items())


def _up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with LocalNetwork(startup_timeout=args.timeout) as network:
            with Publisher.from_network(network) as publisher:
                summary = _summary(network, publisher, args.account)
            text = json.dumps(summary, indent=2)
            print(text, flush=True)
            if args.env_file:
                _write_atomically(Path(args.env_file), _env_lines(summary))
            if args.summary:
                _write_atomically(Path(args.summary), text + "\n")
            if not args.once:
                print("devnet running; Ctrl-C to stop", file=sys.stderr, flush=True)
                stop.wait()
    except DevnetError as exc:
        print(f"atcr-devnet: {exc}", file=sys.stderr)
        return 1
    finally:
        for path in (args.summary, args.env_file):
            if path and not args.once:
                Path(path).unlink(missing_ok=True)  # stale URLs must not outlive the network
    return 0


def _run(args: argparse.Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print("atcr-devnet run: give a command after --", file=sys.stderr)
        return 2

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(143)  # unwinds the with-blocks, so the network stops

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with LocalNetwork(startup_timeout=args.timeout) as network:
            with Publisher.from_network(network) as publisher:
                summary = _summary(network, publisher, args.account)
            print(json.dumps(summary, indent=2), file=sys.stderr, flush=True)
            env = dict(os.environ)
            env.update((f"ATCR_DEVNET_{k.upper()}", str(v)) for k, v in summary.items())
            return subprocess.run(command, env=env, check=False).returncode
    except DevnetError as exc:
        print(f"atcr-devnet: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="atcr-devnet", description="Local ATProto + OCI test network."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start PLC, PDS and registry and publish demo images")
    up.add_argument("--summary", metavar="FILE", help="also write the JSON summary to FILE")
    up.add_argument("--env-file", metavar="FILE", help="also write KEY=value lines to FILE")
    up.add_argument("--account", default="demo", help="account name (handle prefix)")
    up.add_argument("--timeout", type=float, default=60.0, help="startup timeout, seconds")
    mode = up.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="keep running until Ctrl-C (default)")
    mode.add_argument("--once", action="store_true", help="print the summary, then stop")
    run = sub.add_parser("run", help="start, publish, run COMMAND with ATCR_DEVNET_* env, stop")
    run.add_argument("--account", default="demo", help="account name (handle prefix)")
    run.add_argument("--timeout", type=float, default=60.0, help="startup timeout, seconds")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="command to run")
    args = parser.parse_args(argv)
    sys.exit(_up(args) if args.command == "up" else _run(args))


if __name__ == "__main__":
    main()
