"""Expiry, reconciliation scheduling and review, workers driven one iteration at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.payments import PaymentProcess
from ivrpay.workers import (
    Expirer,
    LeaseRenewer,
    LeaseSweeper,
    ReconcileOutcome,
    Reconciler,
    Workers,
    build_workers,
    start_workers,
)
from tests.store.helpers import DECLINE, LEASE_S, SUCCESS, at, claimed, new_payment, processing

BACKOFF = (30, 60, 120, 300, 900)
DAY = 86400.0


async def test_expiry_applies_only_to_unclaimed(pool: asyncpg.Pool) -> None:
    pending = await new_payment(pool, expires_in=60)
    in_call = await new_payment(pool, expires_in=60)
    claim = await claimed(pool, in_call)
    abandoned = await new_payment(pool, expires_in=60)
    c2 = await claimed(pool, abandoned)
    await store.end_call(pool, abandoned["id"], c2.token, now=at(1))
    later = await new_payment(pool, expires_in=600)
    expirer = Expirer(pool, interval_s=1)
    assert await expirer.run_once(at(59)) == 0
    assert await expirer.run_once(at(60)) == 2
    statuses = {
        p["id"]: (await store.get_payment(pool, p["id"]))["status"]
        for p in (pending, in_call, abandoned, later)
    }
    assert statuses == {
        pending["id"]: "expired",
        in_call["id"]: "in_call",
        abandoned["id"]: "expired",
        later["id"]: "pending",
    }
    # The call that holds a payment past its expiry can still finish it.
    await store.end_call(pool, in_call["id"], claim.token, now=at(61))
    assert await expirer.run_once(at(62)) == 1


async def test_concurrent_expirers_split_the_work(pool: asyncpg.Pool) -> None:
    made = [await new_payment(pool, expires_in=10) for _ in range(30)]
    results = await asyncio.gather(*(store.expire_payments(pool, now=at(11)) for _ in range(5)))
    ids = [i for r in results for i in r]
    assert sorted(ids) == sorted(p["id"] for p in made)  # each exactly once


async def _unknown(pool: asyncpg.Pool) -> tuple[dict[str, Any], str]:
    p = await new_payment(pool)
    claim, order_id = await processing(pool, p, now=at(0))
    await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="unknown", now=at(0)
    )
    await store.end_call(pool, p["id"], claim.token, now=at(1))
    return p, order_id


async def test_reconciliation_backs_off_then_needs_review(pool: asyncpg.Pool) -> None:
    p, order_id = await _unknown(pool)
    seen: list[dict[str, Any]] = []

    async def still_unknown(item: dict[str, Any]) -> ReconcileOutcome:
        seen.append(item)
        return ReconcileOutcome("retry")

    rec = Reconciler(pool, still_unknown, backoff_s=BACKOFF, horizon_s=DAY, interval_s=1)
    assert await rec.run_once(at(0)) == 1  # due at once
    assert seen[0]["executions"][0]["order_id"] == order_id
    assert seen[0]["executions"][0]["sent_at"] == at(0)
    # Next due 30 s later, then 60 s after that.
    assert await rec.run_once(at(29)) == 0
    assert await rec.run_once(at(30)) == 1
    assert await rec.run_once(at(89)) == 0
    assert await rec.run_once(at(90)) == 1
    # Past the 24 h horizon: flagged for an admin, no more automatic tries.
    assert await rec.run_once(at(DAY)) == 1
    snap = await store.get_payment(pool, p["id"])
    assert snap["status"] == "unknown" and snap["needs_review"] is True
    assert await rec.run_once(at(2 * DAY)) == 0
    # The admin's decision is audited and notified.
    snap = await store.resolve_review(
        pool, p["id"], status="succeeded", actor="user:admin", now=at(2 * DAY), note="checked"
    )
    assert snap["status"] == "succeeded" and not snap["needs_review"]
    assert snap["settlement"] == "authorized"
    audit = await store.list_audit(pool, payment_id=p["id"])
    assert audit[-1]["action"] == "review_resolved" and audit[-1]["actor"] == "user:admin"
    with pytest.raises(store.Conflict):
        await store.resolve_review(pool, p["id"], status="failed", actor="x", now=at(3 * DAY))


async def test_reconciliation_resolves(pool: asyncpg.Pool) -> None:
    found, _ = await _unknown(pool)
    nothing, _ = await _unknown(pool)
    broken, _ = await _unknown(pool)

    async def gateway(item: dict[str, Any]) -> ReconcileOutcome:
        pid = item["payment"]["id"]
        if pid == found["id"]:
            return ReconcileOutcome("succeeded", result=SUCCESS["result"], card=SUCCESS["card"])
        if pid == nothing["id"]:
            return ReconcileOutcome("failed", error={**DECLINE, "category": "system"})
        raise RuntimeError("gateway down")

    rec = Reconciler(pool, gateway, backoff_s=BACKOFF, horizon_s=DAY, interval_s=1)
    assert await rec.run_once(at(5)) == 3
    a = await store.get_payment(pool, found["id"])
    assert (a["status"], a["card"]["last4"], a["executions"][0]["outcome"]) == (
        "succeeded",
        "1111",
        "succeeded",
    )
    b = await store.get_payment(pool, nothing["id"])
    assert b["status"] == "failed" and b["executions"][0]["outcome"] == "system"
    c = await store.get_payment(pool, broken["id"])
    assert c["status"] == "unknown"  # an exception is a retry
    assert await rec.run_once(at(34)) == 0
    assert await rec.run_once(at(35)) == 1


async def test_reconciliation_claims_are_exclusive(pool: asyncpg.Pool) -> None:
    for _ in range(6):
        await _unknown(pool)
    batches = await asyncio.gather(
        *(store.claim_reconciliations(pool, now=at(5), lease_s=60, limit=2) for _ in range(5))
    )
    ids = [i["payment"]["id"] for b in batches for i in b]
    assert len(ids) == len(set(ids)) == 6
    # Held: not claimable again until the hold passes.
    assert await store.claim_reconciliations(pool, now=at(64), lease_s=60) == []
    assert len(await store.claim_reconciliations(pool, now=at(65), lease_s=60, limit=10)) == 6


async def test_mark_needs_review(pool: asyncpg.Pool) -> None:
    p, _ = await _unknown(pool)
    snap = await store.mark_needs_review(pool, p["id"], now=at(5), reason="CheckString mismatch")
    assert snap["needs_review"] is True
    assert await store.claim_reconciliations(pool, now=at(10), lease_s=60) == []
    snap = await store.resolve_review(pool, p["id"], status="failed", actor="admin", now=at(9))
    assert snap["status"] == "failed" and snap["error"]["code"] == "review_failed"


async def test_lease_loops(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim = await claimed(pool, p, owner="me", now=at(0))
    live = {claim.token}
    renewer = LeaseRenewer(pool, "me", lease_s=LEASE_S, live_tokens=lambda: live, interval_s=10)
    sweeper = LeaseSweeper(pool, interval_s=1)
    assert await renewer.run_once(at(25)) == 1
    assert await sweeper.run_once(at(40)) == 0  # renewed until 55
    assert await sweeper.run_once(at(56)) == 1
    assert (await store.get_payment(pool, p["id"]))["status"] == "abandoned"
    assert await renewer.run_once(at(57)) == 0


async def test_workers_start_and_stop(pool: asyncpg.Pool, database_url: str) -> None:
    """The running loops do their work (expire a payment) and stop on request."""
    settings = Settings(worker_interval_s=0.01)
    # The loops run on the real clock: a payment that expired an hour ago.
    p = await new_payment(pool, now=datetime.now(UTC) - timedelta(hours=1), expires_in=1)
    names = {type(w).__name__ for w in build_workers(pool, settings, owner="me")}
    # Only when the gateway side is wired in.
    gateway_side = {"Reconciler", "RegistrationRetrier", "SettlementChecker"}
    assert not names & gateway_side
    wired = Workers(settings, pool, PaymentProcess(pool, None, settings), owner="me")
    assert gateway_side <= {type(w).__name__ for w in wired.loops}
    listener = store.PaymentListener(database_url)
    await listener.start()
    try:
        async with listener.subscribe(p["id"]) as changes:
            workers = await start_workers(pool, settings, owner="me")
            try:
                # Woken by the NOTIFY of the expiry's transaction.
                assert await asyncio.wait_for(changes.get(), 10) == (p["id"], 2)
            finally:
                await asyncio.wait_for(workers.stop(), 10)
    finally:
        await listener.close()
    assert (await store.get_payment(pool, p["id"]))["status"] == "expired"
    assert all(t.done() for t in workers.tasks)
