"""The call side and the state machine: claims (100 racing), leases, executions, results, every
allowed transition through the store's functions and a sample of refused ones."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from ivrpay import store
from ivrpay.store import _core
from ivrpay.store.states import TRANSITIONS
from tests.store.helpers import (
    DECLINE,
    LEASE_S,
    SUCCESS,
    T0,
    at,
    claimed,
    new_payment,
    processing,
)

BACKOFF = (30, 60, 120, 300, 900)


async def test_hundred_racing_claims_one_winner(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claims = await asyncio.gather(
        *(
            store.claim_payment(
                pool, p["id"], owner=f"proc-{i % 4}", now=T0, lease_s=LEASE_S, uniqueid=str(i)
            )
            for i in range(100)
        )
    )
    winners = [c for c in claims if c.ok]
    assert len(winners) == 1
    assert {c.reason for c in claims if not c.ok} == {"in_use"}
    snap = await store.get_payment(pool, p["id"])
    assert snap["status"] == "in_call"
    assert snap["call"]["uniqueid"] == winners[0].payment["call"]["uniqueid"]
    # One claim, one event: the losers wrote nothing.
    assert [e["kind"] for e in await store.list_events(pool, p["id"])] == ["created", "claimed"]


async def test_claim_reasons(pool: asyncpg.Pool) -> None:
    assert (await store.claim_payment(pool, "nope", owner="a", now=T0, lease_s=1)).reason == (
        "not_found"
    )
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await store.claim_payment(pool, missing, owner="a", now=T0, lease_s=1)).reason == (
        "not_found"
    )
    late = await new_payment(pool, expires_in=60)
    claim = await store.claim_payment(pool, late["id"], owner="a", now=at(60), lease_s=1)
    assert (claim.ok, claim.reason, claim.payment["status"]) == (False, "expired", "pending")
    canceled = await new_payment(pool)
    await store.cancel_payment(pool, canceled["id"], now=T0)
    claim = await store.claim_payment(pool, canceled["id"], owner="a", now=T0, lease_s=1)
    assert claim.reason == "canceled"
    # A payment whose executions are used up is not taken up again.
    used = await new_payment(pool)
    c1, order_id = await processing(pool, used)
    await store.record_gateway_result(
        pool, used["id"], c1.token, order_id=order_id, status="failed", now=T0, error=DECLINE
    )
    await store.end_call(pool, used["id"], c1.token, now=T0)
    claim = await store.claim_payment(
        pool, used["id"], owner="a", now=T0, lease_s=1, max_executions=1
    )
    assert claim.reason == "too_many_attempts"
    assert (await store.claim_payment(
        pool, used["id"], owner="a", now=T0, lease_s=1, max_executions=2
    )).ok  # fmt: skip


async def test_find_by_device_and_code(pool: asyncpg.Pool) -> None:
    a = await new_payment(pool, operator={"id": "op", "callback": "PJSIP/1001"}, now=at(0))
    b = await new_payment(pool, operator={"id": "op", "callback": "PJSIP/1001"}, now=at(5))
    await new_payment(pool, operator={"id": "op2", "callback": "PJSIP/1002"})
    found = await store.find_pending_by_device(pool, "PJSIP/1001-0000002a;1", now=at(10))
    assert [p["id"] for p in found] == [b["id"], a["id"]]  # newest first
    await claimed(pool, b, now=at(10))
    found = await store.find_pending_by_device(pool, "PJSIP/1001-0000002b", now=at(10))
    assert [p["id"] for p in found] == [a["id"]]
    assert await store.find_pending_by_device(pool, "PJSIP/1001", now=at(3600)) == []
    assert (await store.find_by_code(pool, a["code"], now=at(10)))["id"] == a["id"]
    assert await store.find_by_code(pool, "12345", now=at(10)) is None
    assert await store.find_by_code(pool, "000000", now=at(10)) is None


async def test_a_full_call_with_a_retry(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim = await claimed(pool, p)
    snap = await store.record_progress(
        pool, p["id"], claim.token, now=at(1), step="card_number", attempts={"card_number": 1}
    )
    snap = await store.record_progress(
        pool, p["id"], claim.token, now=at(2), step="expiry", attempts={"expiry": 2}
    )
    assert snap["progress"] == {"step": "expiry", "attempts": {"card_number": 1, "expiry": 2}}
    tok = claim.token
    o1 = await store.start_execution(
        pool, p["id"], tok, now=at(3), max_per_payment=3, max_per_call=2
    )
    assert o1 == f"{p['order_id']}-01"
    await store.move_to_processing(pool, p["id"], tok, order_id=o1, now=at(4))
    snap = await store.record_gateway_result(
        pool, p["id"], tok, order_id=o1, status="in_call", now=at(5), error=DECLINE,
        card={"brand": "VISA", "last4": "0002"},
    )  # fmt: skip
    assert snap["status"] == "in_call" and snap["error"]["code"] == "42G020000"
    assert snap["card"] == {"brand": "VISA", "last4": "0002"}
    o2 = await store.start_execution(
        pool, p["id"], tok, now=at(6), max_per_payment=3, max_per_call=2
    )
    assert o2 == f"{p['order_id']}-02"
    await store.move_to_processing(pool, p["id"], tok, order_id=o2, now=at(7))
    snap = await store.record_gateway_result(
        pool, p["id"], tok, order_id=o2, status="succeeded", now=at(8), **SUCCESS
    )
    assert snap["status"] == "succeeded" and snap["error"] is None
    assert [(e["order_id"], e["outcome"]) for e in snap["executions"]] == [
        (o1, "declined"),
        (o2, "succeeded"),
    ]
    assert snap["executions"][0]["error"]["code"] == "42G020000"
    snap = await store.end_call(pool, p["id"], tok, now=at(9), step="done")
    assert snap["call"]["ended_at"] == at(9) and snap["progress"]["step"] == "done"
    with pytest.raises(store.LeaseLost):
        await store.record_progress(pool, p["id"], tok, now=at(10), step="done")
    seqs = [e["seq"] for e in await store.list_events(pool, p["id"])]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_execution_limits(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim = await claimed(pool, p)
    for n in (1, 2):
        order_id = await store.start_execution(
            pool, p["id"], claim.token, now=at(n), max_per_payment=3, max_per_call=2
        )
        await store.move_to_processing(pool, p["id"], claim.token, order_id=order_id, now=at(n))
        await store.record_gateway_result(
            pool, p["id"], claim.token, order_id=order_id, status="in_call", now=at(n),
            error=DECLINE,
        )  # fmt: skip
    with pytest.raises(store.TooManyAttempts) as info:
        await store.start_execution(
            pool, p["id"], claim.token, now=at(3), max_per_payment=3, max_per_call=2
        )
    snap = info.value.payment
    assert snap["status"] == "failed"
    assert snap["error"] == {
        "code": "too_many_attempts",
        "category": "declined",
        "message": "the gateway execution limit was reached",
    }
    assert (await store.get_payment(pool, p["id"]))["status"] == "failed"  # committed
    # The call still ends normally; a new call gets one more, the payment's third.
    await store.end_call(pool, p["id"], claim.token, now=at(4))
    claim2 = await claimed(pool, p, now=at(5))
    o3 = await store.start_execution(
        pool, p["id"], claim2.token, now=at(6), max_per_payment=3, max_per_call=2
    )
    assert o3.endswith("-03")
    await store.move_to_processing(pool, p["id"], claim2.token, order_id=o3, now=at(6))
    await store.record_gateway_result(
        pool, p["id"], claim2.token, order_id=o3, status="in_call", now=at(6), error=DECLINE
    )
    with pytest.raises(store.TooManyAttempts):
        await store.start_execution(
            pool, p["id"], claim2.token, now=at(7), max_per_payment=3, max_per_call=2
        )


async def test_cancel_requested_stops_processing(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim = await claimed(pool, p)
    order_id = await store.start_execution(
        pool, p["id"], claim.token, now=at(1), max_per_payment=3, max_per_call=2
    )
    await store.cancel_payment(pool, p["id"], now=at(2))
    with pytest.raises(store.PaymentCanceled):
        await store.move_to_processing(pool, p["id"], claim.token, order_id=order_id, now=at(3))
    snap = await store.get_payment(pool, p["id"])
    assert snap["status"] == "canceled"
    snap = await store.end_call(pool, p["id"], claim.token, now=at(4))
    assert snap["status"] == "canceled" and snap["call"]["ended_at"] == at(4)


async def test_hangup_with_cancel_requested_is_canceled(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim = await claimed(pool, p)
    await store.cancel_payment(pool, p["id"], now=at(1))
    snap = await store.end_call(pool, p["id"], claim.token, now=at(2))
    assert snap["status"] == "canceled"


async def test_no_card_data_accepted_or_stored(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim, order_id = await processing(pool, p)
    with pytest.raises(ValueError):
        await store.record_gateway_result(
            pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(1),
            card={"brand": "VISA", "last4": "4111111111111111"},
        )  # fmt: skip
    with pytest.raises(ValueError):
        await store.record_gateway_result(
            pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(1),
            card={"brand": "VISA", "last4": "1111", "number": "4111111111111111"},
        )  # fmt: skip
    # Free text that carries a card number is masked before it is written.
    snap = await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="failed", now=at(1),
        card={"brand": "VISA", "last4": "1111"},
        error={"code": "E01170001", "category": "input", "message": "bad 4111111111111111"},
    )  # fmt: skip
    await store.record_gateway_call(
        pool, endpoint="ExecTran", started_at=at(1), duration_ms=12, payment_id=p["id"],
        order_id=order_id, http_status=200, err_code="E01", err_info="E01170001",
        error="echo CardNo=4111111111111111&Expire=3012",
    )  # fmt: skip
    calls = await store.list_gateway_calls(pool, p["id"])
    assert calls[0]["endpoint"] == "ExecTran" and calls[0]["err_info"] == "E01170001"
    assert snap["error"]["message"] == "bad [card?]"
    dump = await _everything(pool)
    assert "4111111111111111" not in dump
    assert not re.search(r"(?<!\d)4111\d{8,15}(?!\d)", dump)


async def _everything(pool: asyncpg.Pool) -> str:
    """Every row of every table, as text."""
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    out = []
    for t in tables:
        out += [str(dict(r)) for r in await pool.fetch(f'SELECT * FROM "{t["tablename"]}"')]
    return "\n".join(out)


async def test_lease_renewal_and_lost_lease(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    q = await new_payment(pool)
    a = await claimed(pool, p, owner="proc-a", now=at(0))
    await claimed(pool, q, owner="proc-b", now=at(0))
    live = [a.token]
    assert await store.renew_leases(pool, "proc-a", now=at(20), lease_s=LEASE_S, tokens=live) == 1
    # proc-b has died: at 40 s only its lease has lapsed.
    resolved = await store.resolve_lapsed_leases(pool, now=at(40))
    assert resolved == [(q["id"], "abandoned")]
    snap = await store.get_payment(pool, q["id"])
    assert snap["error"]["code"] == "call_lost" and snap["call"]["ended_at"] == at(40)
    assert (await store.get_payment(pool, p["id"]))["status"] == "in_call"
    # Abandoned: a new call takes it up; the dead call's token is worthless now.
    await claimed(pool, q, owner="proc-c", now=at(41))
    assert await store.record_progress(pool, p["id"], a.token, now=at(42), step="expiry")


async def test_only_the_named_leases_are_renewed(pool: asyncpg.Pool) -> None:
    """A claim whose call is no longer in progress here (its release failed) is not renewed:
    it lapses, and the sweep resolves it."""
    live_p, stuck_p, other_p = [await new_payment(pool) for _ in range(3)]
    live = await claimed(pool, live_p, owner="proc-a", now=at(0))
    stuck = await claimed(pool, stuck_p, owner="proc-a", now=at(0))
    other = await claimed(pool, other_p, owner="proc-b", now=at(0))

    async def renew(now: float, tokens: list[Any]) -> int:
        return await store.renew_leases(pool, "proc-a", now=at(now), lease_s=LEASE_S, tokens=tokens)

    assert await renew(20, []) == 0
    # Another owner's token and anything that is not a token are ignored.
    assert await renew(20, [live.token, other.token, "not-a-token", None]) == 1
    assert await renew(40, [live.token]) == 1
    resolved = await store.resolve_lapsed_leases(pool, now=at(45))
    assert sorted(resolved) == sorted([(stuck_p["id"], "abandoned"), (other_p["id"], "abandoned")])
    assert (await store.get_payment(pool, live_p["id"]))["status"] == "in_call"
    assert await store.resolve_lapsed_leases(pool, now=at(70)) == []
    assert await store.resolve_lapsed_leases(pool, now=at(71)) == [(live_p["id"], "abandoned")]
    # A resolved claim is never renewed again, named or not.
    assert await renew(72, [live.token, stuck.token]) == 0


async def test_lapsed_lease_while_processing_becomes_unknown(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim, order_id = await processing(pool, p, now=at(0))
    assert await store.resolve_lapsed_leases(pool, now=at(LEASE_S - 1)) == []
    assert await store.resolve_lapsed_leases(pool, now=at(LEASE_S + 1)) == [(p["id"], "unknown")]
    snap = await store.get_payment(pool, p["id"])
    assert snap["executions"][0]["outcome"] == "unknown"
    with pytest.raises(store.LeaseLost):
        await store.record_gateway_result(
            pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(40),
            **SUCCESS,
        )  # fmt: skip
    # Now it is the reconciler's.
    items = await store.claim_reconciliations(pool, now=at(LEASE_S + 1), lease_s=60)
    assert [i["payment"]["id"] for i in items] == [p["id"]]
    assert items[0]["executions"][0]["order_id"] == order_id
    assert items[0]["executions"][0]["access_id"] == "a" * 32


async def test_a_call_already_past_the_gateway_is_just_closed(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim, order_id = await processing(pool, p, now=at(0))
    await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(1), **SUCCESS
    )
    assert await store.resolve_lapsed_leases(pool, now=at(100)) == [(p["id"], "succeeded")]
    snap = await store.get_payment(pool, p["id"])
    assert snap["call"]["ended_at"] == at(100) and snap["error"] is None


# -- every allowed transition, each through the function that makes it ----------------------


async def _reach(pool: asyncpg.Pool, status: str) -> tuple[dict[str, Any], str | None, str | None]:
    """A payment in ``status``: (payment, live claim token or None, current order id or None)."""
    p = await new_payment(pool)
    if status == "pending":
        return p, None, None
    if status in ("in_call", "failed", "abandoned"):
        claim = await claimed(pool, p)
        if status == "in_call":
            return p, claim.token, None
        kwargs = {"error": DECLINE} if status == "failed" else {}
        await store.end_call(pool, p["id"], claim.token, now=at(1), status=status, **kwargs)
        return p, None, None
    claim, order_id = await processing(pool, p)
    if status == "processing":
        return p, claim.token, order_id
    assert status == "unknown"
    await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="unknown", now=at(1)
    )
    await store.end_call(pool, p["id"], claim.token, now=at(2))
    return p, None, order_id


Action = Callable[[asyncpg.Pool, dict[str, Any], str | None, str | None], Awaitable[Any]]


async def _claim(pool, p, tok, oid):
    return await store.claim_payment(pool, p["id"], owner="x", now=at(10), lease_s=LEASE_S)


async def _cancel(pool, p, tok, oid):
    await store.cancel_payment(pool, p["id"], now=at(10))
    if tok is not None:  # requested during the call: the call ends canceled
        await store.end_call(pool, p["id"], tok, now=at(11))


async def _expire(pool, p, tok, oid):
    await store.expire_payments(pool, now=at(3600))


async def _to_processing(pool, p, tok, oid):
    oid = await store.start_execution(
        pool, p["id"], tok, now=at(10), max_per_payment=3, max_per_call=2
    )
    await store.move_to_processing(pool, p["id"], tok, order_id=oid, now=at(10))


def _end(status: str) -> Action:
    async def act(pool, p, tok, oid):
        error = DECLINE if status == "failed" else None
        await store.end_call(pool, p["id"], tok, now=at(10), status=status, error=error)

    return act


def _result(status: str) -> Action:
    async def act(pool, p, tok, oid):
        kwargs: dict[str, Any] = dict(SUCCESS) if status == "succeeded" else {"error": DECLINE}
        if status == "unknown":
            kwargs = {}
        await store.record_gateway_result(
            pool, p["id"], tok, order_id=oid, status=status, now=at(10), **kwargs
        )

    return act


def _reconciled(status: str) -> Action:
    async def act(pool, p, tok, oid):
        kwargs: dict[str, Any] = dict(SUCCESS) if status == "succeeded" else {"error": DECLINE}
        await store.record_reconciliation(
            pool, p["id"], now=at(10), status=status, backoff_s=BACKOFF, horizon_s=86400,
            **kwargs,
        )  # fmt: skip

    return act


ACTIONS: dict[tuple[str, str], Action] = {
    ("pending", "in_call"): _claim,
    ("pending", "canceled"): _cancel,
    ("pending", "expired"): _expire,
    ("in_call", "processing"): _to_processing,
    ("in_call", "abandoned"): _end("abandoned"),
    ("in_call", "canceled"): _cancel,
    ("in_call", "failed"): _end("failed"),
    ("processing", "succeeded"): _result("succeeded"),
    ("processing", "failed"): _result("failed"),
    ("processing", "unknown"): _result("unknown"),
    ("processing", "in_call"): _result("in_call"),
    ("unknown", "succeeded"): _reconciled("succeeded"),
    ("unknown", "failed"): _reconciled("failed"),
    ("failed", "canceled"): _cancel,
    ("failed", "expired"): _expire,
    ("failed", "in_call"): _claim,
    ("abandoned", "canceled"): _cancel,
    ("abandoned", "expired"): _expire,
    ("abandoned", "in_call"): _claim,
}


def test_every_allowed_transition_has_a_test() -> None:
    assert set(ACTIONS) == {(a, b) for a, targets in TRANSITIONS.items() for b in targets}


@pytest.mark.parametrize(("src", "dst"), sorted(ACTIONS))
async def test_allowed_transition(pool: asyncpg.Pool, src: str, dst: str) -> None:
    p, tok, oid = await _reach(pool, src)
    assert (await store.get_payment(pool, p["id"]))["status"] == src
    await ACTIONS[(src, dst)](pool, p, tok, oid)
    snap = await store.get_payment(pool, p["id"])
    assert snap["status"] == dst
    events = await store.list_events(pool, p["id"])
    assert events[-1]["status"] == dst
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


REFUSED = [
    ("succeeded", "claim"),
    ("canceled", "claim"),
    ("unknown", "claim"),
    ("processing", "claim"),
    ("processing", "cancel"),
    ("unknown", "cancel"),
    ("succeeded", "cancel"),
    ("processing", "end_call"),
    ("in_call", "gateway_result"),
    ("succeeded", "reconcile"),
    ("pending", "reconcile"),
    ("in_call", "expire"),
    ("processing", "expire"),
]


@pytest.mark.parametrize(("src", "attempt"), REFUSED)
async def test_refused_transition(pool: asyncpg.Pool, src: str, attempt: str) -> None:
    if src in ("succeeded", "canceled"):
        p, tok, oid = await _reach(pool, "processing" if src == "succeeded" else "pending")
        if src == "succeeded":
            await _result("succeeded")(pool, p, tok, oid)
        else:
            await store.cancel_payment(pool, p["id"], now=at(1))
    else:
        p, tok, oid = await _reach(pool, src)
    before = await store.get_payment(pool, p["id"])
    if attempt == "claim":
        claim = await _claim(pool, p, tok, oid)
        assert not claim.ok
    elif attempt == "cancel":
        with pytest.raises(store.Conflict):
            await store.cancel_payment(pool, p["id"], now=at(10))
    elif attempt == "end_call":
        with pytest.raises(store.InvalidTransition):
            await store.end_call(pool, p["id"], tok, now=at(10), status="abandoned")
    elif attempt == "gateway_result":
        with pytest.raises(store.InvalidTransition):
            await _result("succeeded")(pool, p, tok, "whatever-01")
    elif attempt == "reconcile":
        with pytest.raises(store.InvalidTransition):
            await _reconciled("succeeded")(pool, p, tok, oid)
    elif attempt == "expire":
        assert await store.expire_payments(pool, now=at(10**6)) == []
    assert await store.get_payment(pool, p["id"]) == before  # nothing changed


async def test_the_change_primitive_enforces_the_table(pool: asyncpg.Pool) -> None:
    """Even called directly, a status change outside TRANSITIONS matches no row."""
    p = await new_payment(pool)
    pid = _core.parse_id(p["id"])
    async with pool.acquire() as conn, conn.transaction():
        for target in ("succeeded", "processing", "unknown", "abandoned"):
            assert await _core.change(conn, pid, now=at(1), kind="x", to_status=target) is None
    assert (await store.get_payment(pool, p["id"]))["status"] == "pending"


async def test_end_call_after_the_payment_moved_on_releases_the_claim(
    pool: asyncpg.Pool,
) -> None:
    p = await new_payment(pool)
    claim = await claimed(pool, p)
    for n in (1, 2):
        oid = await store.start_execution(
            pool, p["id"], claim.token, now=at(n), max_per_payment=2, max_per_call=2
        )
        await store.move_to_processing(pool, p["id"], claim.token, order_id=oid, now=at(n))
        await store.record_gateway_result(
            pool, p["id"], claim.token, order_id=oid, status="in_call", now=at(n), error=DECLINE
        )
    with pytest.raises(store.TooManyAttempts):
        await store.start_execution(
            pool, p["id"], claim.token, now=at(3), max_per_payment=2, max_per_call=2
        )
    # The caller hangs up: "abandoned" is moot for a failed payment, the claim still ends.
    snap = await store.end_call(pool, p["id"], claim.token, now=at(4), status="abandoned")
    assert snap["status"] == "failed" and snap["call"]["ended_at"] == at(4)
    live = [claim.token]
    assert await store.renew_leases(pool, "proc-a", now=at(5), lease_s=LEASE_S, tokens=live) == 0
