"""``atcr-verify``: verify container images against an ATProto trust policy from a shell or CI.

Exit codes are stable: 0 every image admitted, 1 at least one denied by policy, 2 usage or
configuration error, 3 could not decide (network, upstream, deadline) and nothing was denied.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the core is imported lazily so that --help and usage errors stay instant
    from atcr_verify import Verdict

EXIT_ADMITTED = 0
EXIT_DENIED = 1
EXIT_USAGE = 2
EXIT_UNDECIDED = 3

_EPILOG = """\
environment:
  ATCR_PLC_URL                 PLC directory URL (default https://plc.directory)
  ATCR_PLAIN_HTTP              comma-separated HOST:PORT registries reached over plain HTTP
  ATCR_ALLOW_PRIVATE_NETWORKS  1 to allow loopback/private addresses (local test networks)
  ATCR_POLICY                  default for --policy

exit codes:
  0  every image admitted
  1  at least one image denied by the trust policy
  2  usage or configuration error (bad arguments, invalid policy, bad image reference)
  3  could not decide (PLC, PDS or registry unreachable, deadline) and nothing was denied

examples:
  atcr-verify verify atcr.io/alice/myapp:1.2 --policy trust-policy.yaml
  atcr-verify verify "$IMAGE" --policy .atcr/trust-policy.yaml --output json | jq .allowed
"""


class UsageError(Exception):
    """A command-line or configuration mistake: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atcr-verify",
        description="Verify that container images were published by trusted ATProto identities.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="verify images against a trust policy",
        description="Resolve each image to its digest, find its ATProto signature artifacts, "
        "prove each signer's record from its repository, and apply the trust policy.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    verify.add_argument("images", nargs="+", metavar="IMAGE", help="image reference(s)")
    verify.add_argument(
        "--policy", default=os.environ.get("ATCR_POLICY"), help="trust policy file (YAML or JSON)"
    )
    verify.add_argument("--output", choices=("text", "json"), default="text")
    verify.add_argument(
        "--plc-url", default=os.environ.get("ATCR_PLC_URL", "https://plc.directory")
    )
    verify.add_argument(
        "--plain-http",
        action="append",
        default=[h for h in os.environ.get("ATCR_PLAIN_HTTP", "").split(",") if h],
        metavar="HOST:PORT",
        help="registry reached over plain HTTP (repeatable)",
    )
    verify.add_argument(
        "--allow-private-networks",
        action="store_true",
        default=os.environ.get("ATCR_ALLOW_PRIVATE_NETWORKS") == "1",
        help="allow loopback/private addresses and http:// PDS endpoints (local networks only)",
    )
    verify.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="allow one non-public network, e.g. 127.0.0.0/8 (repeatable)",
    )
    verify.add_argument("--timeout", type=float, default=10.0, help="seconds per image")
    verify.add_argument(
        "--no-handle-check", action="store_true", help="skip the bidirectional handle check"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_verify(args, sys.stdout))
    except UsageError as error:
        print(f"atcr-verify: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


async def _verify(args: argparse.Namespace, out: TextIO) -> int:
    from atcr_verify import (
        ConfigError,
        IdentitySettings,
        NetworkSettings,
        RegistrySettings,
        Verifier,
        VerifierSettings,
        load_policy_file,
        parse_reference,
    )

    if not args.policy:
        raise UsageError("--policy FILE is required (or set ATCR_POLICY)")
    try:
        policy = load_policy_file(args.policy)
        for image in args.images:
            parse_reference(image)
        networks = tuple(ipaddress.ip_network(c, strict=False) for c in args.allow_network)
    except ConfigError as error:
        raise UsageError(error.reason) from error
    except ValueError as error:
        raise UsageError(f"--allow-network: {error}") from error
    settings = VerifierSettings(
        network=NetworkSettings(
            allow_private_networks=args.allow_private_networks, allowed_networks=networks
        ),
        registry=RegistrySettings(plain_http_hosts=frozenset(args.plain_http)),
        identity=IdentitySettings(
            plc_url=args.plc_url,
            allow_http_pds=args.allow_private_networks or bool(networks),
            allow_did_web_localhost_port=args.allow_private_networks,
        ),
        verify_timeout=args.timeout,
        verify_handles=not args.no_handle_check,
    )
    async with Verifier(policy, settings) as verifier:
        verdicts = await asyncio.gather(*(verifier.verify(image) for image in args.images))
    if args.output == "json":
        documents = [v.to_dict() for v in verdicts]
        json.dump(documents[0] if len(documents) == 1 else documents, out, indent=2)
        out.write("\n")
    else:
        for verdict in verdicts:
            out.write(render_text(verdict))
    return exit_code(verdicts)


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """1 when anything was denied on evidence, 3 when the only problems were undecided."""
    from atcr_verify import Outcome

    denied = [v for v in verdicts if not v.allowed]
    if not denied:
        return EXIT_ADMITTED
    if any(v.outcome is not Outcome.ERROR for v in denied):
        return EXIT_DENIED
    return EXIT_UNDECIDED


def render_text(verdict: Verdict) -> str:
    mark = "ADMITTED" if verdict.allowed else "DENIED"
    if verdict.allowed and not verdict.verified:
        mark = "ADMITTED (unverified)"
    lines = [
        f"{mark}  {verdict.image}",
        f"  digest:  {verdict.digest or '-'}",
        f"  policy:  {verdict.policy or '(none)'} (action: {verdict.action})",
        f"  outcome: {verdict.outcome.value}",
        f"  reason:  {verdict.reason}",
    ]
    for index, signature in enumerate(verdict.signatures, 1):
        state = "valid" if signature.valid else "invalid"
        trust = "trusted" if signature.trusted else "untrusted"
        lines.append(f"  signature {index}: {state}, {trust}")
        for label, value in (
            ("signer", signature.did),
            ("handle", signature.handle),
            ("pds", signature.pds),
            ("record", signature.record_uri),
            ("commit", signature.commit_cid),
            ("rev", signature.commit_rev),
            ("error", signature.error),
        ):
            if value:
                lines.append(f"    {label + ':':8} {value}")
    return "\n".join(lines) + "\n\n"


if __name__ == "__main__":
    raise SystemExit(main())
