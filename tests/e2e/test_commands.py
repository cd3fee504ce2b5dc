"""The ``ivrpay`` command as a user runs it: separate processes, real ports, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from ivrpay.sandbox.server import Sandbox
from ivrpay.simulator import SimulatedCall


def _env(database_url: str, sandbox: Sandbox, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVRPAY_")}
    env.update(
        IVRPAY_DATABASE_URL=database_url,
        IVRPAY_GATEWAY_URL=sandbox.url,
        IVRPAY_SHOP_ID="tshop00000001",
        IVRPAY_SHOP_PASS="pass",
        IVRPAY_SITE_ID="tsite00000001",
        IVRPAY_SITE_PASS="pass",
        IVRPAY_SECRET_KEY="test-secret",
        IVRPAY_LOG_FORMAT="json",
        IVRPAY_AGI_LISTEN="127.0.0.1:0",
        IVRPAY_HTTP_LISTEN="127.0.0.1:0",
        IVRPAY_GATEWAY_TIMEOUT_S="2",
        IVRPAY_DRAIN_S="20",
    )
    env.update(extra)
    return env


async def _ivrpay(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    agi_port: int
    http_port: int
    log: list[dict[str, Any]]

    async def next_event(self, name: str) -> dict[str, Any]:
        assert self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            assert line, f"the server ended before logging {name}"
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.log.append(event)
            if event.get("event") == name:
                return event


@asynccontextmanager
async def serve_process(env: dict[str, str], **popen: Any) -> AsyncIterator[Server]:
    """``ivrpay serve`` in its own process, started (its ports read from its log), killed after.
    ``popen``: more arguments for the process (a ``preexec_fn`` that lowers its limits)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        "serve",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        **popen,
    )
    server = Server(proc, 0, 0, [])
    try:
        async with asyncio.timeout(60):
            started = await server.next_event("ivrpay.started")
        server.agi_port = int(started["agi"].rsplit(":", 1)[1])
        server.http_port = int(started["http"].rsplit(":", 1)[1])
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def served(database_url: str, pool: asyncpg.Pool, sandbox: Sandbox) -> AsyncIterator[Server]:
    async with serve_process(_env(database_url, sandbox)) as server:
        yield server


async def test_serve_finishes_the_call_in_flight_on_sigterm_then_exits(
    served: Server, database_url: str, sandbox: Sandbox
) -> None:
    rc, out, _err = await _ivrpay(_env(database_url, sandbox), "apikey", "create", "core")
    assert rc == 0
    key = out.splitlines()[0]
    base = f"http://127.0.0.1:{served.http_port}/api/v1"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async with http.post(f"{base}/payments", json={"order_id": "sig-1", "amount": 500}) as r:
            assert r.status == 201
            payment = await r.json()

        call = SimulatedCall(
            "127.0.0.1",
            served.agi_port,
            args=(payment["code"], ""),
            keys=["4111111111111111#", "1230", "123", "1"],
            language="en",
        )
        waiting = call.pause_at("SET MUSIC ON")  # the gateway is about to be called
        await call.start()
        await waiting.reached()
        served.proc.send_signal(signal.SIGTERM)
        await served.next_event("fastagi draining")
        # A load balancer is told at once to send no more (the call in flight goes on).
        async with http.get(f"http://127.0.0.1:{served.http_port}/healthz") as r:
            assert r.status == 503 and (await r.json())["status"] == "draining"
        # No new calls once draining has begun.
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", served.agi_port)
        waiting.release()
        record = await call.wait()
        assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED"
        async with asyncio.timeout(30):
            await served.next_event("ivrpay.stopped")
            assert await served.proc.wait() == 0
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.fetchval("SELECT status FROM payments WHERE order_id = 'sig-1'")
    finally:
        await conn.close()
    assert status == "succeeded"


async def test_migrate_is_idempotent_and_users_and_keys_are_created(
    database_url: str, pool: asyncpg.Pool, sandbox: Sandbox
) -> None:
    env = _env(database_url, sandbox)
    rc, out, _ = await _ivrpay(env, "migrate")
    assert rc == 0 and "up to date" in out
    rc, out, _ = await _ivrpay(env, "apikey", "create", "crm", "--webhook", "https://crm.example/h")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 2 and lines[0] != lines[1]
    rc, out, _ = await _ivrpay(
        env, "user", "add", "sato", "--role", "operator", "--password-stdin", stdin=b"s3cret-pass\n"
    )
    assert rc == 0, out
    rc, _, err = await _ivrpay(
        env, "user", "add", "sato", "--role", "operator", "--password-stdin", stdin=b"s3cret-pass\n"
    )
    assert rc == 1 and "exists" in err


async def test_a_bad_setting_stops_start_up_with_one_line(
    database_url: str, sandbox: Sandbox
) -> None:
    env = _env(database_url, sandbox, IVRPAY_MAX_CALLS="many")
    rc, _, err = await _ivrpay(env, "serve")
    assert rc == 2
    assert err.strip().splitlines() == ["ivrpay: IVRPAY_MAX_CALLS: 'many' is not a whole number"]


async def test_serve_refuses_to_start_without_its_prompts(
    database_url: str, sandbox: Sandbox, tmp_path: Any
) -> None:
    env = _env(database_url, sandbox, IVRPAY_SOUNDS_DIR=str(tmp_path))
    (tmp_path / "prompts.csv").write_text("id,ja,en\n", encoding="utf-8")
    rc, _, err = await _ivrpay(env, "serve")
    assert rc == 2
    assert "prompt file missing" in err and "welcome.wav" in err
