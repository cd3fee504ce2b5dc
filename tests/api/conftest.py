"""Fixtures of the API tests: a real app on a real socket over the real database (``pool`` from
tests/support/db.py), an API key made through the store, and a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivrpay import store
from ivrpay.api.app import init_app
from ivrpay.config import Settings


class Clock:
    """ "now" for the app and the store: moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
async def api_key(pool: Any) -> str:
    _client, key, _secret = await store.create_api_client(pool, "core system")
    return key


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client(
    pool: Any, database_url: str, clock: Clock, settings: Settings
) -> AsyncIterator[MakeClient]:
    """Start an app (real socket) on the test database; extra keywords go to ``init_app``."""
    clients: list[TestClient] = []

    async def make(**kw: Any) -> TestClient:
        kw.setdefault("pool", pool)
        kw.setdefault("database_url", database_url)
        kw.setdefault("clock", clock)
        app: web.Application = init_app(kw.pop("settings", settings), **kw)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in reversed(clients):
        await c.close()


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()


def body(**overrides: Any) -> dict[str, Any]:
    """A valid create body."""
    return {"order_id": "ORD-1", "amount": 12000, "tax": 800, **overrides}
