"""The sandbox gateway's HTTP side: the protocol endpoints, latency, faults and the test routes.

``POST /payment/<Name>.idPass`` answers as the GMO-PG gateway does (cp932, ``Key=Value&…``, HTTP 200
even for errors). Test routes (not part of the protocol):

- ``POST /_sandbox/faults`` ``{"endpoint": "ExecTran"|…|"*", "kind": K, "count": N}`` arms a fault
  for the next N requests of that endpoint; faults are used in the order they were armed.
  ``refuse``: the connection is closed before anything is processed. ``timeout``: the request is
  processed, then the answer is held back longer than any client waits. ``drop_answer``: processed,
  then the connection is closed without an answer. ``http500``: not processed, an HTML error page.
  ``garbage``: processed, then a body that is not a protocol answer. ``busy``: not processed,
  ``E92000001``.
- ``DELETE /_sandbox/faults``; ``GET /_sandbox/faults``.
- ``GET /_sandbox/orders?prefix=<order_id>``: each OrderID of that payment (``<order_id>`` and
  ``<order_id>-NN``; all orders without ``prefix``) with status and execution count, and the
  payment's successful executions.
- ``GET /_sandbox/members``, ``GET /_sandbox/state`` (request counts, faults, double charges).
"""

from __future__ import annotations

import asyncio
import random
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from ivrpay.sandbox.state import ENDPOINT_NAMES, SandboxState, error_pairs

log = structlog.get_logger(__name__)

FAULT_KINDS = ("refuse", "timeout", "drop_answer", "http500", "garbage", "busy")
_HTML_500 = (
    b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>Internal Server Error</h1></body></html>"
)
# Illegal cp932 sequences (0x85 0x40, 0x81 0x20): a body no client can read as an answer.
_GARBAGE = b"\x85\x40AccessID=\x81 \x00"


@dataclass
class Fault:
    endpoint: str
    kind: str
    remaining: int


class FaultBoard:
    """Faults armed for the next N requests of an endpoint (``*`` = any endpoint)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, endpoint: str, kind: str, count: int = 1) -> None:
        if endpoint != "*" and endpoint not in ENDPOINT_NAMES:
            raise ValueError(f"endpoint must be * or one of {', '.join(ENDPOINT_NAMES)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            raise ValueError("count must be a whole number in 1…100000")
        self._faults.append(Fault(endpoint, kind, count))

    def clear(self) -> None:
        self._faults.clear()

    def take(self, endpoint: str) -> str | None:
        for fault in self._faults:
            if fault.endpoint in ("*", endpoint):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault.kind
        return None

    def view(self) -> list[dict[str, Any]]:
        return [
            {"endpoint": f.endpoint, "kind": f.kind, "remaining": f.remaining} for f in self._faults
        ]


def _answer(pairs: list[tuple[str, str]]) -> web.Response:
    body = "&".join(f"{k}={v}" for k, v in pairs).encode("cp932", "replace")
    return web.Response(body=body, headers={"Content-Type": "text/plain;charset=Windows-31J"})


def _parse_form(body: bytes) -> dict[str, str]:
    """The request's parameters; percent-escapes are cp932 (raw cp932 bytes tolerated too)."""
    text = body.decode("cp932")
    return dict(parse_qsl(text, keep_blank_values=True, encoding="cp932", errors="strict"))


