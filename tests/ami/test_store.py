"""The store's take-back record and the relayed redirects, on real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ivrpay import store
from tests.store.helpers import T0, at, claimed, new_payment, processing

CHANNEL = "PJSIP/caller-00000001"


async def _in_call(pool: asyncpg.Pool) -> tuple[dict, store.Claim]:
    p = await new_payment(pool)
    claim = await store.claim_payment(
        pool, p["id"], owner="proc-a", now=T0, lease_s=60, channel=CHANNEL
    )
    assert claim.ok
    return p, claim


async def test_mark_clear_and_a_new_call_starts_clean(pool: asyncpg.Pool) -> None:
    p, claim = await _in_call(pool)
    # EntryTran of an attempt is on its way when the take-back arrives.
    order_id = await store.start_execution(
        pool, p["id"], claim.token, now=at(0), max_per_payment=3, max_per_call=2
    )
    snap, channel = await store.mark_taken_back(pool, p["id"], by="screen:opera", now=at(1))
    assert channel == CHANNEL
    assert snap["taken_back"] == {"by": "screen:opera", "at": at(1).isoformat(), "process": None}
    with pytest.raises(store.Conflict) as info:
        await store.mark_taken_back(pool, p["id"], by="screen:opera", now=at(2))
    assert info.value.code == "already_taken_back"
    done = await store.confirm_taken_back(
        pool, p["id"], at=snap["taken_back"]["at"], process="host:1:ab", now=at(2)
    )
    assert done is not None and done["taken_back"]["process"] == "host:1:ab"
    # The call may not start a gateway execution now, nor send the one it opened.
    with pytest.raises(store.TakenBack):
        await store.start_execution(
            pool, p["id"], claim.token, now=at(3), max_per_payment=3, max_per_call=2
        )
    with pytest.raises(store.TakenBack):
        await store.move_to_processing(pool, p["id"], claim.token, order_id=order_id, now=at(3))
    ended = await store.end_call(pool, p["id"], claim.token, now=at(4))
    assert ended["status"] == "abandoned" and ended["taken_back"]["by"] == "screen:opera"
    assert [e["outcome"] for e in ended["executions"]] == ["abandoned"]
    # A new call of the same payment is not taken back.
    again = await store.claim_payment(pool, p["id"], owner="proc-a", now=at(5), lease_s=60)
    assert again.ok and again.payment is not None and again.payment["taken_back"] is None


async def test_a_failed_redirect_clears_the_record(pool: asyncpg.Pool) -> None:
    p, _claim = await _in_call(pool)
    snap, _ = await store.mark_taken_back(pool, p["id"], by="api:x", now=at(1))
    cleared = await store.clear_taken_back(
        pool, p["id"], at=snap["taken_back"]["at"], now=at(2), reason="refused"
    )
    assert cleared is not None and cleared["taken_back"] is None
    assert (
        await store.clear_taken_back(
            pool, p["id"], at=snap["taken_back"]["at"], now=at(3), reason="refused"
        )
        is None
    )


async def test_refusals(pool: asyncpg.Pool) -> None:
    pending = await new_payment(pool)
    with pytest.raises(store.Conflict, match="not in the IVR"):
        await store.mark_taken_back(pool, pending["id"], by="api:x", now=at(1))
    assert store.take_back_conflict(pending) == "not_in_ivr"
    no_channel = await new_payment(pool)
    await claimed(pool, no_channel)
    with pytest.raises(store.Conflict) as info:
        await store.mark_taken_back(pool, no_channel["id"], by="api:x", now=at(1))
    assert info.value.code == "not_in_ivr"
    busy = await new_payment(pool)
    await processing(pool, busy)
    with pytest.raises(store.Conflict) as info:
        await store.mark_taken_back(pool, busy["id"], by="api:x", now=at(1))
    assert info.value.code == "execution_in_flight"
    with pytest.raises(store.NotFound):
        await store.mark_taken_back(pool, "not-an-id", by="api:x", now=at(1))


async def test_relayed_redirects_are_claimed_once(pool: asyncpg.Pool) -> None:
    p, _ = await _in_call(pool)
    rid = await store.queue_redirect(
        pool,
        payment_id=p["id"],
        channel=CHANNEL,
        context="ivrpay-takeback",
        variables={"IVRPAY_CALLBACK": "PJSIP/1001"},
        now=at(0),
        wait_s=3,
    )
    a, b = await asyncio.gather(
        store.claim_redirects(pool, owner="proc-a", now=at(1)),
        store.claim_redirects(pool, owner="proc-b", now=at(1)),
    )
    claims = a + b
    assert [c["id"] for c in claims] == [rid]
    assert claims[0]["variables"] == {"IVRPAY_CALLBACK": "PJSIP/1001"}
    assert not await store.expire_redirect(pool, rid, now=at(2))  # claimed: not expired
    await store.finish_redirect(pool, rid, outcome="ok", now=at(2))
    row = await store.get_redirect(pool, rid)
    assert row is not None and row["outcome"] == "ok" and row["claimed_by"] in ("proc-a", "proc-b")
    # One nobody claims in time expires, and is never claimed afterwards.
    late = await store.queue_redirect(
        pool, payment_id=p["id"], channel=CHANNEL, context="c", variables={}, now=at(10), wait_s=3
    )
    assert await store.claim_redirects(pool, owner="proc-a", now=at(14)) == []
    assert await store.expire_redirect(pool, late, now=at(14))
    assert await store.purge_redirects(pool, before=at(5)) == 1
    assert await store.get_redirect(pool, rid) is None


async def test_a_claim_given_back_is_open_again(pool: asyncpg.Pool) -> None:
    """A process that claimed a relayed redirect and lost its link gives it back: another
    process claims it (or it expires); it is never left claimed and unanswered."""
    payment = await new_payment(pool)
    now = T0
    rid = await store.queue_redirect(
        pool,
        payment_id=payment["id"],
        channel="PJSIP/x-1",
        context="ivrpay-takeback",
        variables={},
        now=now,
        wait_s=60,
    )
    (row,) = await store.claim_redirects(pool, owner="a", now=now)
    await store.unclaim_redirect(pool, rid, owner="b")  # not b's: unchanged
    assert (await store.get_redirect(pool, rid))["claimed_by"] == "a"  # type: ignore[index]
    await store.unclaim_redirect(pool, row["id"], owner="a")
    (again,) = await store.claim_redirects(pool, owner="b", now=now)
    assert again["id"] == rid and again["claimed_by"] == "b"
