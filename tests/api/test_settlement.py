"""Capture, void and refund through the real gateway client against the sandbox gateway.

A payment is brought to ``succeeded`` the way the call flow does it (claim, the attempt's OrderID
stored first, EntryTran, processing, ExecTran, the answer recorded); the API then alters the real
transaction, and the sandbox's own view of the order confirms it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ivrpay import store
from ivrpay.api import keys
from ivrpay.gateway import GatewayClient
from ivrpay.payments.settle import Settler, SettleRefused
from ivrpay.sandbox import Sandbox
from ivrpay.store import settlement as settlement_store
from ivrpay.store.db import create_pool
from ivrpay.workers.loops import SettlementChecker
from tests.api.conftest import Clock, MakeClient, body
from tests.support.gateway import (
    SHOP_ID,
    SHOP_PASS,
    SITE_ID,
    SITE_PASS,
    make_card,
    make_gateway_client,
)

P = "/api/v1/payments"


async def succeeded_payment(
    client: TestClient,
    auth: dict[str, str],
    pool: Any,
    gateway: GatewayClient,
    clock: Clock,
    *,
    order_id: str = "SET-1",
    job: str = "AUTH",
) -> dict[str, Any]:
    r = await client.post(P, json=body(order_id=order_id, job=job), headers=auth)
    assert r.status == 201
    p = await r.json()
    claim = await store.claim_payment(pool, p["id"], owner="test", now=clock(), lease_s=30)
    assert claim.ok
    attempt = await store.start_execution(
        pool, p["id"], claim.token, now=clock(), max_per_payment=3, max_per_call=2
    )
    entry = await gateway.entry_tran(attempt, job, p["amount"], p["tax"])
    assert entry.ok, entry
    await store.record_entry(
        pool,
        p["id"],
        claim.token,
        order_id=attempt,
        access_id=entry.access_id,
        access_pass=entry.access_pass,
        now=clock(),
    )
    await store.move_to_processing(pool, p["id"], claim.token, order_id=attempt, now=clock())
    card = make_card("4111111111111111")
    try:
        done = await gateway.exec_tran(attempt, entry.access_id, entry.access_pass, card)
    finally:
        card.wipe()
    assert done.ok, done
    snap = await store.record_gateway_result(
        pool,
        p["id"],
        claim.token,
        order_id=attempt,
        status="succeeded",
        now=clock(),
        result={"approve": done.approve, "tran_id": done.tran_id, "tran_date": done.tran_date},
        card={"brand": "VISA", "last4": "1111"},
    )
    await store.end_call(pool, p["id"], claim.token, now=clock())
    assert snap["status"] == "succeeded"
    return snap


@pytest.fixture
async def gw_client(make_client: MakeClient, gateway_client: GatewayClient) -> TestClient:
    return await make_client(gateway=gateway_client)


Paid = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def paid(auth: dict[str, str], pool: Any, gateway_client: GatewayClient, clock: Clock) -> Paid:
    """``await paid(client, order_id)``: a succeeded AUTH payment created through ``client``."""

    async def make(client: TestClient, order_id: str) -> dict[str, Any]:
        return await succeeded_payment(client, auth, pool, gateway_client, clock, order_id=order_id)

    return make


def orders(sandbox: Sandbox, prefix: str) -> dict[str, Any]:
    """The sandbox's own record of the payment's orders: {OrderID: status}."""
    return {o["order_id"]: o["status"] for o in sandbox.state.orders(prefix)}


async def test_capture_then_refund(
    card_safe_logs: Any,
    gw_client: TestClient,
    auth: dict[str, str],
    pool: Any,
    gateway_client: GatewayClient,
    sandbox: Sandbox,
    clock: Clock,
) -> None:
    p = await succeeded_payment(gw_client, auth, pool, gateway_client, clock)
    assert p["settlement"] == "authorized"
    assert orders(sandbox, "SET-1") == {"SET-1-01": "AUTH"}

    # Refund needs a capture first; void would be fine but is not what we test here.
    r = await gw_client.post(f"{P}/{p['id']}/refund", headers=auth)
    assert r.status == 409

    r = await gw_client.post(f"{P}/{p['id']}/capture", headers=auth)
    assert r.status == 200, await r.text()
    captured = await r.json()
    assert captured["status"] == "succeeded" and captured["settlement"] == "captured"
    assert orders(sandbox, "SET-1") == {"SET-1-01": "SALES"}

    # Repeating is harmless: the same answer, no second AlterTran.
    r = await gw_client.post(f"{P}/{p['id']}/capture", headers=auth)
    assert r.status == 200 and (await r.json())["settlement"] == "captured"

    r = await gw_client.post(f"{P}/{p['id']}/refund", headers=auth)
    assert r.status == 200, await r.text()
    assert (await r.json())["settlement"] == "refunded"
    assert orders(sandbox, "SET-1")["SET-1-01"] in ("RETURN", "RETURNX")

    for action in ("capture", "void"):
        r = await gw_client.post(f"{P}/{p['id']}/{action}", headers=auth)
        assert r.status == 409

    deliveries = await store.list_deliveries(pool, payment_id=p["id"])
    assert deliveries == []  # this client has no webhook: nothing queued, nothing lost


async def test_void_with_idempotency_key(
    gw_client: TestClient,
    auth: dict[str, str],
    pool: Any,
    gateway_client: GatewayClient,
    sandbox: Sandbox,
    clock: Clock,
) -> None:
    p = await succeeded_payment(gw_client, auth, pool, gateway_client, clock, order_id="VOID-1")
    h = {**auth, "Idempotency-Key": "void-1"}
    r1 = await gw_client.post(f"{P}/{p['id']}/void", headers=h)
    r2 = await gw_client.post(f"{P}/{p['id']}/void", headers=h)
    assert r1.status == r2.status == 200
    assert await r1.json() == await r2.json()
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert (await r1.json())["settlement"] == "voided"
    assert orders(sandbox, "VOID-1") == {"VOID-1-01": "VOID"}


async def test_gateway_refusal_and_absence(
    make_client: MakeClient,
    gw_client: TestClient,
    auth: dict[str, str],
    pool: Any,
    gateway_client: GatewayClient,
    sandbox: Sandbox,
    clock: Clock,
) -> None:
    p = await succeeded_payment(gw_client, auth, pool, gateway_client, clock, order_id="ERR-1")

    # No gateway configured: 503, and the payment is unchanged.
    bare = await make_client()
    r = await bare.post(f"{P}/{p['id']}/capture", headers=auth)
    assert r.status == 503 and (await r.json())["type"] == "urn:ivrpay:problem:gateway-unavailable"

    # The gateway fails (HTTP 500 on the lookup): 502 with nothing recorded.
    sandbox.add_fault("*", "http500", count=5)
    r = await gw_client.post(f"{P}/{p['id']}/capture", headers=auth)
    assert r.status in (502, 504), await r.text()
    assert r.content_type == "application/problem+json"
    sandbox.clear_faults()
    again = await (await gw_client.get(f"{P}/{p['id']}", headers=auth)).json()
    assert again["settlement"] == "authorized"
    assert orders(sandbox, "ERR-1") == {"ERR-1-01": "AUTH"}

    # And once the gateway is back, the same request goes through.
    r = await gw_client.post(f"{P}/{p['id']}/capture", headers=auth)
    assert r.status == 200 and (await r.json())["settlement"] == "captured"


async def test_capture_is_only_for_authorizations(
    gw_client: TestClient,
    auth: dict[str, str],
    pool: Any,
    gateway_client: GatewayClient,
    clock: Clock,
) -> None:
    p = await succeeded_payment(
        gw_client, auth, pool, gateway_client, clock, order_id="CAP-1", job="CAPTURE"
    )
    assert p["settlement"] == "captured"
    r = await gw_client.post(f"{P}/{p['id']}/capture", headers=auth)
    assert r.status == 200 and (await r.json())["settlement"] == "captured"  # already so
    r = await gw_client.post(f"{P}/{p['id']}/refund", headers=auth)
    assert r.status == 200 and (await r.json())["settlement"] == "refunded"


# -- across processes (issue 9.2) -----------------------------------------------------------------
class HookedGateway(GatewayClient):
    """The real client; right after each AlterTran, ``after_alter()`` runs (a fault hook)."""

    after_alter: Any = None

    async def alter_tran(self, *args: Any, **kw: Any) -> Any:
        answer = await super().alter_tran(*args, **kw)
        if self.after_alter is not None:
            self.after_alter()
        return answer


@pytest.fixture
async def two_services(
    make_client: MakeClient, sandbox: Sandbox, database_url: str
) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Two services on one database: each its own pool, gateway client and payment process."""
    pools = [await create_pool(database_url, min_size=1, max_size=5) for _ in range(2)]
    async with make_gateway_client(sandbox) as gw_a, make_gateway_client(sandbox) as gw_b:
        a = await make_client(pool=pools[0], gateway=gw_a)
        b = await make_client(pool=pools[1], gateway=gw_b)
        assert a.app[keys.PAYMENTS] is not b.app[keys.PAYMENTS]
        yield a, b
    for p in pools:
        await p.close()