class _Gateway:
    """Request handlers over one state, one fault board."""

    def __init__(
        self,
        state: SandboxState,
        faults: FaultBoard,
        latency_ms: int,
        jitter_ms: int,
        hold_s: float,
    ) -> None:
        self.state = state
        self.faults = faults
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.hold_s = hold_s
        self.closing = asyncio.Event()

    async def _delay(self) -> None:
        if self.latency_ms or self.jitter_ms:
            ms = self.latency_ms + random.uniform(-self.jitter_ms, self.jitter_ms)
            if ms > 0:
                await asyncio.sleep(ms / 1000)

    async def _hold(self) -> None:
        # Longer than any client waits; ends early when the sandbox stops.
        try:
            await asyncio.wait_for(self.closing.wait(), self.hold_s)
        except TimeoutError:
            pass

    async def protocol(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.read()
        self.state.requests[name] += 1
        await self._delay()
        fault = self.faults.take(name)
        if fault == "refuse":
            request.protocol.force_close()
            return web.Response()
        if fault == "http500":
            return web.Response(status=500, body=_HTML_500, content_type="text/html")
        if fault == "busy":
            return _answer(error_pairs("E92000001"))
        try:
            params = _parse_form(body)
        except (UnicodeDecodeError, ValueError):
            return _answer(error_pairs("E01700001"))
        reply = self.state.handle(name, params)
        log.debug(
            "sandbox_request",
            endpoint=name,
            order_id=params.get("OrderID"),
            err_info=dict(reply.pairs).get("ErrInfo"),
            fault=fault,
            lost=reply.lost,
        )
        if fault == "timeout" or reply.lost:
            await self._hold()
            request.protocol.force_close()
            return web.Response()
        if fault == "drop_answer":
            request.protocol.force_close()
            return web.Response()
        if fault == "garbage":
            return web.Response(body=_GARBAGE, headers={"Content-Type": "text/plain"})
        return _answer(reply.pairs)

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        if not isinstance(spec, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            self.faults.add(
                str(spec.get("endpoint", "*")), str(spec.get("kind")), spec.get("count", 1)
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"faults": self.faults.view()}, status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"faults": []})

    async def list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": self.faults.view()})

    async def orders(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix") or None
        orders = self.state.orders(prefix)
        return web.json_response(
            {
                "prefix": prefix,
                "orders": orders,
                "executions": sum(o["executions"] for o in orders),
                "successful_executions": sum(o["successes"] for o in orders),
                "double_charges": self.state.double_charges(),
            }
        )

    async def members(self, request: web.Request) -> web.Response:
        return web.json_response({"members": self.state.members()})

    async def overview(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": dict(self.state.requests),
                "faults": self.faults.view(),
                "orders": len(self.state.orders()),
                "double_charges": self.state.double_charges(),
            }
        )


def build_app(gateway: _Gateway) -> web.Application:
    app = web.Application()
    app.router.add_post("/payment/{name}.idPass", gateway.protocol)
    app.router.add_post("/_sandbox/faults", gateway.add_fault)
    app.router.add_delete("/_sandbox/faults", gateway.clear_faults)
    app.router.add_get("/_sandbox/faults", gateway.list_faults)
    app.router.add_get("/_sandbox/orders", gateway.orders)
    app.router.add_get("/_sandbox/members", gateway.members)
    app.router.add_get("/_sandbox/state", gateway.overview)
    return app


class Sandbox:
    """A running sandbox gateway: ``url`` (base, for the client), ``state`` (read it, do not
    change it), ``faults``, ``expected_double_charges``; :meth:`stop` ends it."""

    def __init__(self, runner: web.AppRunner, gateway: _Gateway, url: str) -> None:
        self._runner = runner
        self._gateway = gateway
        self.url = url
        self.state = gateway.state
        self.faults = gateway.faults
        # Payments (OrderID families) a test double-charges on purpose; any other is a failure.
        self.expected_double_charges: set[str] = set()

    def add_fault(self, endpoint: str, kind: str, count: int = 1) -> None:
        """As ``POST /_sandbox/faults``, for tests in the same process."""
        self.faults.add(endpoint, kind, count)

    def clear_faults(self) -> None:
        self.faults.clear()

    async def stop(self) -> None:
        if self._gateway.closing.is_set():
            return
        self._gateway.closing.set()  # release answers being held back
        await self._runner.cleanup()


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    latency_ms: int = 0,
    jitter_ms: int = 0,
    hold_s: float = 120.0,
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], datetime] | None = None,
    access_log: bool = False,
) -> Sandbox:
    """Start a sandbox gateway on ``host:port`` (0 = a free port) and return it running.
    ``hold_s``: how long a withheld answer (``timeout`` fault, card 4000000000000119) is held."""
    gateway = _Gateway(SandboxState(clock), FaultBoard(), latency_ms, jitter_ms, hold_s)
    runner = web.AppRunner(
        build_app(gateway), access_log=log if access_log else None, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0]
    scheme = "https" if ssl_context else "http"
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return Sandbox(runner, gateway, f"{scheme}://{shown}:{bound[1]}")


async def _serve(host: str, port: int, latency_ms: int, jitter_ms: int) -> None:
    sandbox = await start_sandbox(host, port, latency_ms=latency_ms, jitter_ms=jitter_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "sandbox_gateway_listening", url=sandbox.url, latency_ms=latency_ms, jitter_ms=jitter_ms
    )
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
        log.info("sandbox_gateway_stopped", url=sandbox.url)


def run_sandbox(host: str, port: int, latency_ms: int = 0, jitter_ms: int = 0) -> None:
    """Run the sandbox gateway until SIGINT/SIGTERM (``ivrpay sandbox-gateway``)."""
    if latency_ms < 0 or jitter_ms < 0:
        raise SystemExit("ivrpay sandbox-gateway: --latency-ms and --jitter-ms must be >= 0")
    try:
        asyncio.run(_serve(host, port, latency_ms, jitter_ms))
    except OSError as exc:
        raise SystemExit(
            f"ivrpay sandbox-gateway: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
