"""/healthz, /metrics and the OpenAPI document (valid 3.1, and exactly the served routes)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from ivrpay import store
from ivrpay.api.app import api_routes, begin_draining, init_app
from ivrpay.api.middleware import problem_middleware
from ivrpay.api.openapi import build_openapi
from ivrpay.config import Settings
from ivrpay.metrics import CALL_OUTCOMES, CALLS_IN_FLIGHT, GATEWAY_LATENCY
from ivrpay.sandbox.server import Sandbox
from tests.api.conftest import MakeClient, body
from tests.support.gateway import make_gateway_client


def test_openapi_is_valid_3_1() -> None:
    doc = build_openapi(Settings())
    errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert errors == []
    assert doc["openapi"] == "3.1.0"


def test_openapi_documents_every_route_and_no_other() -> None:
    app = init_app(Settings(), pool=None)  # type: ignore[arg-type]  # routes only, never started
    served = set(api_routes(app))
    doc = build_openapi(Settings())
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert ("GET", "/api/v1/payments/{id}/events") in served  # the list is not empty by accident


def test_openapi_follows_the_settings() -> None:
    s = Settings(languages=("en", "ja"), callback_pattern=r"^Local/\d+$")
    schemas = build_openapi(s)["components"]["schemas"]
    lang = schemas["PaymentCreate"]["properties"]["language"]
    assert lang["enum"][:2] == ["en", "ja"] and lang["default"] == "en"
    assert schemas["Operator"]["properties"]["callback"]["pattern"] == r"^Local/\d+$"


async def test_served_document_matches(client: TestClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status == 200 and await r.json() == build_openapi(Settings())


async def test_healthz(make_client: MakeClient, database_url: str) -> None:
    client = await make_client()
    r = await client.get("/healthz")
    assert r.status == 200
    assert await r.json() == {
        "status": "ok",
        "checks": {
            "database": {"status": "ok"},
            "gateway": {"status": "disabled"},
            "ami": {"status": "disabled"},
        },
    }


class _Ami:
    """A stand-in for the AMI manager's state, the one thing /healthz reads of it."""

    def __init__(self, connected: bool) -> None:
        self.connected = connected


async def test_healthz_degraded_and_failing(make_client: MakeClient, database_url: str) -> None:
    client = await make_client(ami=_Ami(connected=False))
    doc = await (await client.get("/healthz")).json()
    assert doc["status"] == "degraded" and doc["checks"]["ami"] == {"status": "fail"}

    # A database that is gone: 503, and the answer still says what failed.
    dead = await store.create_pool(database_url, min_size=1, max_size=1)
    await dead.close()
    client = await make_client(pool=dead)
    r = await client.get("/healthz")
    assert r.status == 503
    doc = await r.json()
    assert doc["status"] == "fail" and doc["checks"]["database"]["status"] == "fail"


async def test_healthz_checks_the_gateway_for_real(
    make_client: MakeClient, sandbox: Sandbox
) -> None:
    async with make_gateway_client(sandbox) as gateway:
        client = await make_client(gateway=gateway)
        r = await client.get("/healthz")
        assert r.status == 200
        assert (await r.json())["checks"]["gateway"] == {"status": "ok"}
        assert sandbox.state.requests["SearchTrade"] == 1
        # Down (here: answering HTTP 500) is said so, not "configured".
        gateway.probe.ttl_s = 0.0
        sandbox.add_fault("*", "http500")
        r = await client.get("/healthz")
        doc = await r.json()
        assert r.status == 200 and doc["status"] == "degraded"
        assert doc["checks"]["gateway"] == {
            "status": "fail",
            "detail": "unreadable answer: HTTP 500",
        }


async def test_healthz_says_draining_after_sigterm(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.get("/healthz")).status == 200
    begin_draining(client.server.app)
    r = await client.get("/healthz")
    assert r.status == 503
    doc = await r.json()
    assert doc["status"] == "draining" and doc["checks"]["database"] == {"status": "ok"}


async def test_metrics(client: TestClient, auth: dict[str, str]) -> None:
    await client.post("/api/v1/payments", json=body(), headers=auth)
    CALLS_IN_FLIGHT.inc()
    CALL_OUTCOMES.labels("SUCCEEDED").inc()
    GATEWAY_LATENCY.labels("ExecTran", "ok").observe(0.2)
    try:
        r = await client.get("/metrics")
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    finally:
        CALLS_IN_FLIGHT.dec()
    assert 'ivrpay_api_requests_total{method="POST",route="/api/v1/payments",status="201"}' in text
    for name in (
        "ivrpay_calls_in_flight",
        'ivrpay_call_outcomes_total{status="SUCCEEDED"}',
        'ivrpay_gateway_request_seconds_bucket{endpoint="ExecTran"',
        "ivrpay_webhook_backlog",
    ):
        assert name in text, name


async def test_database_down_is_a_503_problem(
    make_client: MakeClient, auth: dict[str, str], database_url: str
) -> None:
    dead = await store.create_pool(database_url, min_size=1, max_size=1)
    await dead.close()
    client = await make_client(pool=dead)
    r = await client.get("/api/v1/payments", headers=auth)
    assert r.status == 503 and r.content_type == "application/problem+json"
    assert (await r.json())["type"] == "urn:ivrpay:problem:database-unavailable"


async def test_unexpected_errors_are_bare_500_problems() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("4111111111111111 must never reach the client")

    api = web.Application(middlewares=[problem_middleware])
    api.router.add_get("/boom", broken)
    app = web.Application()
    app.add_subapp("/api/v1", api)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        r = await client.get("/api/v1/boom")
        text = await r.text()
    assert r.status == 500 and r.content_type == "application/problem+json"
    assert json.loads(text) == {
        "type": "urn:ivrpay:problem:internal",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "An internal error occurred.",
        "instance": "/api/v1/boom",
    }


async def test_the_webhook_backlog_is_read_from_the_database_at_scrape_time(
    make_client: MakeClient, pool: Any
) -> None:
    _c, key, _s = await store.create_api_client(pool, "hooked", "http://127.0.0.1:9/hook")
    auth = {"Authorization": f"Bearer {key}"}
    client = await make_client()
    r = await client.post("/api/v1/payments", json=body(), headers=auth)
    payment = await r.json()
    await client.post(f"/api/v1/payments/{payment['id']}/cancel", headers=auth)  # queues one
    text = await (await client.get("/metrics")).text()
    assert "ivrpay_webhook_backlog 1.0" in text