async def alter_trans(pool: Any, payment_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM gateway_calls WHERE payment_id = $1 AND endpoint = 'AlterTran'",
            uuid.UUID(payment_id),
        )
    )


async def test_two_services_capture_and_refund_at_once_send_one_alter_tran_each(
    two_services: tuple[TestClient, TestClient],
    paid: Paid,
    auth: dict[str, str],
    pool: Any,
    sandbox: Sandbox,
) -> None:
    a, b = two_services
    p = await paid(a, "TWO-1")
    for n, (action, done) in enumerate((("capture", "captured"), ("refund", "refunded")), 1):
        # Three requests at each service at once (two screens, a retried request).
        answers = await asyncio.gather(
            *(c.post(f"{P}/{p['id']}/{action}", headers=auth) for c in (a, b) * 3)
        )
        statuses = sorted(r.status for r in answers)
        assert set(statuses) <= {200, 409} and 200 in statuses, statuses
        for r in answers:
            doc = await r.json()
            if r.status == 409:
                assert doc["type"] == "urn:ivrpay:problem:settlement-in-progress"
            else:
                assert doc["settlement"] == done
        # One AlterTran per action at the gateway, and each is in the gateway-call log.
        assert sandbox.state.requests["AlterTran"] == n
        assert await alter_trans(pool, p["id"]) == n
    assert orders(sandbox, "TWO-1") == {"TWO-1-01": "RETURN"}
    intents = await settlement_store.get_settlement_intents(pool, p["id"])
    assert [(i.action, i.state, i.sends) for i in intents] == [
        ("capture", "done", 1),
        ("refund", "done", 1),
    ]
    final = await (await b.get(f"{P}/{p['id']}", headers=auth)).json()
    assert final["settlement"] == "refunded"


