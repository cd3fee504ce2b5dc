"""The HTTP application factory: the JSON API under ``/api/v1``, ``/healthz`` and ``/metrics``.

``/`` and everything outside those stays free for the operator/admin screen, which mounts itself on
the same root application later. The API is a sub-application, so its middlewares (problem+json,
API keys, metrics) apply to ``/api/v1`` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.api import events, keys, listenin, ops, payments, takeback
from ivrpay.api.listener import Gate, GuardedSite, Limits
from ivrpay.api.middleware import auth_middleware, metrics_middleware, problem_middleware
from ivrpay.api.openapi import API_PREFIX, build_openapi
from ivrpay.config import Settings
from ivrpay.payments import PaymentProcess

log = structlog.get_logger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def init_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    gateway: Any = None,
    ami: Any = None,
    listener: Any = None,
    database_url: str | None = None,
    clock: Callable[[], datetime] | None = None,
    sse_keepalive_s: float = 15.0,
    payments_process: PaymentProcess | None = None,
) -> web.Application:
    """Build the root application.

    ``pool``: the asyncpg pool (owned by the caller). ``gateway``: the gateway client for
    capture, void and refund, or ``None`` (those answer 503); ``payments_process``: the process's
    :class:`~ivrpay.payments.PaymentProcess` (else one is made over ``pool`` and ``gateway``).
    ``ami``: the take-back service (:class:`ivrpay.api.takeback.TakeBack`, started by the
    caller) or ``None`` (disabled).
    ``listener``: a started :class:`ivrpay.store.PaymentListener` shared by the process; without
    one, the application starts its own on ``database_url`` (or ``settings.database_url``) and
    closes it on cleanup; with neither, the events stream answers 503. ``clock``: "now" for
    decisions by time (tests control it).
    """
    app = web.Application()
    app[keys.SETTINGS] = settings
    app[keys.POOL] = pool
    app[keys.GATEWAY] = gateway
    app[keys.AMI] = ami
    if isinstance(ami, takeback.TakeBack):
        # A listen-in another process relayed (its link down) runs here with this app's parts.
        ami.jobs[listenin.JOB_KIND] = lambda row: listenin.run_job(app, row)
    app[keys.LISTENER] = keys.Slot(listener)
    app[keys.CLOCK] = clock or _utcnow
    app[keys.OPENAPI] = build_openapi(settings)
    app[keys.CLOSING] = asyncio.Event()
    app[keys.DRAINING] = asyncio.Event()
    app[keys.SSE_KEEPALIVE_S] = float(sse_keepalive_s)
    app[keys.PAYMENTS] = payments_process or PaymentProcess(
        pool, gateway, settings, clock=app[keys.CLOCK]
    )

    url = database_url or settings.database_url
    if listener is None and url is not None:
        app.cleanup_ctx.append(_own_listener(url))
    app.on_shutdown.append(_end_streams)

    api = web.Application(middlewares=[metrics_middleware, problem_middleware, auth_middleware])
    api.router.add_routes(payments.routes)
    api.router.add_routes(events.routes)
    api.router.add_routes(takeback.routes)
    api.router.add_routes(listenin.routes)
    api.router.add_get("/openapi.json", ops.openapi_document)
    app.add_subapp(API_PREFIX, api)

    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/metrics", ops.metrics)
    return app


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 30.0,
    limits: Limits | None = None,
) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (0 = a free port; see ``runner.addresses``) within
    ``limits`` (header time, idle keep-alive, connections: :mod:`ivrpay.api.listener`). The caller
    ends it with ``await runner.cleanup()``, which ends open event streams at once."""
    limits = limits or Limits()
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=limits.idle_s,
    )
    await runner.setup()
    await GuardedSite(runner, host, port, Gate(limits)).start()
    log.info("http.listening", addresses=[f"{a[0]}:{a[1]}" for a in runner.addresses])
    return runner


def http_gate(runner: web.AppRunner) -> Gate:
    """The connection gate of a runner :func:`start_http` started."""
    site = next(s for s in runner.sites if isinstance(s, GuardedSite))
    return site.gate


def _own_listener(url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        listener = store.PaymentListener(url)
        await listener.start()
        app[keys.LISTENER].value = listener
        try:
            yield
        finally:
            app[keys.LISTENER].value = None
            await listener.close()

    return ctx


def begin_draining(app: web.Application) -> None:
    """From now on /healthz answers 503 ``draining`` (the API itself keeps answering)."""
    app[keys.DRAINING].set()


async def _end_streams(app: web.Application) -> None:
    app[keys.CLOSING].set()


def api_routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path) the application serves, for the OpenAPI completeness test."""
    out: list[tuple[str, str]] = []

    def walk(a: web.Application) -> None:
        for resource in a.router.resources():
            if isinstance(resource, web.PrefixedSubAppResource):
                walk(resource.get_info()["app"])
                continue
            for route in resource:
                if route.method in ("HEAD", "OPTIONS"):
                    continue
                out.append((route.method, resource.canonical))

    walk(app)
    return sorted(set(out))
