"""``GET /api/v1/payments/{id}/events``: Server-Sent Events of one payment, live across processes.

One event type, ``payment``, whose data is the full snapshot and whose ``id`` is the payment's
event sequence number. Changes arrive through the store's LISTEN/NOTIFY listener (one connection
per process); several quick changes may be folded into one event carrying the newest snapshot. The
stream subscribes *before* it reads the first snapshot, so a change between the two is never
missed. A client that reconnects with ``Last-Event-ID`` gets the snapshot only if it changed since.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from ivrpay.api.problems import Problem, not_found
from ivrpay.api.render import dumps, payment_json
from ivrpay.metrics import SSE_STREAMS

routes = web.RouteTableDef()


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if re.fullmatch(r"[0-9]{1,18}", raw) else -1


async def _latest_seq(pool: Any, payment_id: str) -> int:
    events = await store.list_events(pool, payment_id)
    return max((int(e["seq"]) for e in events), default=0)


def _frame(seq: int, snapshot: dict[str, Any]) -> bytes:
    # dumps() never emits a raw newline, so the data fits one "data:" line.
    return f"id: {seq}\nevent: payment\ndata: {dumps(payment_json(snapshot))}\n\n".encode()


Frame = Callable[[int, dict[str, Any]], Awaitable[bytes]]


async def _json_frame(seq: int, snapshot: dict[str, Any]) -> bytes:
    return _frame(seq, snapshot)


@routes.get("/payments/{id}/events")
async def payment_events(request: web.Request) -> web.StreamResponse:
    return await stream_payment(request, request.match_info["id"], _json_frame)


async def stream_payment(request: web.Request, payment_id: str, frame: Frame) -> web.StreamResponse:
    """The SSE stream of one payment, each change written as ``await frame(seq, snapshot)``
    (the API sends JSON; the operator screen sends its rendered live panel)."""
    pool = request.config_dict[keys.POOL]
    listener = request.config_dict[keys.LISTENER].value
    closing: asyncio.Event = request.config_dict[keys.CLOSING]
    keepalive_s: float = request.config_dict[keys.SSE_KEEPALIVE_S]
    snapshot = await store.get_payment(pool, payment_id)
    if snapshot is None:
        raise not_found()
    if listener is None:
        raise Problem(503, "events-unavailable", "Live events are not available on this server.")
    payment_id = str(snapshot["id"])
    last_sent = _last_event_id(request)

    async with listener.subscribe(payment_id) as queue:
        # The sequence first, then the snapshot: the snapshot is at least that new, and a change
        # in between also arrives as a notification, so nothing is missed.
        seq = await _latest_seq(pool, payment_id)
        if last_sent > seq:  # an id this payment never had: start afresh rather than go quiet
            last_sent = -1
        snapshot = await store.get_payment(pool, payment_id)
        if snapshot is None:  # deleted meanwhile (never in practice): nothing to stream
            raise not_found()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        SSE_STREAMS.inc()
        closed = asyncio.ensure_future(closing.wait())
        try:
            if seq > last_sent:
                await response.write(await frame(seq, snapshot))
                last_sent = seq
            while not closing.is_set():
                got = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {got, closed}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
                if got not in done:
                    got.cancel()
                    if closed in done:
                        break
                    await response.write(b": keepalive\n\n")
                    continue
                newest = got.result()[1]
                while not queue.empty():  # fold a burst of changes into one event
                    newest = max(newest, queue.get_nowait()[1])
                if newest <= last_sent:
                    continue
                snapshot = await store.get_payment(pool, payment_id)
                if snapshot is None:
                    break
                await response.write(await frame(newest, snapshot))
                last_sent = newest
        except ConnectionError:
            pass  # the client went away
        finally:
            closed.cancel()
            SSE_STREAMS.dec()
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response
