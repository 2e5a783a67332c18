"""Policy sets: the default policy, per-namespace overrides, and all-or-nothing updates from
files (the ConfigMap source is in test_provider_configmap.py)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from atcr_verify import PolicyError
from provider.logs import make_logger
from provider.metrics import ProviderMetrics
from provider.policies import FilePolicySource, PolicyKeys, PolicyStore, build_policy_set
from tests.provider.harness import offline_policy

DEFAULT = offline_policy("registry.test/**")
TEAM = offline_policy("registry.test/team/**", action="audit")
KEYS = PolicyKeys("policy.yaml")


def store() -> tuple[PolicyStore, ProviderMetrics, io.StringIO]:
    metrics, logs = ProviderMetrics(), io.StringIO()
    return PolicyStore(KEYS, metrics, make_logger("info", logs)), metrics, logs


def sample(metrics: ProviderMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_namespace_keys_follow_the_default_key() -> None:
    assert KEYS.namespace_key("team-a") == "policy.team-a.yaml"
    assert KEYS.namespace_of("policy.team-a.yaml") == "team-a"
    assert KEYS.namespace_of("policy.yaml") is None
    assert KEYS.namespace_of("README.md") is None
    custom = PolicyKeys("trust.yml")
    assert custom.namespace_of("trust.prod.yml") == "prod"
    assert custom.namespace_of("policy.prod.yaml") is None


def test_a_set_has_a_default_and_namespace_overrides() -> None:
    policies = build_policy_set(
        {"policy.yaml": DEFAULT, "policy.team-a.yaml": TEAM, "notes.txt": "ignored"}, KEYS, "cm"
    )
    assert policies.for_namespace(None) is policies.default
    assert policies.for_namespace("team-b") is policies.default
    team = policies.for_namespace("team-a")
    assert team is not policies.default
    assert team.policy_for("registry.test/team/app") is not None
    assert team.source == "cm:policy.team-a.yaml"
    other = build_policy_set({"policy.yaml": DEFAULT}, KEYS, "cm")
    assert other.fingerprint != policies.fingerprint


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({}, "no policy.yaml"),
        ({"policy.team.yaml": TEAM}, "no policy.yaml"),
        ({"policy.yaml": "version: 9"}, "cm:policy.yaml: version"),
        ({"policy.yaml": DEFAULT, "policy.team.yaml": "policies: 7"}, "cm:policy.team.yaml"),
        ({"policy.yaml": DEFAULT, "policy.Team_A.yaml": TEAM}, "not a valid namespace name"),
    ],
)
def test_invalid_sets_are_refused_whole(entries: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        build_policy_set(entries, KEYS, "cm")


def test_an_invalid_update_keeps_the_previous_policy_and_is_counted() -> None:
    policies, metrics, logs = store()
    assert not policies.ready
    assert policies.update({"policy.yaml": DEFAULT}, "cm")
    first = policies.current
    assert first is not None and policies.ready
    assert not policies.update({"policy.yaml": DEFAULT, "policy.x.yaml": "{"}, "cm")
    assert policies.current is first
    assert policies.last_error is not None and "cm:policy.x.yaml" in policies.last_error
    assert sample(metrics, "atcr_policy_reload_total", result="success") == 1
    assert sample(metrics, "atcr_policy_reload_total", result="failure") == 1
    assert sample(metrics, "atcr_policy_last_reload_success_timestamp_seconds") > 0
    assert sample(metrics, "atcr_policy_loaded") == 1
    fingerprint = first.default.fingerprint
    assert sample(metrics, "atcr_policy_info", namespace="", fingerprint=fingerprint) == 1
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    rejected = [e for e in events if e["level"] == "error"]
    assert rejected and rejected[0]["kept"] == first.fingerprint


def test_a_single_file_is_the_default_policy_only(tmp_path: Path) -> None:
    policies, metrics, _ = store()
    path = tmp_path / "anything.yaml"
    path.write_text(DEFAULT)
    source = FilePolicySource(path, policies)
    source.check()
    assert policies.current is not None and policies.current.namespaces == {}
    loaded = policies.current
    source.check()  # unchanged: not reloaded
    assert policies.current is loaded
    assert sample(metrics, "atcr_policy_reload_total", result="success") == 1


def test_a_directory_holds_default_and_namespace_policies(tmp_path: Path) -> None:
    policies, metrics, _ = store()
    (tmp_path / "policy.yaml").write_text(DEFAULT)
    (tmp_path / "policy.team-a.yaml").write_text(TEAM)
    (tmp_path / "README.md").write_text("not a policy")
    source = FilePolicySource(tmp_path, policies)
    source.check()
    assert policies.current is not None
    assert set(policies.current.namespaces) == {"team-a"}
    # a namespace policy removed: the set is reloaded without it
    (tmp_path / "policy.team-a.yaml").unlink()
    source.check()
    assert policies.current.namespaces == {}
    # the default policy removed: refused, the last set stays
    kept = policies.current
    (tmp_path / "policy.yaml").unlink()
    source.check()
    assert policies.current is kept
    assert sample(metrics, "atcr_policy_reload_total", result="failure") == 1


def test_a_configmap_volume_swap_is_seen(tmp_path: Path) -> None:
    """Kubernetes mounts ConfigMaps as symlinks into a ``..data`` directory it swaps."""
    policies, _, _ = store()
    first, second = tmp_path / "..2024_1", tmp_path / "..2024_2"
    first.mkdir()
    second.mkdir()
    (first / "policy.yaml").write_text(DEFAULT)
    (second / "policy.yaml").write_text(offline_policy("registry.test/other/**"))
    os.symlink(first.name, tmp_path / "..data")
    os.symlink("..data/policy.yaml", tmp_path / "policy.yaml")
    source = FilePolicySource(tmp_path, policies)
    source.check()
    assert policies.current is not None
    before = policies.current.fingerprint
    os.symlink(second.name, tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    source.check()
    assert policies.current.fingerprint != before
