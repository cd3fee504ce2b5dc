"""The API while the database is away (issue 13.5): 503 database-unavailable, never 500, and no
traceback logged as if it were a bug — whether new connections are refused, open ones were killed
or asyncpg's protocol was left in an internal error by a killed connection."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivrpay.api.middleware import problem_middleware
from ivrpay.store.db import create_pool
from tests.api.conftest import MakeClient
from tests.payments.test_process import APP
from tests.support.db import with_server_setting
from tests.support.gateway import LogCapture
from tests.workers.test_outage import database_away, database_back, logged


async def test_the_api_answers_503_while_the_database_is_away(
    make_client: MakeClient,
    database_url: str,
    pool: asyncpg.Pool,
    auth: dict[str, str],
    card_safe_logs: LogCapture,
) -> None:
    own = await create_pool(with_server_setting(database_url, "application_name", APP), min_size=1)
    try:
        client = await make_client(pool=own)
        assert (await client.get("/api/v1/payments", headers=auth)).status == 200
        admin = await database_away(database_url, pool)
        try:
            for path in ("/api/v1/payments", "/api/v1/payments?order_id=x"):
                r = await client.get(path, headers=auth)
                assert r.status == 503, await r.text()
                problem = await r.json()
                assert problem["type"].endswith("database-unavailable"), problem
            assert (await client.get("/healthz")).status == 503
        finally:
            await database_back(pool, admin)
        assert (await client.get("/api/v1/payments", headers=auth)).status == 200
    finally:
        own.terminate()
    assert len(logged(card_safe_logs, "api.database_unavailable")) == 2
    assert logged(card_safe_logs, "api.unhandled_error") == []
    assert "Traceback" not in card_safe_logs.rendered


async def test_an_internal_client_error_after_a_killed_connection_is_503() -> None:
    async def broken(_request: web.Request) -> web.Response:
        # What asyncpg raises when a query meets a connection killed under it.
        raise asyncpg.exceptions.InternalClientError("cannot switch to state 15")

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/x", broken)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/x")
        assert r.status == 503
        assert (await r.json())["type"].endswith("database-unavailable")
