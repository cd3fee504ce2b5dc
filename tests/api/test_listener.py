"""The HTTP listener's bounds on real sockets: slow headers, idle keep-alive, connections per
address. (That a flood never takes FastAGI's descriptors: tests/e2e/test_http_flood.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from ivrpay.api.app import http_gate, start_http
from ivrpay.api.listener import Gate, Limits
from ivrpay.config import Settings
from ivrpay.metrics import HTTP_CONNECTIONS_CLOSED
from ivrpay.service import http_limits

Serve = Callable[[Limits], Awaitable[tuple[int, Gate]]]
PARTIAL = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: "


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def ping(_request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def start(limits: Limits) -> tuple[int, Gate]:
        app = web.Application()
        app.router.add_get("/ping", ping)
        runner = await start_http(app, "127.0.0.1", 0, shutdown_timeout=0.1, limits=limits)
        runners.append(runner)
        return int(runner.addresses[0][1]), http_gate(runner)

    yield start
    for r in runners:
        await r.cleanup()


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed; a connection refused at once is reset (RST)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def _open(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def test_slow_header_connections_are_closed_after_the_bound(serve: Serve) -> None:
    port, gate = await serve(Limits(header_timeout_s=0.5, idle_s=60, max_per_address=1000))
    timed_out = HTTP_CONNECTIONS_CLOSED.labels("header_timeout")
    before = timed_out._value.get()
    n = 200
    t0 = time.monotonic()
    conns = [await _open(port, PARTIAL) for _ in range(n)]
    async with asyncio.timeout(30):
        answers = await asyncio.gather(*(read_all(r) for r, _ in conns))
    elapsed = time.monotonic() - t0
    print(f"{n} slow-header connections closed {elapsed:.2f} s after opening (bound 0.5 s)")
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers)
    assert gate.timed_out == n and gate.total == 0
    assert timed_out._value.get() == before + n  # ivrpay_http_connections_closed_total
    for _, w in conns:
        w.close()
    # A request that is whole in time is answered as before.
    reader, writer = await _open(
        port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert (await reader.read()).endswith(b"pong")
    writer.close()


async def test_headers_split_over_packets_are_fine(serve: Serve) -> None:
    port, gate = await serve(Limits(header_timeout_s=0.5, idle_s=60))
    reader, writer = await _open(port, b"GET /ping HTTP/1.1\r\nHost: x\r\n")
    writer.write(b"Connection: close\r\n\r")
    await writer.drain()
    writer.write(b"\n")  # the end of the headers split across two packets
    async with asyncio.timeout(10):
        assert (await reader.read()).endswith(b"pong")
    writer.close()
    assert gate.timed_out == 0


async def test_an_idle_keep_alive_connection_is_closed(serve: Serve) -> None:
    port, gate = await serve(Limits(header_timeout_s=60, idle_s=0.5))
    reader, writer = await _open(port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(10):
        await reader.readuntil(b"pong")
        # Kept alive, then idle (a next request begun and never finished is idle too).
        writer.write(PARTIAL)
        assert await reader.read() == b""
    writer.close()
    assert gate.total == 0


async def test_connections_per_address_are_bounded(serve: Serve) -> None:
    port, gate = await serve(Limits(header_timeout_s=60, idle_s=60, max_per_address=5))
    held = [await _open(port, PARTIAL) for _ in range(5)]
    reader, writer = await _open(port, PARTIAL)
    async with asyncio.timeout(10):
        assert await read_all(reader) == b""  # the sixth: closed at once
        writer.close()
        assert gate.refused == 1 and gate.total == 5
        # The five held are open: one finishes its request and is answered.
        r0, w0 = held[0]
        w0.write(b"x\r\nConnection: close\r\n\r\n")
        assert (await r0.read()).endswith(b"pong")
    for _, w in held:
        w.close()


def test_http_never_takes_the_calls_descriptors() -> None:
    s = Settings(max_calls=500)
    assert http_limits(s, nofile=1_000_000).max_connections == 1000
    capped = http_limits(s, nofile=2048)
    # 2048 descriptors: 2 × (500 calls + 50 turned away) + pool + reserve first, HTTP gets the rest.
    assert capped.max_connections == 2048 - 2 * 550 - 20 - 64
    assert capped.max_per_address <= capped.max_connections
