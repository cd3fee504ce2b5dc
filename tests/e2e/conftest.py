"""A whole ivrpay service (FastAGI + HTTP + workers) on real sockets, the sandbox gateway over real
HTTP and real PostgreSQL; calls are placed through the Asterisk stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from ivrpay import store
from ivrpay.config import HostPort, Settings
from ivrpay.sandbox.server import Sandbox
from ivrpay.service import Service
from ivrpay.simulator import CallRecord, place_call


@dataclass
class Ivrpay:
    """The running service and what a test needs to drive it."""

    service: Service
    sandbox: Sandbox
    api_key: str
    http: aiohttp.ClientSession

    @property
    def settings(self) -> Settings:
        return self.service.settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self.service.db.pool

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}/api/v1"

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def create_payment(self, **fields: Any) -> dict[str, Any]:
        body = {"order_id": f"ord-{len(self.orders) + 1}", "amount": 12800, **fields}
        status, payment = await self.api("POST", "/payments", body)
        assert status == 201, payment
        self.orders.append(payment["order_id"])
        return payment

    async def payment(self, payment_id: str) -> dict[str, Any]:
        status, payment = await self.api("GET", f"/payments/{payment_id}")
        assert status == 200, payment
        return payment

    async def call(
        self, keys: list[str] | str, *, code: str = "", transferrer: str = "", **kw: Any
    ) -> CallRecord:
        kw.setdefault("sounds_dir", self.settings.sounds_dir)
        kw.setdefault("language", "en")
        return await place_call(
            "127.0.0.1",
            self.service.agi.port,
            args=(code, transferrer),
            keys=keys,
            **kw,
        )

    def __post_init__(self) -> None:
        self.orders: list[str] = []


def e2e_settings(database_url: str, **changes: Any) -> Settings:
    base = Settings.from_env({}).replace(
        database_url=database_url,
        agi_listen=HostPort("127.0.0.1", 0),
        http_listen=HostPort("127.0.0.1", 0),
        gateway_timeout_s=1.0,
        gateway_connect_timeout_s=1.0,
        digit_timeout_ms=3000,
        drain_s=2.0,
        worker_interval_s=0.2,
    )
    return base.replace(**changes)


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    """Settings a test module wants changed (override this fixture)."""
    return {}


@pytest.fixture
async def ivrpay(
    database_url: str,
    pool: asyncpg.Pool,  # empties every table first
    sandbox: Sandbox,
    tmp_path: Path,
    e2e_overrides: dict[str, Any],
) -> AsyncIterator[Ivrpay]:
    settings = e2e_settings(database_url, **e2e_overrides)
    service = Service(settings, var_dir=tmp_path, gateway_url=sandbox.url)
    await service.start()
    try:
        _client, api_key, _secret = await store.create_api_client(service.db.pool, "e2e")
        async with aiohttp.ClientSession() as http:
            yield Ivrpay(service, sandbox, api_key, http)
    finally:
        await service.stop()


# AMI timings for tests: reconnect at once, relay quickly.
FAST_AMI: dict[str, Any] = {
    "ami_backoff_s": (0.01,),
    "ami_relay_poll_s": 0.02,
    "ami_relay_wait_s": 5.0,
}


@pytest.fixture
async def second(ivrpay: Ivrpay, tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    """Another serve process on the same database, whose AMI link cannot come up (take-back and
    listen-in relayed to the process that has one)."""
    settings = e2e_settings(database_url, ami_url="ami://ivrpay:x@127.0.0.1:9", **FAST_AMI)
    service = Service(settings, var_dir=tmp_path / "second", gateway_url=ivrpay.sandbox.url)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