@dataclass
class Lost:
    """A capture whose AlterTran answer was lost (see the ``lost_capture`` fixture)."""

    svc: TestClient
    payment: dict[str, Any]
    checker: SettlementChecker
    pool: Any
    sandbox: Sandbox

    async def intent(self) -> tuple[str, int]:
        [intent] = await settlement_store.get_settlement_intents(self.pool, self.payment["id"])
        return intent.state, intent.sends

    async def capture(self, auth: dict[str, str]) -> Any:
        return await self.svc.post(f"{P}/{self.payment['id']}/capture", headers=auth)

    async def alter_trans(self) -> tuple[int, int]:
        """AlterTrans at the sandbox, and in the gateway-call log."""
        logged = await alter_trans(self.pool, self.payment["id"])
        return self.sandbox.state.requests["AlterTran"], logged


@pytest.fixture
def lost_capture(
    make_client: MakeClient, paid: Paid, auth: dict[str, str], pool: Any, sandbox: Sandbox
) -> Callable[..., Awaitable[Lost]]:
    """A capture whose AlterTran answer is lost (``alter_fault``) and whose look-up right after
    fails too: 504, the intent ``unknown``, the payment still ``authorized``, and nothing else
    sent for it meanwhile."""

    async def make(order_id: str, alter_fault: str = "drop_answer") -> Lost:
        hooked = HookedGateway(sandbox.url, SHOP_ID, SHOP_PASS, SITE_ID, SITE_PASS, timeout_s=1.0)
        hooked.after_alter = lambda: sandbox.add_fault("SearchTrade", "http500", 1)
        svc = await make_client(gateway=hooked)
        p = await paid(svc, order_id)
        checker = SettlementChecker(
            pool, svc.app[keys.PAYMENTS].check_settlement, interval_s=1, lease_s=60
        )
        lost = Lost(svc, p, checker, pool, sandbox)
        sandbox.add_fault("AlterTran", alter_fault, 1)
        r = await lost.capture(auth)
        assert r.status == 504, await r.text()
        assert (await r.json())["type"] == "urn:ivrpay:problem:gateway-outcome-unknown"
        hooked.after_alter = None
        assert await lost.intent() == ("unknown", 1)
        assert (await store.get_payment(pool, p["id"]))["settlement"] == "authorized"  # type: ignore[index]
        r = await svc.post(f"{P}/{p['id']}/void", headers=auth)
        assert r.status == 409
        assert (await r.json())["type"] == "urn:ivrpay:problem:settlement-in-progress"
        return lost

    return make


async def test_a_lost_answer_is_settled_by_search_trade_on_the_retried_request(
    lost_capture: Callable[..., Awaitable[Lost]], auth: dict[str, str], sandbox: Sandbox
) -> None:
    lost = await lost_capture("LOST-1")
    assert orders(sandbox, "LOST-1") == {"LOST-1-01": "SALES"}  # it did go through
    r = await lost.capture(auth)
    assert r.status == 200 and (await r.json())["settlement"] == "captured"
    assert await lost.alter_trans() == (1, 1)  # looked up, not sent again
    assert await lost.intent() == ("done", 1)


