"""``KubeApiWatchDouble``: a TEST DOUBLE of the Kubernetes API server, for one protocol only.

It serves what the provider's ConfigMap source uses — ``GET /api/v1/namespaces/<ns>/configmaps``
with ``fieldSelector=metadata.name=<name>``, as a list (``ConfigMapList`` with a
``resourceVersion``) and as a watch (``watch=true``: a chunked stream of JSON event lines from
``resourceVersion`` on, ended after ``timeoutSeconds``, ``410 Gone`` as an ERROR event for a
compacted version, bookmarks) — behind a bearer token from a kubeconfig. Nothing else of the API
server exists here.

It stands in until issue #4 brings a real kube-apiserver (with etcd) into the tests; the tests
that use it are marked ``kube_api_double`` so the e2e suite can replace them with the real thing.
The client side is the real one: kubernetes-asyncio's ``ApiClient``, kubeconfig loader and
``Watch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "double-token"


class KubeApiWatchDouble:
    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.resource_version = 1000
        self.configmap: dict[str, Any] | None = None
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.compacted_below = 0
        self.fail_next = 0
        """Answer this many requests with 500 before behaving again."""
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._changed = asyncio.Condition()
        self._watchers: dict[int, asyncio.BaseTransport] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{namespace}/configmaps", self._configmaps)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        await self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def write_kubeconfig(self, path: Path, token: str = TOKEN) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "double", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
            ],
            "users": [{"name": "provider", "user": {"token": token}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "provider"}}],
            "current-context": "double",
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    # --- what a test does to the "cluster" ----------------------------------------------------

    async def put(self, data: dict[str, str]) -> None:
        """Create or replace the ConfigMap (an ADDED or MODIFIED event)."""
        kind = "ADDED" if self.configmap is None else "MODIFIED"
        self.resource_version += 1
        self.configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": str(self.resource_version),
                "uid": "6f1c7f5e-0000-4000-8000-000000000001",
            },
            "data": dict(data),
        }
        await self._emit(kind, self.configmap)

    async def delete(self) -> None:
        assert self.configmap is not None
        self.resource_version += 1
        gone = json.loads(json.dumps(self.configmap))
        gone["metadata"]["resourceVersion"] = str(self.resource_version)
        self.configmap = None
        await self._emit("DELETED", gone)

    async def bookmark(self) -> None:
        self.resource_version += 1
        await self._emit(
            "BOOKMARK",
            {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.resource_version)},
            },
        )

    def compact(self) -> None:
        """Other objects changed and etcd compacted: a watch from any version a client has
        seen gets 410 Gone; a fresh list gives a version that can be watched again."""
        self.resource_version += 10
        self.compacted_below = self.resource_version
        self.events.clear()

    async def drop_watches(self) -> None:
        """Cut every open watch connection (an API server restart, a network blip)."""
        for transport in list(self._watchers.values()):
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        async with self._changed:
            self._changed.notify_all()

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def selectors(self) -> set[str]:
        return {query.get("fieldSelector", "") for _, query in self.requests}

    # --- the API ------------------------------------------------------------------------------

    async def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((self.resource_version, kind, json.loads(json.dumps(obj))))
        async with self._changed:
            self._changed.notify_all()

    async def _configmaps(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.match_info["namespace"], query))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "invalid bearer token")
        if self.fail_next > 0:
            self.fail_next -= 1
            return _status(500, "InternalError", "etcd is having a bad day")
        selected = (
            request.match_info["namespace"] == self.namespace
            and query.get("fieldSelector") == f"metadata.name={self.name}"
        )
        if _go_bool(query.get("watch", "")):
            return await self._watch(request, query, selected)
        items = [self.configmap] if self.configmap is not None and selected else []
        return web.json_response(
            {
                "kind": "ConfigMapList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items,
            }
        )

    async def _watch(
        self, request: web.Request, query: dict[str, str], selected: bool
    ) -> web.StreamResponse:
        since = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds") or 1800)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if since < self.compacted_below:
            expired = {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {since}",
                    "reason": "Expired",
                    "code": 410,
                },
            }
            await response.write(json.dumps(expired).encode() + b"\n")
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if request.transport is not None:
            self._watchers[id(request)] = request.transport
        try:
            while request.transport is not None and not request.transport.is_closing():
                for version, kind, obj in list(self.events):
                    if version > since:
                        since = version
                        if selected:
                            line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                            await response.write(line)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout=remaining)
        except (ConnectionResetError, RuntimeError):
            return response
        finally:
            self._watchers.pop(id(request), None)
        if request.transport is not None and not request.transport.is_closing():
            await response.write_eof()
        return response


def _go_bool(text: str) -> bool:
    """Query booleans as the API server parses them (Go's strconv.ParseBool)."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )
