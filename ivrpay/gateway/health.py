"""Is the gateway there? One cheap request (SearchTrade of an OrderID that cannot exist), cached.

The probe goes through the client's own session (same URL, TLS and credentials as a payment),
but it is never on a call's path: a call never waits for it, and ``/healthz`` asks at most once
per ``ttl_s`` however often it is polled (concurrent askers share one probe). The probe writes no
row and logs only when the verdict changes, so a load balancer polling every second makes no noise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from ivrpay.gateway.codec import ENDPOINTS, encode_request

if TYPE_CHECKING:
    from ivrpay.gateway.transport import GatewayTransport

log = structlog.get_logger("ivrpay.gateway.health")

# 25 characters: longer than any order_id ivrpay accepts (24), within GMO-PG's 27.
PROBE_ORDER_ID = "ivrpay-healthz-0000000000"
ORDER_NOT_FOUND = "E01110002"
# Shop id or password refused: the gateway is up but every payment would fail.
CREDENTIAL_ERRORS = ("E0101", "E0102", "E0103")

Verdict = dict[str, str]


class GatewayProbe:
    """``await probe.health()`` → ``{"status": "ok"}`` or ``{"status": "fail", "detail": …}``."""

    def __init__(
        self,
        transport: GatewayTransport,
        params: Callable[[], dict[str, str]],
        *,
        ttl_s: float = 5.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._params = params  # the shop's credentials, as a payment sends them
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._verdict: Verdict | None = None
        self._checked_at = 0.0
        self._running: asyncio.Task[Verdict] | None = None
        self.probes = 0  # requests sent, for tests and curiosity

    async def health(self) -> Verdict:
        if self._verdict is not None and self._clock() - self._checked_at < self.ttl_s:
            return dict(self._verdict)
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._probe())
        # Shielded: one asker giving up does not cancel the probe the others wait for.
        return dict(await asyncio.shield(self._running))

    async def _probe(self) -> Verdict:
        self.probes += 1
        verdict = await self._ask()
        if self._verdict is None or verdict != self._verdict:
            event = log.info if verdict["status"] == "ok" else log.warning
            event("gateway_health", **verdict)
        self._verdict, self._checked_at = verdict, self._clock()
        return verdict

    async def _ask(self) -> Verdict:
        ep = ENDPOINTS["SearchTrade"]
        body = encode_request({**self._params(), "OrderID": PROBE_ORDER_ID})
        exchange: Callable[..., Awaitable[object]] = self._transport._exchange
        try:
            attempt = await asyncio.wait_for(exchange(ep, body), self.timeout_s)
        except TimeoutError:
            return {"status": "fail", "detail": f"no answer within {self.timeout_s:g}s"}
        kind = getattr(attempt, "kind", "system")
        code = getattr(attempt, "err_code", None)
        if kind == "ok" or code == ORDER_NOT_FOUND:
            return {"status": "ok"}
        if code is not None and code.startswith(CREDENTIAL_ERRORS):
            return {"status": "fail", "detail": f"shop credentials refused ({code})"}
        if kind == "busy":
            return {"status": "fail", "detail": f"busy ({code})"}
        if code is not None:
            return {"status": "ok", "detail": f"answered {code}"}
        return {"status": "fail", "detail": getattr(attempt, "message", "") or kind}