async def test_a_lost_answer_is_settled_by_the_background_checker(
    lost_capture: Callable[..., Awaitable[Lost]], pool: Any, clock: Clock
) -> None:
    lost = await lost_capture("LOST-2")
    assert await lost.checker.run_once(clock()) == 0  # not due yet: the back-off
    assert await lost.checker.run_once(clock.advance(3600)) == 1
    snap = await store.get_payment(pool, lost.payment["id"])
    assert snap is not None and snap["settlement"] == "captured"
    assert await lost.alter_trans() == (1, 1)
    assert await lost.intent() == ("done", 1)
    assert await lost.checker.run_once(clock.advance(3600)) == 0


async def test_an_alter_tran_never_processed_is_found_not_done_then_sent_again(
    lost_capture: Callable[..., Awaitable[Lost]],
    auth: dict[str, str],
    sandbox: Sandbox,
    clock: Clock,
) -> None:
    """An unreadable answer (HTTP 500: not processed) is unknown to us; the checker trusts the
    unchanged order only after IVRPAY_RECONCILE_AFTER_S, then a retried request sends again."""
    lost = await lost_capture("LOST-3", alter_fault="http500")
    assert orders(sandbox, "LOST-3") == {"LOST-3-01": "AUTH"}
    settings = lost.svc.app[keys.PAYMENTS].settings
    first_look = settings.reconcile_backoff_s[0]
    assert first_look < settings.reconcile_after_s
    assert await lost.checker.run_once(clock.advance(first_look)) == 1
    assert (await lost.intent())[0] == "unknown"  # a fresh send may still be on its way
    assert await lost.checker.run_once(clock.advance(settings.reconcile_after_s)) == 1
    assert (await lost.intent())[0] == "open"
    r = await lost.capture(auth)
    assert r.status == 200 and (await r.json())["settlement"] == "captured"
    assert await lost.alter_trans() == (2, 2)
    assert orders(sandbox, "LOST-3") == {"LOST-3-01": "SALES"}


async def test_a_claim_that_lapsed_before_sending_sends_nothing(
    gw_client: TestClient, paid: Paid, auth: dict[str, str], sandbox: Sandbox, clock: Clock
) -> None:
    """A holder slower than its lease (here: each look at the clock 30 s later) may no longer
    send: another may have claimed the intent meanwhile."""
    p = await paid(gw_client, "LATE-1")
    pool, gateway_client = gw_client.app[keys.PAYMENTS].pool, gw_client.app[keys.PAYMENTS].gateway

    def slow_clock() -> Any:
        return clock.advance(30)

    settler = Settler(pool, gateway_client, slow_clock, 20, (30,), 300)
    with pytest.raises(SettleRefused) as refused:
        await settler.settle(p["id"], "capture", actor="test")
    assert refused.value.reason == "in_progress"
    assert sandbox.state.requests["AlterTran"] == 0
    assert sandbox.state.requests["SearchTrade"] == 1  # looked, then found the claim gone
    [intent] = await settlement_store.get_settlement_intents(pool, p["id"])
    assert (intent.state, intent.sends) == ("sending", 0)  # lapsed: claimable again
    r = await gw_client.post(f"{P}/{p['id']}/capture", headers=auth)
    assert r.status == 200 and (await r.json())["settlement"] == "captured"
    assert sandbox.state.requests["AlterTran"] == 1


@pytest.mark.parametrize(
    ("fault", "sent"),
    [("drop_answer", 1), ("timeout", 1), ("http500", 2)],
    ids=["lost-after-processing", "held-past-the-timeout", "not-processed"],
)
async def test_a_lost_alter_tran_answer_is_looked_up_at_once(
    make_client: MakeClient,
    paid: Paid,
    auth: dict[str, str],
    pool: Any,
    sandbox: Sandbox,
    fault: str,
    sent: int,
) -> None:
    """SearchTrade right after: an AlterTran that went through is not sent again; one that never
    reached the order (unchanged) is sent once more by the same holder."""
    async with make_gateway_client(sandbox, timeout_s=0.3) as quick:
        svc = await make_client(gateway=quick)
        p = await paid(svc, f"ALT-{sent}-{fault[:4]}")
        sandbox.add_fault("AlterTran", fault, 1)
        r = await svc.post(f"{P}/{p['id']}/capture", headers=auth)
        assert r.status == 200 and (await r.json())["settlement"] == "captured"
    assert sandbox.state.requests["AlterTran"] == sent
    assert await alter_trans(pool, p["id"]) == sent  # each one in the gateway-call log
    [intent] = await settlement_store.get_settlement_intents(pool, p["id"])
    assert (intent.state, intent.sends) == ("done", sent)
