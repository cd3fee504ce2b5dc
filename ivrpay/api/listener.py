"""The HTTP listener's bounds: header time, idle keep-alive, connections per address and in all.

aiohttp alone keeps a connection that never finishes its headers for its keep-alive timeout
(an hour by default) and admits as many connections as the process has descriptors, so a flood of
slow-header connections would take the descriptors the FastAGI calls need. Here:

- a new connection must finish its first request's headers within ``header_timeout_s``
  (then it gets ``408`` and is closed);
- a connection idle between requests (or dribbling the next request) is closed after ``idle_s``
  (aiohttp's keep-alive timeout, measured from the end of the last answer);
- at most ``max_per_address`` connections from one address and ``max_connections`` in all:
  one more is closed at once, before aiohttp sees it.

Answers that take long (an SSE stream) are not idle: only waiting for a request is bounded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from ivrpay.metrics import HTTP_CONNECTIONS_CLOSED

log = structlog.get_logger(__name__)

_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float = 10.0
    idle_s: float = 15.0
    max_connections: int = 1000
    max_per_address: int = 100


class Gate:
    """Open connections by address; counts what it refused and timed out (metrics, tests)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.by_address: Counter[str] = Counter()
        self.total = 0
        self.refused = 0
        self.timed_out = 0

    def admit(self, address: str) -> bool:
        lim = self.limits
        if self.total >= lim.max_connections or self.by_address[address] >= lim.max_per_address:
            if self.refused % 1000 == 0:  # one line per thousand: a flood must not flood the log
                log.warning(
                    "http.connection_refused",
                    address=address,
                    open=self.total,
                    from_address=self.by_address[address],
                    refused=self.refused + 1,
                )
            self.refused += 1
            HTTP_CONNECTIONS_CLOSED.labels("refused").inc()
            return False
        self.by_address[address] += 1
        self.total += 1
        return True

    def release(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the gate and the header deadline."""

    def __init__(self, gate: Gate, make_inner: Callable[[], Any]) -> None:
        self._gate = gate
        self._make_inner = make_inner
        self._inner: Any = None
        self._address: str | None = None
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        if not self._gate.admit(address):
            transport.abort()
            return
        self._address, self._transport = address, transport
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._gate.limits.header_timeout_s, self._too_slow)
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            self._gate.timed_out += 1
            HTTP_CONNECTIONS_CLOSED.labels("header_timeout").inc()
            self._transport.write(_TIMEOUT_ANSWER)
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._deadline is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:  # the first request's headers are complete
                self._deadline.cancel()
                self._deadline, self._tail = None, b""
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._address is not None:
            self._gate.release(self._address)
            self._address = None
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass :class:`Gate` first (see the module's notes)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: Gate) -> None:
        super().__init__(runner, host, port)
        self.gate = gate

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site (TCPSite.start would bind as well)
        server = self._runner.server
        assert server is not None
        gate = self.gate
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(gate, server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
