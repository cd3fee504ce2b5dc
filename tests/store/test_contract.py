"""Store rules found missing in the spec review."""

from __future__ import annotations

import asyncpg

from ivrpay import store
from tests.store.helpers import DECLINE, at, claimed, new_payment, processing


async def test_a_payment_an_admin_resolved_as_paid_can_be_captured(pool: asyncpg.Pool) -> None:
    # A first attempt declined, the second's outcome lost, reconciliation gave up: an admin who
    # finds the charge at the gateway resolves it succeeded. The merchant must then be able to
    # capture (or void) that authorization: the attempt that charged is the succeeded one.
    p = await new_payment(pool)
    claim, first = await processing(pool, p, now=at(0))
    await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=first, status="in_call", now=at(1), error=DECLINE
    )
    second = await store.start_execution(
        pool, p["id"], claim.token, now=at(2), max_per_payment=3, max_per_call=2
    )
    await store.record_entry(
        pool, p["id"], claim.token, order_id=second, access_id="c" * 32, access_pass="d" * 32,
        now=at(2),
    )  # fmt: skip
    await store.move_to_processing(pool, p["id"], claim.token, order_id=second, now=at(3))
    await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=second, status="unknown", now=at(4)
    )
    await store.end_call(pool, p["id"], claim.token, now=at(5))
    await store.mark_needs_review(pool, p["id"], now=at(6), reason="no answer in 24 h")

    snap = await store.resolve_review(
        pool, p["id"], status="succeeded", actor="user:admin", now=at(7)
    )
    assert snap["status"] == "succeeded" and snap["settlement"] == "authorized"
    assert [e["outcome"] for e in snap["executions"]] == ["declined", "succeeded"]
    handle = await store.get_gateway_handle(pool, p["id"])
    assert handle is not None
    assert (handle["order_id"], handle["access_id"]) == (second, "c" * 32)
    assert store.settlement_action(snap, "capture") == "ok"


SYSTEM = {"code": "E92000001", "category": "system", "message": "gateway unavailable"}


async def _attempt_not_sent(pool: asyncpg.Pool) -> tuple[dict, store.Claim, str]:
    """A call whose attempt OrderID is stored, but whose ExecTran was never sent."""
    p = await new_payment(pool)
    claim = await claimed(pool, p, now=at(0))
    order_id = await store.start_execution(
        pool, p["id"], claim.token, now=at(1), max_per_payment=3, max_per_call=2
    )
    return p, claim, order_id


async def test_a_call_that_ends_before_execution_closes_its_attempt(pool: asyncpg.Pool) -> None:
    # EntryTran failed (a system error): the call ends failed, and so does the attempt.
    p, claim, order_id = await _attempt_not_sent(pool)
    snap = await store.end_call(
        pool, p["id"], claim.token, now=at(2), status="failed", error=SYSTEM
    )
    assert snap["status"] == "failed"
    assert [(e["order_id"], e["outcome"], e["error"]) for e in snap["executions"]] == [
        (order_id, "system", SYSTEM)
    ]

    # The caller hung up after EntryTran, before ExecTran: the attempt ended with the call.
    p, claim, order_id = await _attempt_not_sent(pool)
    await store.record_entry(
        pool, p["id"], claim.token, order_id=order_id, access_id="a" * 32, access_pass="b" * 32,
        now=at(2),
    )  # fmt: skip
    snap = await store.end_call(pool, p["id"], claim.token, now=at(3))
    assert [(e["outcome"], e["error"]) for e in snap["executions"]] == [("abandoned", None)]

    # A cancel requested during the call stops the attempt before ExecTran.
    p, claim, order_id = await _attempt_not_sent(pool)
    await store.cancel_payment(pool, p["id"], now=at(2))
    try:
        await store.move_to_processing(pool, p["id"], claim.token, order_id=order_id, now=at(3))
    except store.PaymentCanceled as exc:
        snap = exc.payment
    assert snap["status"] == "canceled"
    assert [(e["outcome"], e["error"]) for e in snap["executions"]] == [("canceled", None)]

    # A process that died holding the call: the sweep closes the attempt too.
    p, claim, order_id = await _attempt_not_sent(pool)
    await store.resolve_lapsed_leases(pool, now=at(1000))
    snap = await store.get_payment(pool, p["id"])
    assert snap["status"] == "abandoned"
    assert [e["outcome"] for e in snap["executions"]] == ["system"]
    assert snap["executions"][0]["error"]["code"] == "call_lost"
