"""Fixtures for the provider tests: certificates and an offline policy file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.provider.harness import offline_policy
from tests.provider.pki import Pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "certs")


@pytest.fixture
def offline_policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(offline_policy())
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kube_api_double: uses KubeApiWatchDouble instead of a real kube-apiserver "
        "(to be replaced by the real API server of issue #4)",
    )
