"""The trust policy from a ConfigMap through kubernetes-asyncio's real client (kubeconfig loader,
ApiClient, Watch) against ``KubeApiWatchDouble`` — a double of the API server's list/watch
protocol, used until a real kube-apiserver is available in the tests (issue #4)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from provider.kube import ConfigMapPolicySource
from provider.logs import make_logger
from provider.metrics import ProviderMetrics
from provider.policies import PolicyKeys, PolicyStore
from provider.settings import ConfigMapRef
from tests.provider.harness import (
    offline_policy,
    provider_settings,
    running_provider,
    wait_for,
)
from tests.provider.kube_double import KubeApiWatchDouble
from tests.provider.pki import Pki

pytestmark = pytest.mark.kube_api_double

NS, NAME = "atcr-system", "atcr-trust-policy"
STRICT = offline_policy("registry.test/**")
ALLOW_OTHERS = STRICT + "defaultAction: allow\n"
OUTSIDE = "elsewhere.test/app:1"  # no scope matches: decided by defaultAction, no I/O


@pytest.fixture
async def api() -> AsyncIterator[KubeApiWatchDouble]:
    double = KubeApiWatchDouble(NS, NAME)
    await double.start()
    yield double
    await double.stop()


class Watched:
    """A ConfigMapPolicySource running against the double, with its store and metrics."""

    def __init__(self, api: KubeApiWatchDouble, kubeconfig: Path, **options: Any) -> None:
        self.metrics = ProviderMetrics()
        self.logs = io.StringIO()
        self.store = PolicyStore(
            PolicyKeys("policy.yaml"), self.metrics, make_logger("info", self.logs)
        )
        self.source = ConfigMapPolicySource(
            ConfigMapRef(NS, NAME),
            self.store,
            self.metrics,
            make_logger("info", self.logs),
            kubeconfig=kubeconfig,
            backoff_initial=0.05,
            backoff_max=0.2,
            **options,
        )

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def fingerprint(self) -> str | None:
        return self.store.current.fingerprint if self.store.current else None


@pytest.fixture
async def watched(api: KubeApiWatchDouble, tmp_path: Path) -> AsyncIterator[Watched]:
    import asyncio

    state = Watched(api, api.write_kubeconfig(tmp_path / "kubeconfig"))
    task = asyncio.create_task(state.source.run())
    yield state
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_policy_loads_and_edits_apply_through_the_watch(
    api: KubeApiWatchDouble, watched: Watched
) -> None:
    await api.put({"policy.yaml": STRICT})
    await wait_for(lambda: watched.store.ready)
    first = watched.fingerprint()
    await wait_for(lambda: api.open_watches == 1)
    await api.put({"policy.yaml": ALLOW_OTHERS, "policy.team-a.yaml": STRICT})
    await wait_for(lambda: watched.fingerprint() != first)
    assert watched.store.current is not None
    assert set(watched.store.current.namespaces) == {"team-a"}
    assert watched.source.lists == 1  # the edit came through the watch, not a relist
    # only the one ConfigMap is ever asked for (RBAC can be that narrow)
    assert api.selectors() == {f"metadata.name={NAME}"}
    assert {ns for ns, _ in api.requests} == {NS}


async def test_an_invalid_edit_is_rejected_and_the_last_policy_kept(
    api: KubeApiWatchDouble, watched: Watched
) -> None:
    await api.put({"policy.yaml": STRICT})
    await wait_for(lambda: watched.store.ready and api.open_watches == 1)
    good = watched.fingerprint()
    await api.put({"policy.yaml": "version: 1.0\npolicies: [{name: x}]\n"})
    await wait_for(lambda: watched.sample("atcr_policy_reload_total", result="failure") == 1)
    assert watched.fingerprint() == good
    assert watched.store.last_error is not None and "policies[0]" in watched.store.last_error
    await api.put({"policy.yaml": ALLOW_OTHERS})
    await wait_for(lambda: watched.fingerprint() not in (good, None))
    assert watched.store.last_error is None


async def test_a_deleted_configmap_keeps_the_policy_until_it_returns(
    api: KubeApiWatchDouble, watched: Watched
) -> None:
    await api.put({"policy.yaml": STRICT})
    await wait_for(lambda: watched.store.ready and api.open_watches == 1)
    good = watched.fingerprint()
    await api.delete()
    await wait_for(lambda: watched.store.last_error is not None)
    assert "deleted" in (watched.store.last_error or "")
    assert watched.fingerprint() == good and watched.store.ready
    await api.put({"policy.yaml": ALLOW_OTHERS})
    await wait_for(lambda: watched.fingerprint() not in (good, None))


async def test_missing_at_start_then_created(api: KubeApiWatchDouble, watched: Watched) -> None:
    await wait_for(lambda: api.open_watches == 1)
    assert not watched.store.ready
    assert "not found" in (watched.store.last_error or "")
    await api.put({"policy.yaml": STRICT})
    await wait_for(lambda: watched.store.ready)


async def test_a_compacted_version_410_means_list_again(
    api: KubeApiWatchDouble, tmp_path: Path
) -> None:
    import asyncio

    state = Watched(api, api.write_kubeconfig(tmp_path / "kc"), watch_timeout=1)
    await api.put({"policy.yaml": STRICT})
    task = asyncio.create_task(state.source.run())
    try:
        await wait_for(lambda: state.store.ready and api.open_watches == 1)
        api.compact()  # the next watch call resumes from a version that is gone
        await wait_for(lambda: state.source.lists >= 2)
        assert "410 Gone" in state.logs.getvalue()
        assert state.sample("atcr_policy_watch_restarts_total") == 0  # not an error
        first = state.fingerprint()
        await api.put({"policy.yaml": ALLOW_OTHERS})
        await wait_for(lambda: state.fingerprint() != first)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_watch_that_times_out_resumes_from_the_last_version(
    api: KubeApiWatchDouble, tmp_path: Path
) -> None:
    import asyncio

    state = Watched(api, api.write_kubeconfig(tmp_path / "kc"), watch_timeout=1)
    await api.put({"policy.yaml": STRICT})
    task = asyncio.create_task(state.source.run())
    try:
        await wait_for(lambda: state.store.ready)
        await asyncio.sleep(2.5)  # at least two watch calls have ended normally
        await api.bookmark()
        await api.put({"policy.yaml": ALLOW_OTHERS})
        first = state.fingerprint()
        await wait_for(lambda: state.fingerprint() != first)
        assert state.source.lists == 1
        watches = [q for _, q in api.requests if "watch" in q]
        assert len(watches) >= 3
        assert all(q["allowWatchBookmarks"] == "True" for q in watches)
        assert state.sample("atcr_policy_watch_restarts_total") == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_api_errors_and_dropped_connections_are_retried(
    api: KubeApiWatchDouble, watched: Watched
) -> None:
    api.fail_next = 3
    await api.put({"policy.yaml": STRICT})
    await wait_for(lambda: watched.store.ready)
    assert watched.sample("atcr_policy_watch_restarts_total") >= 3
    await wait_for(lambda: api.open_watches == 1)
    restarts = watched.sample("atcr_policy_watch_restarts_total")
    await api.drop_watches()
    await wait_for(lambda: watched.sample("atcr_policy_watch_restarts_total") > restarts)
    await wait_for(lambda: api.open_watches == 1)
    good = watched.fingerprint()
    await api.put({"policy.yaml": ALLOW_OTHERS})
    await wait_for(lambda: watched.fingerprint() != good)


async def test_a_rejected_token_is_retried_not_fatal(
    api: KubeApiWatchDouble, tmp_path: Path
) -> None:
    import asyncio

    state = Watched(api, api.write_kubeconfig(tmp_path / "kc", token="wrong"))
    task = asyncio.create_task(state.source.run())
    try:
        await wait_for(lambda: state.sample("atcr_policy_watch_restarts_total") >= 2)
        assert not state.store.ready
        assert "401" in state.logs.getvalue()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_provider_app_follows_the_configmap(
    api: KubeApiWatchDouble, pki: Pki, tmp_path: Path
) -> None:
    """The whole service: not ready → ready, and a ConfigMap edit changes the next answer."""
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    settings = provider_settings(
        pki, tmp_path / "unused", policy_file=None, policy_configmap=ConfigMapRef(NS, NAME),
        kubeconfig=kubeconfig,
    )  # fmt: skip
    async with running_provider(settings, pki) as provider:
        assert (await provider.health("/readyz"))[0] == 503
        await api.put({"policy.yaml": STRICT})

        async def ready() -> bool:
            return (await provider.health("/readyz"))[0] == 200

        await wait_for(ready)
        items = await provider.items([OUTSIDE, f"[team-a]{OUTSIDE}"])
        assert "no policy scope matches" in items[OUTSIDE]["error"]
        await api.put({"policy.yaml": STRICT, "policy.team-a.yaml": ALLOW_OTHERS})

        async def team_a_allowed() -> bool:
            items = await provider.items([f"[team-a]{OUTSIDE}"])
            return "value" in items[f"[team-a]{OUTSIDE}"]

        await wait_for(team_a_allowed)
        items = await provider.items([OUTSIDE, f"[team-a]{OUTSIDE}", f"[team-b]{OUTSIDE}"])
        assert "error" in items[OUTSIDE] and "error" in items[f"[team-b]{OUTSIDE}"]
        value = items[f"[team-a]{OUTSIDE}"]["value"]
        assert value["allowed"] is True and value["verified"] is False
        status, body = await provider.health("/metrics")
        assert status == 200
        assert 'atcr_policy_info{fingerprint="' in body and 'namespace="team-a"' in body
