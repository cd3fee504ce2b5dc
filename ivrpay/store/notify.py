"""Live progress across processes: one LISTEN connection per process, fanned out to queues.

Every change of a payment sends ``NOTIFY ivrpay_payment '<payment id>:<seq>'`` in its transaction,
so a listener hears it exactly when it commits, whichever process made it. Subscribers get
``(payment_id, seq)`` tuples and read the snapshot themselves. When the listening connection is
lost, the listener reconnects and then puts ``(payment_id, 0)`` (``("", 0)`` for an all-payments
subscription) into every queue: seq 0 means "you may have missed changes: read again".
A slow subscriber loses its oldest items, never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog

from ivrpay.store._core import NOTIFY_CHANNEL

log = structlog.get_logger(__name__)

Item = tuple[str, int]


class PaymentListener:
    """``await start()``, then ``async with listener.subscribe(payment_id) as queue: ...``."""

    def __init__(self, url: str, *, queue_size: int = 256, reconnect_s: float = 1.0) -> None:
        self.url = url
        self.queue_size = queue_size
        self.reconnect_s = reconnect_s
        self._subs: dict[str | None, set[asyncio.Queue[Item]]] = {}
        self._conn: asyncpg.Connection | None = None
        self._closed = False
        self._reconnecting: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._closed = False
        self._conn = await self._connect()

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.url)
        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self.connected.set()
        return conn

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await conn.close()

    @contextlib.asynccontextmanager
    async def subscribe(self, payment_id: str | None = None) -> AsyncIterator[asyncio.Queue[Item]]:
        """A queue of ``(payment_id, seq)`` for one payment, or every payment (None)."""
        key = None if payment_id is None else str(payment_id)
        queue: asyncio.Queue[Item] = asyncio.Queue(self.queue_size)
        self._subs.setdefault(key, set()).add(queue)
        try:
            yield queue
        finally:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subs[key]

    # -- internals ------------------------------------------------------------------------------

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        payment_id, _, seq_text = payload.rpartition(":")
        try:
            seq = int(seq_text)
        except ValueError:
            log.warning("notify_bad_payload")
            return
        for key in (payment_id, None):
            for queue in self._subs.get(key, ()):
                self._put(queue, (payment_id, seq))

    @staticmethod
    def _put(queue: asyncio.Queue[Item], item: Item) -> None:
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
        queue.put_nowait(item)

    def _on_lost(self, _conn: Any) -> None:
        self.connected.clear()
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        log.warning("notify_connection_lost")
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            try:
                self._conn = await self._connect()
            except (TimeoutError, OSError, asyncpg.PostgresError):
                await asyncio.sleep(self.reconnect_s)
                continue
            log.info("notify_reconnected")
            for key, queues in list(self._subs.items()):
                for queue in queues:
                    self._put(queue, (key or "", 0))
            return
