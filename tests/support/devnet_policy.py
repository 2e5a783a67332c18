"""Verifier settings and trust policies for the real local network, shared by test suites."""

from __future__ import annotations

import ipaddress
from typing import Any

from atcr_devnet import LocalNetwork
from atcr_verify import IdentitySettings, NetworkSettings, RegistrySettings, VerifierSettings


def policy_text(
    registry: str,
    trusted: dict[str, dict[str, Any]],
    *,
    min_signatures: int = 1,
    action: str = "enforce",
    scope: str | None = None,
) -> str:
    lines = ["version: 1.0", "trustedDIDs:"]
    for did, details in trusted.items():
        fields = ", ".join(
            f"{k}: {v!r}" if v is not None else f"{k}: null" for k, v in details.items()
        )
        lines.append(
            f"  {did}: {{name: signer, {fields}}}" if fields else f"  {did}: {{name: signer}}"
        )
    lines += [
        "policies:",
        "  - name: local-images",
        f"    scope: '{scope or registry + '/**'}'",
        f"    require: {{signature: true, minSignatures: {min_signatures}}}",
        f"    action: {action}",
    ]
    return "\n".join(lines) + "\n"


def settings_for(network: LocalNetwork, **overrides: Any) -> VerifierSettings:
    return VerifierSettings(
        network=NetworkSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)),
        registry=RegistrySettings(plain_http_hosts=frozenset({network.registry})),
        identity=IdentitySettings(plc_url=network.plc_url, allow_http_pds=True),
        **overrides,
    )
