"""Live progress: NOTIFY in the transaction of the change, heard on another connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from ivrpay import store
from tests.store.helpers import at, claimed, new_payment


@pytest.fixture
async def listener(database_url: str) -> AsyncIterator[store.PaymentListener]:
    lst = store.PaymentListener(database_url, reconnect_s=0.01)
    await lst.start()
    try:
        yield lst
    finally:
        await lst.close()


async def _created(pool: asyncpg.Pool, listener: store.PaymentListener) -> dict[str, Any]:
    """A new payment whose creation NOTIFY has already been heard (so it cannot arrive late)."""
    async with listener.subscribe() as every:
        p = await new_payment(pool)
        while await asyncio.wait_for(every.get(), 10) != (p["id"], 1):
            pass
    return p


async def test_notify_reaches_a_listener_on_another_connection(
    pool: asyncpg.Pool, listener: store.PaymentListener
) -> None:
    p = await _created(pool, listener)
    other = await _created(pool, listener)
    async with listener.subscribe(p["id"]) as mine, listener.subscribe() as every:
        claim = await claimed(pool, p, now=at(1))
        await claimed(pool, other, now=at(1))
        await store.record_progress(pool, p["id"], claim.token, now=at(2), step="expiry")
        assert await asyncio.wait_for(mine.get(), 10) == (p["id"], 2)
        assert await asyncio.wait_for(mine.get(), 10) == (p["id"], 3)
        got = [await asyncio.wait_for(every.get(), 10) for _ in range(3)]
        assert sorted(got) == sorted([(p["id"], 2), (other["id"], 2), (p["id"], 3)])
        assert mine.empty()  # the other payment's change was not fanned out here
    snap = await store.get_payment(pool, p["id"])
    assert snap["progress"]["step"] == "expiry"


async def test_no_notify_for_a_rolled_back_change(
    pool: asyncpg.Pool, listener: store.PaymentListener
) -> None:
    p = await _created(pool, listener)
    async with listener.subscribe(p["id"]) as mine:
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await store.cancel_payment(conn, p["id"], now=at(1))
            await tx.rollback()
        # A committed change after it: the first thing heard is this one.
        await store.cancel_payment(pool, p["id"], now=at(2))
        assert await asyncio.wait_for(mine.get(), 10) == (p["id"], 2)
        assert mine.empty()


async def test_reconnects_and_tells_subscribers_to_reread(
    pool: asyncpg.Pool, listener: store.PaymentListener
) -> None:
    p = await _created(pool, listener)
    async with listener.subscribe(p["id"]) as mine:
        backend = await listener._conn.fetchval("SELECT pg_backend_pid()")
        await pool.execute("SELECT pg_terminate_backend($1)", backend)
        assert await asyncio.wait_for(mine.get(), 10) == (p["id"], 0)  # "read again"
        await store.cancel_payment(pool, p["id"], now=at(1))
        assert await asyncio.wait_for(mine.get(), 10) == (p["id"], 2)


async def test_slow_subscriber_keeps_the_newest(pool: asyncpg.Pool, database_url: str) -> None:
    small = store.PaymentListener(database_url, queue_size=2)
    await small.start()
    try:
        p = await _created(pool, small)
        async with small.subscribe(p["id"]) as mine:
            claim = await claimed(pool, p, now=at(1))
            for i in range(4):
                await store.record_progress(pool, p["id"], claim.token, now=at(2 + i))
            # Earlier items were dropped for the newest, never blocking the listener.
            while await asyncio.wait_for(mine.get(), 10) != (p["id"], 6):
                pass
            assert mine.empty()
    finally:
        await small.close()
