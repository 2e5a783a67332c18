"""TTL caches with single-flight loading and bounded stale-if-error.

Concurrent identical lookups share one upstream fetch (the first caller's load runs as its own
task, so a caller that gives up — a deadline — does not cancel it for the others). A value past
its TTL may still be served for ``stale_seconds`` when reloading it fails with a fault: this keeps
admission working through a short PLC outage without trusting old data for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

from .errors import Fault

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """TTLs in seconds. Defaults follow the seed documents (5 minutes)."""

    did_ttl: float = 300.0
    did_stale_seconds: float = 3600.0
    """How long past its TTL a DID document may be served while the PLC/did:web host fails."""
    verdict_ttl: float = 300.0
    denial_ttl: float = 30.0
    """Denials are cached briefly: a signature published a moment later should count soon."""
    tag_ttl: float = 30.0
    """How long a tag→digest resolution is reused."""
    max_entries: int = 100_000


class CacheObserver:
    """Receives cache events; front-ends turn them into metrics. The default does nothing."""

    def hit(self, cache: str) -> None:
        pass

    def miss(self, cache: str) -> None:
        pass

    def stale(self, cache: str) -> None:
        pass


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    fresh_until: float
    stale_until: float


class AsyncTtlCache(Generic[K, V]):
    """An LRU-bounded TTL cache whose loads are single-flight."""

    def __init__(
        self,
        name: str,
        *,
        max_entries: int,
        observer: CacheObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._entries: LRUCache[K, _Entry[V]] = LRUCache(maxsize=max_entries)
        self._inflight: dict[K, asyncio.Task[tuple[V, float]]] = {}
        self._observer = observer or CacheObserver()
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> V | None:
        """The fresh value for ``key`` without loading (the cheap hot path)."""
        entry = self._entries.get(key)
        if entry is not None and entry.fresh_until > self._clock():
            self._observer.hit(self.name)
            return entry.value
        return None

    def put(self, key: K, value: V, ttl: float, stale_seconds: float = 0.0) -> None:
        if ttl <= 0:
            return
        now = self._clock()
        self._entries[key] = _Entry(value, now + ttl, now + ttl + stale_seconds)

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    async def get_or_load(
        self,
        key: K,
        load: Callable[[], Awaitable[tuple[V, float]]],
        *,
        stale_seconds: float = 0.0,
    ) -> V:
        """Return a fresh value or load one; ``load`` returns ``(value, ttl_seconds)``."""
        value = self.peek(key)
        if value is not None:
            return value
        task = self._inflight.get(key)
        if task is None:
            self._observer.miss(self.name)
            task = asyncio.create_task(self._load(key, load, stale_seconds))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        try:
            result, _ttl = await asyncio.shield(task)
        except Fault:
            stale = self._stale(key)
            if stale is None:
                raise
            self._observer.stale(self.name)
            return stale
        return result

    async def _load(
        self,
        key: K,
        load: Callable[[], Awaitable[tuple[V, float]]],
        stale_seconds: float,
    ) -> tuple[V, float]:
        value, ttl = await load()
        self.put(key, value, ttl, stale_seconds)
        return value, ttl

    def _finished(self, key: K, task: asyncio.Task[tuple[V, float]]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported as lost

    def _stale(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and entry.stale_until > self._clock():
            return entry.value
        return None
