"""The trust policy from a ConfigMap, watched through the Kubernetes API (kubernetes-asyncio).

List once (``fieldSelector=metadata.name=NAME``: RBAC needs only this one object), apply it, then
watch from the list's ``resourceVersion``; each watch call ends after ``watch_timeout`` and the
next resumes from the last version seen (bookmarks included). ``410 Gone`` (the version was
compacted away) means list again. Any other failure — API server down, token rejected, network —
is retried with capped exponential backoff while the last good policy stays in force.

A deleted ConfigMap or an invalid update is rejected (logged, counted in
``atcr_policy_reload_total{result="failure"}``) and never unloads the policy in force: an
admission controller that fails open because someone deleted a ConfigMap would be a hole.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import load_incluster_config, load_kube_config
from kubernetes_asyncio.watch import Watch
from structlog.typing import FilteringBoundLogger

from .metrics import ProviderMetrics
from .policies import PolicyStore
from .settings import ConfigMapRef

CONNECT_TIMEOUT = 10.0
_MISSING = object()


async def kube_configuration(kubeconfig: Path | None) -> Configuration:
    """``kubeconfig`` when given, else the pod's service account, else ``~/.kube/config``."""
    configuration = Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        cast(Any, load_incluster_config)(client_configuration=configuration)
    else:
        await cast(Any, load_kube_config)(
            config_file=str(kubeconfig) if kubeconfig is not None else None,
            client_configuration=configuration,
            persist_config=False,
        )
    return configuration


class ConfigMapPolicySource:
    """Keeps a :class:`PolicyStore` in step with one ConfigMap until cancelled."""

    def __init__(
        self,
        ref: ConfigMapRef,
        store: PolicyStore,
        metrics: ProviderMetrics,
        logger: FilteringBoundLogger,
        *,
        kubeconfig: Path | None = None,
        watch_timeout: float = 300.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.ref = ref
        self._store = store
        self._metrics = metrics
        self._log = logger.bind(configmap=str(ref))
        self._kubeconfig = kubeconfig
        self._watch_timeout = watch_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = backoff_initial
        self._selector = f"metadata.name={ref.name}"
        self._last_data: object = None
        self.lists = 0
        """How many times the ConfigMap was listed (tests check relists after 410 Gone)."""

    @property
    def origin(self) -> str:
        return f"configmap {self.ref}"

    async def run(self) -> None:
        configuration: Configuration | None = None
        while True:
            try:
                if configuration is None:
                    configuration = await kube_configuration(self._kubeconfig)
                async with ApiClient(configuration=configuration) as api:
                    await self._list_and_watch(cast(Any, CoreV1Api)(api))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # every failure of the API connection is retried
                self._metrics.policy_watch_restarts.inc()
                delay = self._backoff * random.uniform(0.8, 1.2)
                self._backoff = min(self._backoff * 2, self._backoff_max)
                self._log.warning(
                    "configmap watch failed; retrying",
                    error=_describe(error),
                    retry_in=round(delay, 2),
                    policy_loaded=self._store.ready,
                )
                await asyncio.sleep(delay)

    async def _list_and_watch(self, v1: Any) -> None:
        version = await self._list(v1)
        while True:
            try:
                version = await self._watch(v1, version)
            except ApiException as error:
                if error.status != 410:
                    raise
                self._log.info("configmap watch expired (410 Gone); listing again")
                version = await self._list(v1)

    async def _list(self, v1: Any) -> str:
        result = await v1.list_namespaced_config_map(
            self.ref.namespace,
            field_selector=self._selector,
            _request_timeout=(CONNECT_TIMEOUT, CONNECT_TIMEOUT * 3),
        )
        self.lists += 1
        self._backoff = self._backoff_initial  # the API server answered: back to fast retries
        items = result.items or []
        if items:
            self._apply(items[0].data or {})
        else:
            self._missing("not found")
        return str(result.metadata.resource_version)

    async def _watch(self, v1: Any, version: str) -> str:
        async with Watch() as watch:
            stream = watch.stream(
                v1.list_namespaced_config_map,
                self.ref.namespace,
                field_selector=self._selector,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=max(1, round(self._watch_timeout)),  # the API takes whole seconds
                _request_timeout=(CONNECT_TIMEOUT, self._watch_timeout + 30),
            )
            async for event in stream:
                kind = event["type"]
                raw = event["raw_object"]
                if kind in ("ADDED", "MODIFIED"):
                    self._apply(raw.get("data") or {})
                elif kind == "DELETED":
                    self._missing("deleted")
            return str(watch.resource_version or version)

    def _apply(self, data: Mapping[str, str]) -> None:
        if data == self._last_data:
            return  # a relist or a metadata-only change: nothing to reload
        self._last_data = dict(data)
        self._store.update(data, self.origin)

    def _missing(self, what: str) -> None:
        if self._last_data is _MISSING:
            return
        self._last_data = _MISSING
        self._store.reject(f"ConfigMap {self.ref} {what}", self.origin)


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"API server answered {error.status}: {error.reason}"
    return f"{type(error).__name__}: {error}"[:300]
