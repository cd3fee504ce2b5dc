"""The reconciler judges "old enough to trust UNPROCESSED" by its own ``now``, not by the gateway
client's clock: a run at a chosen moment is all a test (or a late process) needs."""

from __future__ import annotations

import asyncpg

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.gateway import GatewayClient
from ivrpay.payments import PaymentProcess
from ivrpay.sandbox import Sandbox
from ivrpay.workers import Reconciler
from tests.store.helpers import LEASE_S, at, claimed, entered, exec_card, new_payment
from tests.support.gateway import GATEWAY_TIMEOUT_CARD, make_card

BACKOFF = (30, 60, 120, 300, 900)


async def test_unprocessed_is_trusted_by_the_reconcilers_clock(
    pool: asyncpg.Pool, gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    """4000000000000101 sent at 0 s (years away from the client's clock): unknown while the send
    is younger than reconcile_after_s (300 s) at the run's ``now``, then failed."""
    p = await new_payment(pool, now=at(0))
    claim, order_id, entry = await entered(pool, gateway_client, p, now=at(0))
    tok = claim.token
    sent = await exec_card(gateway_client, order_id, entry, GATEWAY_TIMEOUT_CARD)
    assert (sent.kind, sent.err_code) == ("unknown", "E91020001")
    await store.record_gateway_result(
        pool, p["id"], tok, order_id=order_id, status="unknown", now=at(0),
        error={"code": "E91020001", "category": "unknown", "message": None},
    )  # fmt: skip
    await store.end_call(pool, p["id"], tok, now=at(1))

    reconciler = _reconciler(pool, gateway_client)
    assert await reconciler.run_once(at(1)) == 1
    assert await reconciler.run_once(at(31)) == 1  # 31 s after the send: still too soon
    assert (await store.get_payment(pool, p["id"]))["status"] == "unknown"
    assert await reconciler.run_once(at(300)) == 1  # due at 91; 300 s after the send
    final = await store.get_payment(pool, p["id"])
    assert final["status"] == "failed" and final["error"]["category"] == "system"
    assert final["progress"]["step"] == "done"  # not left "processing" (issue 13.7a)
    assert final["executions"][0]["outcome"] == "system"
    assert sandbox.state.executions(p["order_id"]) == 1
    assert sandbox.state.successes(p["order_id"]) == 0
    calls = await store.list_gateway_calls(pool, p["id"])
    assert [c["outcome"] for c in calls] == ["unknown", "unknown", "not_executed"]


async def _register_left_unknown(pool: asyncpg.Pool, member_id: str) -> dict:
    """A ``register`` payment whose SaveCard answer was lost: unknown, card VISA *1111 keyed."""
    p = await new_payment(pool, now=at(0), operation="register", member_id=member_id, amount=0)
    tok = (await claimed(pool, p, now=at(0))).token
    order_id = await store.start_execution(
        pool, p["id"], tok, now=at(0), max_per_payment=3, max_per_call=2
    )
    await store.move_to_processing(pool, p["id"], tok, order_id=order_id, now=at(0))
    await store.record_gateway_result(
        pool, p["id"], tok, order_id=order_id, status="unknown", now=at(0),
        error={"code": "unknown", "category": "unknown", "message": None},
        card={"brand": "VISA", "last4": "1111"},
    )  # fmt: skip
    await store.end_call(pool, p["id"], tok, now=at(1))
    return p


def _reconciler(pool: asyncpg.Pool, gateway_client: GatewayClient) -> Reconciler:
    reconcile = PaymentProcess(pool, gateway_client, Settings()).reconcile
    return Reconciler(pool, reconcile, backoff_s=BACKOFF, horizon_s=86400, interval_s=1)


async def test_a_register_whose_card_is_at_the_gateway_is_reconciled_by_search_card(
    pool: asyncpg.Pool, gateway_client: GatewayClient
) -> None:
    p = await _register_left_unknown(pool, "member-rec-1")
    card = make_card("4111111111111111")
    try:
        saved = await gateway_client.register("member-rec-1", card)  # it did go through
    finally:
        card.wipe()
    assert saved.ok and saved.card_seq is not None
    assert await _reconciler(pool, gateway_client).run_once(at(2)) == 1
    final = await store.get_payment(pool, p["id"])
    assert final["status"] == "succeeded"
    assert final["registration"] == {
        "status": "succeeded",
        "card_seq": saved.card_seq,
        "error": None,
    }
    assert final["result"]["card_seq"] == saved.card_seq
    assert final["settlement"] is None


async def test_a_register_without_its_card_fails_only_once_the_window_has_passed(
    pool: asyncpg.Pool, gateway_client: GatewayClient
) -> None:
    p = await _register_left_unknown(pool, "member-rec-2")
    reconciler = _reconciler(pool, gateway_client)
    assert await reconciler.run_once(at(2)) == 1  # no card yet, but too soon to trust that
    assert (await store.get_payment(pool, p["id"]))["status"] == "unknown"
    assert await reconciler.run_once(at(400)) == 1
    final = await store.get_payment(pool, p["id"])
    assert final["status"] == "failed"
    assert final["error"]["code"] == "not_stored"
    assert final["registration"]["status"] == "failed"


async def test_a_payment_settled_after_its_call_was_lost_leaves_processing_behind(
    pool: asyncpg.Pool, gateway_client: GatewayClient
) -> None:
    """Issue 13.7a: the call's process died while ExecTran was out (the step stayed
    ``processing``); the sweep makes it unknown and the reconciler settles it: the step is done."""
    p = await new_payment(pool, now=at(0))
    _claim, order_id, entry = await entered(pool, gateway_client, p, now=at(0))
    assert (await exec_card(gateway_client, order_id, entry, "4111111111111111")).ok
    assert await store.resolve_lapsed_leases(pool, now=at(LEASE_S + 1)) == [(p["id"], "unknown")]
    lost = await store.get_payment(pool, p["id"])
    assert lost["progress"]["step"] == "processing"
    assert await _reconciler(pool, gateway_client).run_once(at(LEASE_S + 2)) == 1
    final = await store.get_payment(pool, p["id"])
    assert final["status"] == "succeeded"
    assert final["progress"]["step"] == "done"
