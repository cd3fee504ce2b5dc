"""The lease renewer keeps alive only the calls in progress in this process: a claim whose
release failed lapses after IVRPAY_LEASE_S and the sweep resolves it."""

from __future__ import annotations

import asyncpg

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.workers import LeaseRenewer, LeaseSweeper, Workers
from tests.store.helpers import LEASE_S, at, claimed, new_payment, processing


async def test_a_claim_whose_release_failed_lapses_and_is_swept(pool: asyncpg.Pool) -> None:
    """Two calls of this process; the first ends but its ``end_call`` never reached the
    database (its token leaves the live set all the same, as the flow's release does)."""
    live: set[str] = set()
    stuck_p, live_p = await new_payment(pool), await new_payment(pool)
    stuck, _order = await processing(pool, stuck_p, now=at(0))
    ongoing = await claimed(pool, live_p, owner="proc-a", now=at(0))
    live |= {stuck.token, ongoing.token}
    renewer = LeaseRenewer(pool, "proc-a", lease_s=LEASE_S, live_tokens=lambda: live)
    sweeper = LeaseSweeper(pool, interval_s=1)

    assert await renewer.run_once(at(10)) == 2
    live.discard(stuck.token)  # the call is over; its release failed
    for t in range(20, 200, 10):  # the process lives on, renewing every 10 s
        assert await renewer.run_once(at(t)) == 1
        resolved = await sweeper.run_once(at(t))
        assert resolved == (1 if t == 50 else 0), t  # lapsed at 40: 10 + LEASE_S
    snap = await store.get_payment(pool, stuck_p["id"])
    # It was processing: the gateway's answer was never recorded, so reconcile it.
    assert snap["status"] == "unknown" and snap["error"]["code"] == "call_lost"
    assert len(await store.claim_reconciliations(pool, now=at(200), lease_s=60)) == 1
    assert (await store.get_payment(pool, live_p["id"]))["status"] == "in_call"


async def test_no_live_calls_no_renewal(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    await claimed(pool, p, owner="proc-a", now=at(0))
    renewer = LeaseRenewer(pool, "proc-a", lease_s=LEASE_S)  # no calls named: none renewed
    assert await renewer.run_once(at(10)) == 0
    assert await store.resolve_lapsed_leases(pool, now=at(LEASE_S + 1)) == [(p["id"], "abandoned")]


async def test_workers_wire_the_live_tokens(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    claim = await claimed(pool, p, owner="proc-a", now=at(0))
    live = {claim.token}
    workers = Workers(Settings(), pool, owner="proc-a", live_tokens=lambda: live)
    assert await workers.loop(LeaseRenewer).run_once(at(20)) == 1
    live.clear()
    assert await workers.loop(LeaseRenewer).run_once(at(40)) == 0
    assert await workers.loop(LeaseSweeper).run_once(at(51)) == 1
