"""Operations endpoints: ``/healthz``, ``/metrics`` and the OpenAPI document."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from ivrpay.api.middleware import public
from ivrpay.api.render import json_response
from ivrpay.metrics import CONTENT_TYPE, WEBHOOK_BACKLOG, generate_latest

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT_S = 2.0


@public
async def openapi_document(request: web.Request) -> web.Response:
    return json_response(request.config_dict[keys.OPENAPI])


async def _database(pool: Any) -> dict[str, str]:
    try:
        # A real round trip through the store's own query (a bare connection proves nothing).
        await asyncio.wait_for(
            store.list_payments(pool, now=datetime.now(UTC), limit=1), HEALTH_TIMEOUT_S
        )
    except Exception as exc:
        log.warning("api.health_database_failed", error=type(exc).__name__)
        return {"status": "fail", "detail": type(exc).__name__}
    return {"status": "ok"}


async def _optional_part(part: Any, what: str) -> dict[str, str]:
    """A part that may be absent: ``disabled`` when not configured; otherwise its own ``health()``
    (sync or async, truthy = ok) or, failing that, a ``connected`` flag if it keeps one."""
    if part is None:
        return {"status": "disabled"}
    check = getattr(part, "health", None)
    try:
        if callable(check):
            value = check()
            if inspect.isawaitable(value):
                value = await asyncio.wait_for(value, HEALTH_TIMEOUT_S)
            if isinstance(value, dict):  # the part's own verdict (the gateway's probe)
                return {str(k): str(v) for k, v in value.items()}
            ok = bool(value)
        elif hasattr(part, "connected"):
            ok = bool(part.connected)
        else:
            return {"status": "ok", "detail": "configured"}
    except Exception as exc:
        log.warning("api.health_part_failed", part=what, error=type(exc).__name__)
        return {"status": "fail", "detail": type(exc).__name__}
    return {"status": "ok"} if ok else {"status": "fail"}


async def _ami_part(ami: Any) -> dict[str, Any]:
    """The AMI link's own words, ``ok`` | ``down`` (since, detail) | ``disabled`` (issue 11)."""
    status = getattr(ami, "status", None)
    if ami is not None and callable(status):
        return dict(status())
    return await _optional_part(ami, "ami")


async def healthz(request: web.Request) -> web.Response:
    cfg = request.config_dict
    database, gateway, ami = await asyncio.gather(
        _database(cfg[keys.POOL]),
        _optional_part(cfg.get(keys.GATEWAY), "gateway"),
        _ami_part(cfg.get(keys.AMI)),
    )
    checks = {"database": database, "gateway": gateway, "ami": ami}
    if cfg[keys.DRAINING].is_set():
        # After SIGTERM: calls in flight finish, but a load balancer must send no more.
        overall = "draining"
    elif database["status"] != "ok":
        overall = "fail"
    elif any(c["status"] in ("fail", "down") for c in checks.values()):
        overall = "degraded"
    else:
        overall = "ok"
    return json_response(
        {"status": overall, "checks": checks},
        status=503 if overall in ("fail", "draining") else 200,
    )


async def metrics(request: web.Request) -> web.Response:
    await _refresh_webhook_backlog(request.config_dict[keys.POOL])
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE})


async def _refresh_webhook_backlog(pool: Any) -> None:
    """The backlog is a fact of the database (every process shares it), read at scrape time.
    A failing database must not fail the scrape (the gauge keeps its last value): the other
    metrics matter most exactly then."""
    try:
        backlog = await asyncio.wait_for(store.count_webhook_backlog(pool), HEALTH_TIMEOUT_S)
        WEBHOOK_BACKLOG.set(backlog)
    except Exception as exc:
        log.warning("api.metrics_backlog_failed", error=type(exc).__name__)
