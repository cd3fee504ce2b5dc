"""Small helpers shared by the store tests: a controlled clock and quick payments."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ivrpay import store
from ivrpay.gateway import GatewayClient, Outcome
from tests.support.gateway import make_card

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
LEASE_S = 30.0
_orders = itertools.count(1)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``: every test drives time through this, never the wall clock."""
    return T0 + timedelta(seconds=seconds)


async def new_client(pool: asyncpg.Pool, webhook_url: str | None = None) -> dict[str, Any]:
    client, _key, _secret = await store.create_api_client(pool, "test", webhook_url)
    return client


async def new_payment(
    pool: asyncpg.Pool, client: dict[str, Any] | None = None, *, now: datetime = T0, **kw: Any
) -> dict[str, Any]:
    if client is None:
        client = await store.ensure_default_client(pool)
    kw.setdefault("order_id", f"ORD-{next(_orders):06d}")
    kw.setdefault("amount", 12800)
    return await store.create_payment(pool, client_id=client["id"], now=now, **kw)


async def claimed(
    pool: asyncpg.Pool, payment: dict[str, Any], *, now: datetime = T0, owner: str = "proc-a"
) -> store.Claim:
    claim = await store.claim_payment(
        pool, payment["id"], owner=owner, now=now, lease_s=LEASE_S, uniqueid="1700000000.1"
    )
    assert claim.ok, claim.reason
    return claim


async def processing(
    pool: asyncpg.Pool, payment: dict[str, Any], *, now: datetime = T0
) -> tuple[store.Claim, str]:
    """A payment claimed by a call with an execution sent: ``(claim, attempt order id)``."""
    claim = await claimed(pool, payment, now=now)
    order_id = await store.start_execution(
        pool, payment["id"], claim.token, now=now, max_per_payment=3, max_per_call=2
    )
    await store.record_entry(
        pool,
        payment["id"],
        claim.token,
        order_id=order_id,
        access_id="a" * 32,
        access_pass="b" * 32,
        now=now,
    )
    await store.move_to_processing(pool, payment["id"], claim.token, order_id=order_id, now=now)
    return claim, order_id


async def entered(
    pool: asyncpg.Pool, gateway: GatewayClient, payment: dict[str, Any], *, now: datetime
) -> tuple[store.Claim, str, Outcome]:
    """Like :func:`processing`, but the attempt is opened at the (sandbox) gateway with EntryTran:
    ``(claim, attempt order id, the EntryTran answer)``, ready for :func:`exec_card`."""
    claim = await claimed(pool, payment, now=now)
    order_id = await store.start_execution(
        pool, payment["id"], claim.token, now=now, max_per_payment=3, max_per_call=2
    )
    entry = await gateway.entry_tran(order_id, "AUTH", payment["amount"])
    assert entry.ok and entry.access_id and entry.access_pass
    await store.record_entry(
        pool,
        payment["id"],
        claim.token,
        order_id=order_id,
        access_id=entry.access_id,
        access_pass=entry.access_pass,
        now=now,
    )
    await store.move_to_processing(pool, payment["id"], claim.token, order_id=order_id, now=now)
    return claim, order_id, entry


async def exec_card(gateway: GatewayClient, order_id: str, entry: Outcome, number: str) -> Outcome:
    """ExecTran of an :func:`entered` attempt with ``number``; the card is wiped afterwards."""
    assert entry.access_id and entry.access_pass
    card = make_card(number)
    try:
        return await gateway.exec_tran(order_id, entry.access_id, entry.access_pass, card)
    finally:
        card.wipe()


SUCCESS = {
    "result": {
        "approve": "1234567",
        "tran_id": "2401010900111111111111111111",
        "tran_date": "20300101180000",
        "forward": "2a99662",
        "card_seq": None,
    },
    "card": {"brand": "VISA", "last4": "1111"},
}
DECLINE = {"code": "42G020000", "category": "declined", "message": "insufficient balance"}
