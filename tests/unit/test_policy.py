"""Trust policy: seed format, anchored host-aware globs, most specific wins, strict checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from atcr_verify.errors import PolicyError
from atcr_verify.policy import Action, DefaultAction, load_policy, load_policy_file

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"

SEED_POLICY = f"""
version: 1.0

trustedDIDs:
  {ALICE}:
    name: "Alice (DevOps Lead)"
    validFrom: "2024-01-01T00:00:00Z"
    expiresAt: null

  {BOB}:
    name: "Bob (Security Team)"
    validFrom: "2024-06-01T00:00:00Z"
    expiresAt: "2025-12-31T23:59:59Z"

policies:
  - name: production-images
    scope: "atcr.io/*/prod-*"
    require:
      signature: true
      trustedDIDs:
        - {ALICE}
        - {BOB}
      minSignatures: 1
    action: enforce

  - name: dev-images
    scope: "atcr.io/*/dev-*"
    require:
      signature: false
    action: audit
"""


def test_seed_document_policy_loads_as_written() -> None:
    policy = load_policy(SEED_POLICY, source="seed.yaml")
    assert set(policy.trusted_dids) == {ALICE, BOB}
    assert policy.trusted_dids[ALICE].name == "Alice (DevOps Lead)"
    assert policy.trusted_dids[ALICE].expires_at is None
    assert policy.trusted_dids[BOB].expires_at == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    production, development = policy.policies
    assert production.action is Action.ENFORCE
    assert production.require.trusted_dids == {ALICE, BOB}
    assert production.require.min_signatures == 1
    assert development.require.signature is False
    assert development.action is Action.AUDIT
    assert policy.default_action is DefaultAction.DENY


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("atcr.io/alice/prod-api", "production-images"),
        ("atcr.io/alice/dev-api", "dev-images"),
        ("atcr.io/alice/team/prod-api", None),  # '*' never crosses '/'
        ("evil.io/atcr.io/alice/prod-api", None),  # anchored at the start
        ("atcr.io.evil.io/alice/prod-api", None),  # the host is matched whole
        ("atcr.io/alice/prod-api-evil", "production-images"),
        ("xatcr.io/alice/prod-api", None),
    ],
)
def test_scopes_are_anchored_and_host_aware(name: str, expected: str | None) -> None:
    policy = load_policy(SEED_POLICY)
    match = policy.policy_for(name)
    assert (match.name if match else None) == expected


def _policy_with_scopes(*scopes: str, default: str = "deny") -> str:
    entries = "\n".join(
        f"  - name: p{i}\n    scope: '{scope}'\n    require: {{trustedDIDs: [{ALICE}]}}"
        for i, scope in enumerate(scopes)
    )
    return (
        f"version: '1.0'\ndefaultAction: {default}\ntrustedDIDs:\n  {ALICE}: {{name: a}}\n"
        f"policies:\n{entries}\n"
    )


def test_most_specific_scope_wins_whatever_the_order() -> None:
    policy = load_policy(
        _policy_with_scopes("**", "atcr.io/**", "atcr.io/alice/*", "atcr.io/alice/app")
    )
    assert policy.policy_for("atcr.io/alice/app").name == "p3"  # type: ignore[union-attr]
    assert policy.policy_for("atcr.io/alice/other").name == "p2"  # type: ignore[union-attr]
    assert policy.policy_for("atcr.io/bob/team/x").name == "p1"  # type: ignore[union-attr]
    assert policy.policy_for("docker.io/library/nginx").name == "p0"  # type: ignore[union-attr]
    reordered = load_policy(_policy_with_scopes("atcr.io/alice/app", "atcr.io/alice/*", "**"))
    assert reordered.policy_for("atcr.io/alice/app").name == "p0"  # type: ignore[union-attr]


def test_equal_specificity_prefers_the_earlier_entry() -> None:
    policy = load_policy(_policy_with_scopes("atcr.io/*/app", "atcr.io/app/*"))
    assert policy.policy_for("atcr.io/app/app").name == "p0"  # type: ignore[union-attr]
    swapped = load_policy(_policy_with_scopes("atcr.io/app/*", "atcr.io/*/app"))
    assert swapped.policy_for("atcr.io/app/app").name == "p0"  # type: ignore[union-attr]


def test_double_star_crosses_segments_but_single_star_does_not_cross_labels() -> None:
    policy = load_policy(_policy_with_scopes("*.atcr.io/**"))
    assert policy.policy_for("eu.atcr.io/alice/team/app") is not None
    assert policy.policy_for("evil.com.atcr.io/alice/app") is None
    assert policy.policy_for("atcr.io/alice/app") is None


def test_registry_with_port_is_matched_literally() -> None:
    policy = load_policy(_policy_with_scopes("127.0.0.1:5000/alice/*"))
    assert policy.policy_for("127.0.0.1:5000/alice/app") is not None
    assert policy.policy_for("127.0.0.1:5001/alice/app") is None


def test_no_match_uses_default_action() -> None:
    assert load_policy(_policy_with_scopes("atcr.io/*/x")).default_action is DefaultAction.DENY
    assert (
        load_policy(_policy_with_scopes("atcr.io/*/x", default="allow")).default_action
        is DefaultAction.ALLOW
    )


def test_trust_window_is_checked_and_reported() -> None:
    policy = load_policy(SEED_POLICY)
    bob = policy.trusted_dids[BOB]
    assert bob.trusted_at(datetime(2025, 1, 1, tzinfo=UTC))
    assert not bob.trusted_at(datetime(2024, 1, 1, tzinfo=UTC))
    assert not bob.trusted_at(datetime(2026, 1, 1, tzinfo=UTC))
    assert "expired" in (bob.window_problem(datetime(2026, 1, 1, tzinfo=UTC)) or "")
    assert "starts" in (bob.window_problem(datetime(2024, 1, 1, tzinfo=UTC)) or "")
    assert policy.next_change_after(datetime(2025, 1, 1, tzinfo=UTC)) == bob.expires_at


def test_fingerprint_changes_with_any_decision_input() -> None:
    base = load_policy(SEED_POLICY)
    assert load_policy(SEED_POLICY).fingerprint == base.fingerprint
    changed = load_policy(SEED_POLICY.replace("minSignatures: 1", "minSignatures: 2"))
    assert changed.fingerprint != base.fingerprint
    expired = load_policy(SEED_POLICY.replace("2025-12-31T23:59:59Z", "2025-12-30T23:59:59Z"))
    assert expired.fingerprint != base.fingerprint


@pytest.mark.parametrize(
    ("mutation", "path", "reason"),
    [
        (("version: 1.0", "version: 2"), "version", "unsupported version"),
        (("action: enforce", "action: block"), "policies[0].action", "enforce or audit"),
        (("minSignatures: 1", "minSignatures: 0"), "policies[0].require.minSignatures", "1 to"),
        (("minSignatures: 1", "minSignatures: 3"), "policies[0].require.minSignatures", "only 2"),
        (
            ('scope: "atcr.io/*/prod-*"', 'scope: "atcr.io/*/prod-*:latest"'),
            "policies[0].scope",
            "tags and digests",
        ),
        (('scope: "atcr.io/*/prod-*"', 'scope: "ATCR.io/*"'), "policies[0].scope", "lowercase"),
        (
            ("- " + BOB, "- did:plc:cccccccccccccccccccccccc"),
            "policies[0].require.trustedDIDs[1]",
            "not declared",
        ),
        (
            ('expiresAt: "2025-12-31T23:59:59Z"', 'expiresAt: "2023-12-31T23:59:59Z"'),
            f"trustedDIDs.{BOB}.expiresAt",
            "later than validFrom",
        ),
        (
            ('validFrom: "2024-06-01T00:00:00Z"', 'validFrom: "2024-06-01T00:00:00"'),
            f"trustedDIDs.{BOB}.validFrom",
            "timezone",
        ),
        (("    action: audit", "    action: audit\n    extra: 1"), "policies[1].extra", "unknown"),
        ((ALICE + ":\n", "did:plc:nope:\n"), "trustedDIDs.did:plc:nope", "did:plc"),
    ],
)
def test_invalid_policies_name_the_path_and_reason(
    mutation: tuple[str, str], path: str, reason: str
) -> None:
    text = SEED_POLICY.replace(*mutation, 1)
    assert text != SEED_POLICY
    with pytest.raises(PolicyError) as caught:
        load_policy(text, source="policy.yaml")
    assert caught.value.source == "policy.yaml"
    assert caught.value.path == path
    assert reason in caught.value.detail


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "version: 1.0\npolicies: {}",
        "{{{{",
        "version: [1]",
        "a: !!python/object:os.system x",
    ],
)
def test_malformed_documents_are_policy_errors(text: str) -> None:
    with pytest.raises(PolicyError):
        load_policy(text)


def test_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.yaml"):
        load_policy_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1.0\npolicies:\n  - name: x\n    scope: 'nohost'\n")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(bad)
    assert str(bad) in str(caught.value)
    assert caught.value.path == "policies[0].scope"
