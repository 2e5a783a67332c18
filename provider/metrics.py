"""Prometheus metrics, in a registry owned by one application (never the global one).

The seed documents fix five names, kept exactly and label-free except ``result``:
``atcr_verifications_total{result="verified|failed|error"}``,
``atcr_verification_duration_seconds``, ``atcr_did_resolutions_total{result="success|failure"}``,
``atcr_cache_hits_total`` and ``atcr_cache_misses_total``. Everything else is prefixed
``atcr_provider_`` or ``atcr_policy_``.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from atcr_verify import Outcome, VerifierObserver

VERIFICATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    1.5,
    2.0,
    2.5,
    3.0,
    5.0,
)
"""1 ms to 3 s is where admission decisions live; a cache hit lands in the first bucket."""

KEY_RESULTS = ("admitted", "denied", "undecided")
REQUEST_OUTCOMES = (
    "ok",
    "bad_request",
    "too_large",
    "slow_body",
    "not_ready",
    "undecided",
    "deadline",
    "internal_error",
)


@dataclass(slots=True)
class WorkFlag:
    """Set when a cache missed while verifying one key: the key cost real work."""

    cold: bool = False


CURRENT_WORK: contextvars.ContextVar[WorkFlag | None] = contextvars.ContextVar(
    "atcr_provider_work", default=None
)
"""Each verification task sets its own flag; cache misses in that task (or in loads it starts)
mark it, so logging can tell a cache hit from real work without the core knowing about logs."""


class ProviderMetrics:
    """Every metric the provider exports, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.verifications = Counter(
            "atcr_verifications",
            "Image verifications answered, by outcome (skipped images are not counted).",
            ["result"],
            registry=r,
        )
        self.verification_duration = Histogram(
            "atcr_verification_duration_seconds",
            "Time to decide one image (cache hits included).",
            buckets=VERIFICATION_BUCKETS,
            registry=r,
        )
        self.did_resolutions = Counter(
            "atcr_did_resolutions",
            "DID document resolutions, by result.",
            ["result"],
            registry=r,
        )
        self.cache_hits = Counter(
            "atcr_cache_hits", "Verifier cache hits (verdicts, DIDs, tags).", registry=r
        )
        self.cache_misses = Counter(
            "atcr_cache_misses", "Verifier cache misses (verdicts, DIDs, tags).", registry=r
        )
        self.cache_stale = Counter(
            "atcr_provider_cache_stale_served",
            "Stale DID documents served because refreshing them failed.",
            registry=r,
        )
        self.requests = Counter(
            "atcr_provider_requests",
            "ProviderRequests answered, by outcome (ok, or why a systemError was returned).",
            ["outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "atcr_provider_request_duration_seconds",
            "Time to answer one ProviderRequest.",
            buckets=VERIFICATION_BUCKETS,
            registry=r,
        )
        self.keys = Counter(
            "atcr_provider_keys",
            "Distinct keys answered: admitted (a value), denied or undecided (an item error).",
            ["result"],
            registry=r,
        )
        self.inflight = Gauge(
            "atcr_provider_inflight_verifications",
            "Cold verifications running now (bounded by --max-concurrency).",
            registry=r,
        )
        self.policy_reloads = Counter(
            "atcr_policy_reload",
            "Policy loads, by result; a failure keeps the previous policy.",
            ["result"],
            registry=r,
        )
        self.policy_last_success = Gauge(
            "atcr_policy_last_reload_success_timestamp_seconds",
            "When a policy was last loaded successfully (Unix time).",
            registry=r,
        )
        self.policy_info = Gauge(
            "atcr_policy_info",
            "The policies in force: namespace is empty for the default policy.",
            ["namespace", "fingerprint"],
            registry=r,
        )
        self.policy_loaded = Gauge(
            "atcr_policy_loaded", "1 once a trust policy is loaded (readiness).", registry=r
        )
        self.policy_watch_restarts = Counter(
            "atcr_policy_watch_restarts",
            "ConfigMap watch reconnections after an error (the last policy stays in force).",
            registry=r,
        )
        self.tls_reloads = Counter(
            "atcr_provider_tls_reload",
            "Certificate reloads, by result; a failure keeps the previous certificate.",
            ["result"],
            registry=r,
        )
        self.tls_expiry = Gauge(
            "atcr_provider_tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate (Unix time).",
            registry=r,
        )
        # Children bound once: the per-key path must not look labels up.
        self.result_counters = {
            outcome: self.verifications.labels(outcome.value)
            for outcome in (Outcome.VERIFIED, Outcome.FAILED, Outcome.ERROR)
        }
        self.key_counters = {name: self.keys.labels(name) for name in KEY_RESULTS}
        self.request_counters = {name: self.requests.labels(name) for name in REQUEST_OUTCOMES}
        for result in ("success", "failure"):
            self.did_resolutions.labels(result)
            self.policy_reloads.labels(result)
            self.tls_reloads.labels(result)

    def observe_verification(self, outcome: Outcome, seconds: float) -> None:
        counter = self.result_counters.get(outcome)
        if counter is None:  # skipped: nothing was verified
            return
        counter.inc()
        self.verification_duration.observe(seconds)


class MetricsObserver(VerifierObserver):
    """The core's cache and DID events, turned into the seed metrics."""

    def __init__(self, metrics: ProviderMetrics) -> None:
        self._hits = metrics.cache_hits
        self._misses = metrics.cache_misses
        self._stale = metrics.cache_stale
        self._did_ok = metrics.did_resolutions.labels("success")
        self._did_failed = metrics.did_resolutions.labels("failure")

    def hit(self, cache: str) -> None:
        self._hits.inc()

    def miss(self, cache: str) -> None:
        self._misses.inc()
        flag = CURRENT_WORK.get()
        if flag is not None:
            flag.cold = True

    def stale(self, cache: str) -> None:
        self._stale.inc()

    def did_resolution(self, success: bool) -> None:
        (self._did_ok if success else self._did_failed).inc()
