"""Shared fixtures.

``network`` and ``publisher`` are the REAL local test network (PLC + PDS from npm, Debian's
docker-registry), started once per session. They fail, never skip, when a prerequisite is
missing: a silently skipped integration suite looks green and proves nothing. Any test that uses
them is marked ``network`` automatically (deselect with ``-m "not network"``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atcr_devnet import Account, DevnetSetupError, LocalNetwork, Publisher

NETWORK_FIXTURES = frozenset({"network", "publisher", "account"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if NETWORK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)


@pytest.fixture(scope="session")
def network() -> Iterator[LocalNetwork]:
    """PLC, PDS and registry on 127.0.0.1 for the whole session."""
    net = LocalNetwork()
    try:
        net.start()
    except DevnetSetupError as exc:
        pytest.fail(f"the local test network cannot start: {exc}", pytrace=False)
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture(scope="session")
def publisher(network: LocalNetwork) -> Iterator[Publisher]:
    """Publishes accounts, records, images and signature artifacts on ``network``."""
    with Publisher.from_network(network) as pub:
        yield pub


@pytest.fixture
def account(publisher: Publisher) -> Account:
    """A fresh PDS account (unique handle ``alice-xxxxx.test``) for one test."""
    return publisher.create_account("alice")
