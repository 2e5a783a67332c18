"""Answering one ProviderRequest: every distinct key gets an item, within the deadline.

Cached verdicts for digest references are answered inline (``Verifier.cached``: no task, no
I/O). Everything else runs as one task per distinct key, at most ``max_concurrency`` cold
verifications at once across all requests. At the deadline, unfinished keys are answered with
an item error and their tasks cancelled; the loads they started keep running inside the core's
single-flight cache, so the next request finds them done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from atcr_verify import InvalidReference, Outcome, TrustPolicy, Verdict

from .metrics import CURRENT_WORK, ProviderMetrics, WorkFlag
from .policies import PolicySet
from .wire import (
    DEADLINE_ERROR,
    UNDECIDED_PREFIX,
    ProviderItem,
    error_item,
    split_key,
    verdict_item,
)


class VerdictSource(Protocol):
    """What the service needs from :class:`atcr_verify.Verifier` (tests substitute doubles)."""

    def cached(self, image: str, *, policy: TrustPolicy | None = None) -> Verdict | None: ...

    async def verify(self, image: str, *, policy: TrustPolicy | None = None) -> Verdict: ...


class AllUndecided(Exception):
    """No key could be answered before the deadline: a whole-request fault (``systemError``)."""


class Validator:
    """Turns keys into items with a verifier, a policy set, metrics and logs."""

    def __init__(
        self,
        verifier: VerdictSource,
        metrics: ProviderMetrics,
        logger: FilteringBoundLogger,
        *,
        max_concurrency: int,
    ) -> None:
        self._verifier = verifier
        self._metrics = metrics
        self._log = logger
        self._slots = asyncio.Semaphore(max_concurrency)
        self._log_hits = logger.is_enabled_for(logging.DEBUG)
        self._tasks: set[asyncio.Task[ProviderItem]] = set()

    async def answer(
        self, keys: list[str], policies: PolicySet, deadline_at: float
    ) -> list[ProviderItem]:
        """One item per distinct key, in first-seen order; raises :class:`AllUndecided`."""
        begun = time.perf_counter()
        unique = list(dict.fromkeys(keys))
        answered: dict[str, ProviderItem] = {}
        pending: dict[asyncio.Task[ProviderItem], str] = {}
        for key in unique:
            namespace, image = split_key(key)
            policy = policies.for_namespace(namespace)
            started = time.perf_counter()
            try:
                verdict = self._verifier.cached(image, policy=policy)
            except InvalidReference as error:
                answered[key] = self._invalid(key, image, namespace, error)
                continue
            if verdict is not None:
                answered[key] = self._record(
                    key, namespace, verdict, time.perf_counter() - started, cold=False
                )
                continue
            task = asyncio.create_task(self._verify(key, namespace, image, policy))
            pending[task] = key
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if pending:
            remaining = deadline_at - asyncio.get_running_loop().time()
            done, late = await asyncio.wait(pending, timeout=max(remaining, 0.0))
            for task in done:
                answered[pending[task]] = task.result()
            for task in late:
                task.cancel()
            waited = time.perf_counter() - begun
            if late and len(late) == len(unique):
                self._count_late((pending[t] for t in late), waited)
                raise AllUndecided("no image could be verified within the deadline")
            for task in late:
                answered[pending[task]] = self._late(pending[task], waited)
        return [answered[key] for key in unique]

    async def _verify(
        self, key: str, namespace: str | None, image: str, policy: TrustPolicy
    ) -> ProviderItem:
        """Never raises: an unexpected error becomes an item error (no key goes unanswered)."""
        flag = WorkFlag()
        CURRENT_WORK.set(flag)  # this task's own context: cache misses below mark it
        try:
            async with self._slots:
                self._metrics.inflight.inc()
                started = time.perf_counter()
                try:
                    verdict = await self._verifier.verify(image, policy=policy)
                finally:
                    self._metrics.inflight.dec()
                return self._record(
                    key, namespace, verdict, time.perf_counter() - started, cold=flag.cold
                )
        except InvalidReference as error:
            return self._invalid(key, image, namespace, error)
        except Exception as error:
            self._log.exception("verification crashed", image=image, namespace=namespace)
            self._metrics.observe_verification(Outcome.ERROR, 0.0)
            self._metrics.key_counters["undecided"].inc()
            return error_item(key, f"{UNDECIDED_PREFIX}internal error ({type(error).__name__})")

    def _record(
        self,
        key: str,
        namespace: str | None,
        verdict: Verdict,
        seconds: float,
        *,
        cold: bool,
    ) -> ProviderItem:
        metrics = self._metrics
        metrics.observe_verification(verdict.outcome, seconds)
        item = verdict_item(key, verdict)
        if verdict.allowed:
            metrics.key_counters["admitted"].inc()
        elif verdict.outcome is Outcome.ERROR:
            metrics.key_counters["undecided"].inc()
        else:
            metrics.key_counters["denied"].inc()
        # Admissions served from the cache are logged at debug: at thousands of verdicts per
        # second one JSON line each would cost more than the verdict. Every verification that did
        # work, and every image not admitted, is logged at info.
        loud = cold or not verdict.allowed
        if loud or self._log_hits:
            (self._log.info if loud else self._log.debug)(
                "verification",
                image=verdict.image,
                namespace=namespace,
                did=item["value"]["did"] if "value" in item else _first_did(verdict),
                duration=round(seconds, 6),
                error=item.get("error"),
                result=verdict.outcome.value,
                allowed=verdict.allowed,
                policy=verdict.policy,
                digest=verdict.digest,
                cached=not cold,
            )
        return item

    def _invalid(
        self, key: str, image: str, namespace: str | None, error: InvalidReference
    ) -> ProviderItem:
        message = f"invalid image reference: {error.reason}"
        self._metrics.key_counters["denied"].inc()
        self._log.info(
            "verification",
            image=image[:300],
            namespace=namespace,
            did=None,
            duration=0.0,
            error=message,
            result="invalid",
            allowed=False,
        )
        return error_item(key, message)

    def _late(self, key: str, seconds: float) -> ProviderItem:
        self._count_late((key,), seconds)
        return error_item(key, DEADLINE_ERROR)

    def _count_late(self, keys: Iterable[str], seconds: float) -> None:
        for key in keys:
            namespace, image = split_key(key)
            self._metrics.observe_verification(Outcome.ERROR, seconds)
            self._metrics.key_counters["undecided"].inc()
            self._log.warning(
                "verification",
                image=image[:300],
                namespace=namespace,
                did=None,
                duration=round(seconds, 6),
                error=DEADLINE_ERROR,
                result="error",
                allowed=False,
            )

    async def aclose(self) -> None:
        """Cancel verifications still running (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _first_did(verdict: Verdict) -> str | None:
    """For a denial, the signer the evidence names (trusted or not), to say who it was."""
    return next((s.did for s in verdict.signatures if s.did), None)
