"""Single-flight TTL cache with bounded stale-if-error."""

from __future__ import annotations

import asyncio

import pytest

from atcr_verify.cache import AsyncTtlCache, CacheObserver
from atcr_verify.errors import NotFound, UpstreamError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingObserver(CacheObserver):
    def __init__(self) -> None:
        self.events: list[str] = []

    def hit(self, cache: str) -> None:
        self.events.append("hit")

    def miss(self, cache: str) -> None:
        self.events.append("miss")

    def stale(self, cache: str) -> None:
        self.events.append("stale")


async def test_concurrent_identical_lookups_share_one_load() -> None:
    cache: AsyncTtlCache[str, int] = AsyncTtlCache("t", max_entries=10)
    calls = 0
    release = asyncio.Event()

    async def load() -> tuple[int, float]:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42, 60.0

    waiters = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 20
    assert calls == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load() -> None:
    cache: AsyncTtlCache[str, int] = AsyncTtlCache("t", max_entries=10)
    release = asyncio.Event()

    async def load() -> tuple[int, float]:
        await release.wait()
        return 7, 60.0

    first = asyncio.create_task(cache.get_or_load("k", load))
    second = asyncio.create_task(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 7
    assert cache.peek("k") == 7


async def test_values_expire_after_their_ttl() -> None:
    clock = Clock()
    observer = CountingObserver()
    cache: AsyncTtlCache[str, int] = AsyncTtlCache(
        "t", max_entries=10, clock=clock, observer=observer
    )
    values = iter([1, 2])

    async def load() -> tuple[int, float]:
        return next(values), 10.0

    assert await cache.get_or_load("k", load) == 1
    clock.now += 9
    assert await cache.get_or_load("k", load) == 1
    clock.now += 2
    assert await cache.get_or_load("k", load) == 2
    assert observer.events == ["miss", "hit", "miss"]


async def test_stale_value_served_on_fault_within_bound_only() -> None:
    clock = Clock()
    observer = CountingObserver()
    cache: AsyncTtlCache[str, str] = AsyncTtlCache(
        "t", max_entries=10, clock=clock, observer=observer
    )

    async def good() -> tuple[str, float]:
        return "doc", 10.0

    async def failing() -> tuple[str, float]:
        raise UpstreamError("PLC down", status=503)

    await cache.get_or_load("did", good, stale_seconds=100)
    clock.now += 50  # past TTL, within the stale bound
    assert await cache.get_or_load("did", failing, stale_seconds=100) == "doc"
    assert observer.events[-1] == "stale"
    clock.now += 100  # past the stale bound
    with pytest.raises(UpstreamError):
        await cache.get_or_load("did", failing, stale_seconds=100)


async def test_denials_are_not_masked_by_stale_values() -> None:
    clock = Clock()
    cache: AsyncTtlCache[str, str] = AsyncTtlCache("t", max_entries=10, clock=clock)

    async def good() -> tuple[str, float]:
        return "doc", 10.0

    async def tombstoned() -> tuple[str, float]:
        raise NotFound("DID tombstoned")

    await cache.get_or_load("did", good, stale_seconds=100)
    clock.now += 11
    with pytest.raises(NotFound):
        await cache.get_or_load("did", tombstoned, stale_seconds=100)


async def test_zero_ttl_is_not_cached() -> None:
    cache: AsyncTtlCache[str, int] = AsyncTtlCache("t", max_entries=10)

    async def load() -> tuple[int, float]:
        return 1, 0.0

    assert await cache.get_or_load("k", load) == 1
    assert cache.peek("k") is None
    assert len(cache) == 0


async def test_size_is_bounded() -> None:
    cache: AsyncTtlCache[int, int] = AsyncTtlCache("t", max_entries=3)
    for key in range(10):
        cache.put(key, key, 60.0)
    assert len(cache) == 3
