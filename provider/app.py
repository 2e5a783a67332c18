"""The aiohttp application: routes, per-app state under ``web.AppKey``s, lifetimes in
``cleanup_ctx``, and :func:`serve`, which listens on the HTTPS and the plain health port.

One application serves both ports; handlers check ``request.secure`` so ``/validate`` is never
answered over plain HTTP and ``/readyz`` and ``/metrics`` stay on the health port. Nothing here
runs at import: the verifier, the policy source and the certificate reloader start with the
application and stop with it.

HTTP status of a ProviderResponse (Gatekeeper hands it to Rego as ``status_code`` but decides
nothing on it; the body is what counts): 200 for every answered request, per-key errors
included; 400 malformed request; 413 body over the limit; 408 body not received within the
deadline; 503 no policy loaded yet; 504 not a single key answered within the deadline. Every
non-200 answer still carries a JSON ``systemError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TextIO

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from structlog.typing import FilteringBoundLogger

from atcr_verify import TrustPolicy, Verifier, VerifierObserver, VerifierSettings, load_policy

from .kube import ConfigMapPolicySource
from .logs import make_logger
from .metrics import MetricsObserver, ProviderMetrics
from .policies import FilePolicySource, PolicyKeys, PolicySet, PolicyStore
from .reload import poll
from .service import AllUndecided, Validator, VerdictSource
from .settings import ProviderSettings
from .tls import ReloadingServerContext, TlsFiles
from .wire import RequestError, encode, parse_request, response, undecided_system_error

VerifierFactory = Callable[[VerifierSettings, VerifierObserver], VerdictSource]
"""Builds the verifier; tests pass doubles. Whatever it returns is closed if it has ``aclose``."""

SETTINGS = web.AppKey("settings", ProviderSettings)
METRICS = web.AppKey("metrics", ProviderMetrics)
LOGGER: web.AppKey[FilteringBoundLogger] = web.AppKey("logger")
POLICIES = web.AppKey("policies", PolicyStore)
TLS = web.AppKey("tls", ReloadingServerContext)
VALIDATOR = web.AppKey("validator", Validator)
VERIFIER_FACTORY: web.AppKey[VerifierFactory] = web.AppKey("verifier_factory")
CONFIGMAP_SOURCE = web.AppKey("configmap_source", ConfigMapPolicySource)

_NO_POLICY_YET = "version: 1.0\ndefaultAction: deny\n"
_JSON = "application/json"


def default_verifier(settings: VerifierSettings, observer: VerifierObserver) -> VerdictSource:
    # The Verifier wants a policy; the provider passes one on every call, so this deny-all
    # placeholder never decides anything.
    placeholder: TrustPolicy = load_policy(_NO_POLICY_YET, source="<no policy loaded yet>")
    return Verifier(placeholder, settings, observer=observer)


def create_app(
    settings: ProviderSettings,
    *,
    log_stream: TextIO | None = None,
    verifier_factory: VerifierFactory = default_verifier,
    metrics: ProviderMetrics | None = None,
) -> web.Application:
    """A fresh application: its own metrics registry, logger, policy store and lifetimes."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    logger = make_logger(settings.log_level, log_stream)
    app_metrics = metrics if metrics is not None else ProviderMetrics()
    app[SETTINGS] = settings
    app[LOGGER] = logger
    app[METRICS] = app_metrics
    app[POLICIES] = PolicyStore(PolicyKeys(settings.policy_key), app_metrics, logger)
    app[VERIFIER_FACTORY] = verifier_factory
    app.cleanup_ctx.extend((_tls_lifetime, _verifier_lifetime, _policy_lifetime))
    app.router.add_post("/validate", validate)
    app.router.add_post("/", validate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


# --- lifetimes ------------------------------------------------------------------------------


async def _tls_lifetime(app: web.Application) -> AsyncIterator[None]:
    """Load the serving certificate (a startup failure if unusable) and poll it for rotation."""
    settings = app[SETTINGS]
    files = TlsFiles(settings.tls_cert, settings.tls_key, settings.client_ca)
    app[TLS] = ReloadingServerContext(files, app[METRICS], app[LOGGER])
    task = asyncio.create_task(poll(settings.reload_interval, app[TLS].check, app[LOGGER]))
    yield
    await _cancel(task)


async def _verifier_lifetime(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    verifier = app[VERIFIER_FACTORY](settings.verifier, MetricsObserver(app[METRICS]))
    app[VALIDATOR] = Validator(
        verifier, app[METRICS], app[LOGGER], max_concurrency=settings.max_concurrency
    )
    yield
    await app[VALIDATOR].aclose()
    close = getattr(verifier, "aclose", None)
    if close is not None:
        await close()


async def _policy_lifetime(app: web.Application) -> AsyncIterator[None]:
    """Start the policy source; the app is live (and not ready) until a policy loads."""
    settings = app[SETTINGS]
    store = app[POLICIES]
    if settings.policy_file is not None:
        source = FilePolicySource(settings.policy_file, store)
        source.check()  # synchronously: a valid file makes the app ready as it starts
        task = asyncio.create_task(poll(settings.reload_interval, source.check, app[LOGGER]))
    else:
        assert settings.policy_configmap is not None
        watcher = ConfigMapPolicySource(
            settings.policy_configmap,
            store,
            app[METRICS],
            app[LOGGER],
            kubeconfig=settings.kubeconfig,
            watch_timeout=settings.watch_timeout,
        )
        app[CONFIGMAP_SOURCE] = watcher
        task = asyncio.create_task(watcher.run())
    yield
    await _cancel(task)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


# --- handlers -------------------------------------------------------------------------------


async def validate(request: web.Request) -> web.Response:
    """POST /validate (and POST /): a ProviderRequest in, a ProviderResponse out."""
    if not request.secure:
        raise web.HTTPNotFound()
    app = request.app
    metrics = app[METRICS]
    started = time.perf_counter()
    deadline_at = asyncio.get_running_loop().time() + app[SETTINGS].deadline
    outcome = "ok"
    status = 200
    try:
        keys = await _read_keys(request, deadline_at)
        items = await app[VALIDATOR].answer(keys, _policies_in_force(app), deadline_at)
        document = response(items, undecided_system_error(items))
        if document["response"]["systemError"]:
            outcome = "undecided"
    except RequestError as error:
        status = error.status
        outcome = _REFUSALS.get(status, "bad_request")
        document = response([], error.message)
    except AllUndecided as error:
        status, outcome = 504, "deadline"
        document = response([], str(error))
    except Exception:
        app[LOGGER].exception("request failed")
        status, outcome = 500, "internal_error"
        document = response([], "internal error in the provider (see its logs)")
    if outcome != "ok":
        app[LOGGER].warning(
            "request answered with a systemError",
            status=status,
            system_error=document["response"]["systemError"],
        )
    metrics.request_counters[outcome].inc()
    metrics.request_duration.observe(time.perf_counter() - started)
    return web.Response(body=encode(document), status=status, content_type=_JSON)


_REFUSALS = {413: "too_large", 408: "slow_body", 503: "not_ready"}


async def _read_keys(request: web.Request, deadline_at: float) -> list[str]:
    """The request's keys; the body is bounded in size and must arrive before the deadline."""
    settings = request.app[SETTINGS]
    try:
        async with asyncio.timeout_at(deadline_at):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(
            f"request body is larger than {settings.max_body_bytes} bytes", status=413
        ) from None
    except TimeoutError:
        raise RequestError(
            "request body was not received within the deadline", status=408
        ) from None
    return parse_request(body, max_keys=settings.max_keys, max_key_length=settings.max_key_length)


def _policies_in_force(app: web.Application) -> PolicySet:
    policies = app[POLICIES].current
    if policies is None:
        raise RequestError("the trust policy is not loaded yet", status=503)
    return policies


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers. Both ports."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready only once a trust policy is loaded (health port)."""
    if request.secure:
        raise web.HTTPNotFound()
    store = request.app[POLICIES]
    policies = store.current
    if policies is None:
        return web.json_response(
            {"status": "not ready", "reason": store.last_error or "no trust policy loaded yet"},
            status=503,
        )
    return web.json_response(
        {
            "status": "ready",
            "policy": policies.fingerprint,
            "origin": policies.origin,
            "namespaces": sorted(policies.namespaces),
            "lastError": store.last_error,
        }
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text exposition of this app's registry (health port)."""
    if request.secure:
        raise web.HTTPNotFound()
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# --- serving --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningProvider:
    app: web.Application
    runner: web.AppRunner
    https_port: int
    health_port: int


@asynccontextmanager
async def serve(
    settings: ProviderSettings, app: web.Application | None = None
) -> AsyncIterator[RunningProvider]:
    """Start ``app`` (or a new one) on the HTTPS and health addresses; stop it on exit."""
    app = app if app is not None else create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        https = web.TCPSite(
            runner,
            settings.listen.host,
            settings.listen.port,
            ssl_context=app[TLS].server_context,
            backlog=1024,
        )
        await https.start()
        health = web.TCPSite(runner, settings.health_listen.host, settings.health_listen.port)
        await health.start()
        running = RunningProvider(app, runner, https.port, health.port)
        app[LOGGER].info(
            "provider listening",
            https=f"{settings.listen.host}:{https.port}",
            health=f"{settings.health_listen.host}:{health.port}",
            mtls=settings.client_ca is not None,
            deadline=settings.deadline,
        )
        yield running
    finally:
        await runner.cleanup()
