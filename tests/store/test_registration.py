"""A charge_and_register's card storage left ``pending``: claimed when due, retried with back-off,
resolved by an event (product.md "Gateway use": TradedCard is retried)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from ivrpay import store
from tests.store.helpers import SUCCESS, at, new_client, new_payment, processing

BACKOFF = (30, 60, 120, 300, 900)
DAY = 86400.0
UNREACHABLE = {"code": "unknown", "category": "unknown", "message": "unreadable answer: HTTP 500"}


async def _pending(
    pool: asyncpg.Pool, member_id: str = "M1", client: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    """A charge_and_register whose charge succeeded at 0 s and whose TradedCard did not get
    through; its call ended at 1 s."""
    p = await new_payment(pool, client, operation="charge_and_register", member_id=member_id)
    claim, order_id = await processing(pool, p, now=at(0))
    snap = await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(0),
        registration={"status": "pending", "card_seq": None, "error": UNREACHABLE}, **SUCCESS,
    )  # fmt: skip
    assert snap["registration"] == {"status": "pending", "card_seq": None, "error": UNREACHABLE}
    await store.end_call(pool, p["id"], claim.token, now=at(1))
    return p, order_id


async def _record(pool: asyncpg.Pool, pid: str, now: float, **kw: Any) -> dict[str, Any]:
    return await store.record_registration_attempt(
        pool, pid, now=at(now), backoff_s=BACKOFF, horizon_s=DAY, **kw
    )


async def test_a_pending_registration_is_retried_until_stored(pool: asyncpg.Pool) -> None:
    client = await new_client(pool, "http://127.0.0.1:9/hook")
    p, order_id = await _pending(pool, client=client)
    items = await store.claim_registrations(pool, now=at(1), lease_s=60)
    assert [(i["payment"]["id"], i["order_id"], i["member_id"], i["attempts"]) for i in items] == [
        (p["id"], order_id, "M1", 0)
    ]
    assert items[0]["pending_since"] == at(0)
    # Held while one process works on it.
    assert await store.claim_registrations(pool, now=at(60), lease_s=60) == []

    updated_before = (await store.get_payment(pool, p["id"]))["updated_at"]
    snap = await _record(pool, p["id"], 1, status="retry", error=UNREACHABLE)
    assert snap["registration"]["status"] == "pending"
    assert snap["updated_at"] == updated_before  # scheduling only: nobody is told
    assert await store.claim_registrations(pool, now=at(30), lease_s=60) == []
    assert len(await store.claim_registrations(pool, now=at(31), lease_s=60)) == 1
    await _record(pool, p["id"], 31, status="retry", error=UNREACHABLE)
    assert await store.claim_registrations(pool, now=at(90), lease_s=60) == []
    (item,) = await store.claim_registrations(pool, now=at(91), lease_s=60)
    assert item["attempts"] == 2

    snap = await _record(pool, p["id"], 91, status="succeeded", card_seq=2)
    assert snap["status"] == "succeeded"
    assert snap["registration"] == {"status": "succeeded", "card_seq": 2, "error": None}
    last = (await store.list_events(pool, p["id"]))[-1]
    assert (last["kind"], last["data"]["status"], last["data"]["card_seq"]) == (
        "registration",
        "succeeded",
        2,
    )
    assert await store.claim_registrations(pool, now=at(DAY * 2), lease_s=60) == []
    with pytest.raises(store.Conflict) as refused:
        await _record(pool, p["id"], 92, status="succeeded", card_seq=3)
    assert refused.value.code == "registration_not_pending"
    # No webhook type exists for a registration: only the payment's own success was queued.
    types = [d["type"] for d in await store.list_deliveries(pool, payment_id=p["id"])]
    assert types == ["payment.succeeded"]


async def test_a_refusal_fails_the_registration_not_the_payment(pool: asyncpg.Pool) -> None:
    p, _ = await _pending(pool)
    refused = {"code": "E01230009", "category": "system", "message": "too many cards"}
    snap = await _record(pool, p["id"], 1, status="failed", error=refused)
    assert snap["status"] == "succeeded"
    assert snap["registration"] == {"status": "failed", "card_seq": None, "error": refused}
    assert await store.claim_registrations(pool, now=at(DAY), lease_s=60) == []
    p2, _ = await _pending(pool, "M2")
    with pytest.raises(ValueError, match="error"):
        await _record(pool, p2["id"], 1, status="failed")


async def test_past_the_horizon_the_registration_fails(pool: asyncpg.Pool) -> None:
    p, _ = await _pending(pool)
    await _record(pool, p["id"], 1, status="retry")
    snap = await _record(pool, p["id"], DAY, status="retry")
    assert snap["registration"]["status"] == "failed"
    assert snap["registration"]["error"] == UNREACHABLE  # the reason it stayed pending
    assert snap["status"] == "succeeded"
    assert (await store.list_events(pool, p["id"]))[-1]["kind"] == "registration"
    assert await store.claim_registrations(pool, now=at(2 * DAY), lease_s=60) == []


async def test_concurrent_retriers_split_the_work(pool: asyncpg.Pool) -> None:
    made = [(await _pending(pool, f"M{i}"))[0]["id"] for i in range(6)]
    batches = await asyncio.gather(
        *(store.claim_registrations(pool, now=at(5), lease_s=60, limit=2) for _ in range(5))
    )
    ids = [i["payment"]["id"] for b in batches for i in b]
    assert sorted(ids) == sorted(made)  # each exactly once


async def test_pending_only_for_a_succeeded_payment(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool, operation="charge_and_register", member_id="M1")
    claim, order_id = await processing(pool, p, now=at(0))
    with pytest.raises(ValueError, match="succeeded"):
        await store.record_gateway_result(
            pool, p["id"], claim.token, order_id=order_id, status="unknown", now=at(0),
            registration={"status": "pending", "card_seq": None, "error": None},
        )  # fmt: skip
    # A registration settled at once is not retried.
    await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(0),
        registration={"status": "succeeded", "card_seq": "1", "error": None}, **SUCCESS,
    )  # fmt: skip
    assert await store.claim_registrations(pool, now=at(DAY), lease_s=60) == []
    assert (await store.get_payment(pool, p["id"]))["registration"]["card_seq"] == 1


async def test_a_charge_found_by_reconciliation_gets_its_card_stored(pool: asyncpg.Pool) -> None:
    """The call never got to TradedCard (the charge's outcome was unknown): once reconciliation
    finds the charge, the registration is pending and due."""
    p = await new_payment(pool, operation="charge_and_register", member_id="M9")
    claim, order_id = await processing(pool, p, now=at(0))
    await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="unknown", now=at(0)
    )
    await store.end_call(pool, p["id"], claim.token, now=at(1))
    assert await store.claim_registrations(pool, now=at(2), lease_s=60) == []
    await store.claim_reconciliations(pool, now=at(2), lease_s=60)
    snap = await store.record_reconciliation(
        pool, p["id"], now=at(3), status="succeeded", backoff_s=BACKOFF, horizon_s=DAY, **SUCCESS
    )
    assert snap["registration"] == {"status": "pending", "card_seq": None, "error": None}
    (item,) = await store.claim_registrations(pool, now=at(3), lease_s=60)
    assert (item["order_id"], item["member_id"]) == (order_id, "M9")
