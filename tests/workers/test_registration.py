"""The registration retrier over the sandbox gateway: TradedCard again for a charge_and_register
whose card storage did not get through in the call."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.gateway import GatewayClient
from ivrpay.payments import PaymentProcess
from ivrpay.sandbox import Sandbox
from ivrpay.workers import RegistrationOutcome, RegistrationRetrier
from tests.store.helpers import at, entered, exec_card, new_payment

BACKOFF = (30, 60, 120, 300, 900)
DAY = 86400.0
LOST = {"code": "unknown", "category": "unknown", "message": "unreadable answer: HTTP 500"}


async def _charged(
    pool: asyncpg.Pool, gw: GatewayClient, member_id: str, *, execute: bool = True
) -> tuple[dict[str, Any], str]:
    """A charge_and_register charged at the sandbox at 0 s whose registration is pending (as the
    call leaves it when TradedCard could not be reached). ``execute=False``: the order was only
    entered, so the gateway will refuse to store its card."""
    now = at(0)
    p = await new_payment(pool, operation="charge_and_register", member_id=member_id, now=now)
    claim, order_id, entry = await entered(pool, gw, p, now=now)
    tok = claim.token
    if execute:
        assert (await exec_card(gw, order_id, entry, "4111111111111111")).ok
    await store.record_gateway_result(
        pool, p["id"], tok, order_id=order_id, status="succeeded", now=now,
        result={"approve": "1234567", "tran_id": "1" * 28}, card={"brand": "VISA", "last4": "1111"},
        registration={"status": "pending", "card_seq": None, "error": LOST},
    )  # fmt: skip
    await store.end_call(pool, p["id"], tok, now=now)
    return p, order_id


def _retrier(pool: asyncpg.Pool, gw: GatewayClient, horizon_s: float = DAY) -> RegistrationRetrier:
    return RegistrationRetrier(
        pool,
        PaymentProcess(pool, gw, Settings()).retry_registration,
        backoff_s=BACKOFF,
        horizon_s=horizon_s,
        interval_s=1,
    )


def _stored(sandbox: Sandbox, member_id: str) -> list[Any]:
    for m in sandbox.state.members():
        if m["member_id"] == member_id:
            return list(m["cards"])  # type: ignore[arg-type]
    return []


async def test_traded_card_is_retried_until_the_card_is_stored(
    pool: asyncpg.Pool, database_url: str, gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    p, order_id = await _charged(pool, gateway_client, "cust-1")
    retrier = _retrier(pool, gateway_client)
    sandbox.add_fault("TradedCard", "http500", count=4)  # two runs, each sending it twice

    assert await retrier.run_once(at(1)) == 1
    assert (await store.get_payment(pool, p["id"]))["registration"]["status"] == "pending"
    assert await retrier.run_once(at(30)) == 0  # back-off: 30 s after the first retry
    assert await retrier.run_once(at(31)) == 1
    assert (await store.get_payment(pool, p["id"]))["registration"]["status"] == "pending"
    assert sandbox.state.requests["TradedCard"] == 4
    assert _stored(sandbox, "cust-1") == []

    listener = store.PaymentListener(database_url)
    await listener.start()
    try:
        async with listener.subscribe(p["id"]) as changes:
            assert await retrier.run_once(at(91)) == 1  # 60 s after the second
            pid, seq = await asyncio.wait_for(changes.get(), 10)  # what SSE is woken by
    finally:
        await listener.close()
    after = await store.get_payment(pool, p["id"])
    assert (pid, seq) == (p["id"], max(e["seq"] for e in await store.list_events(pool, pid)))
    assert after["status"] == "succeeded"
    assert after["registration"] == {"status": "succeeded", "card_seq": 0, "error": None}
    assert [c["card_no"] for c in _stored(sandbox, "cust-1")] == ["************1111"]
    assert sandbox.state.successes(order_id.rsplit("-", 1)[0]) == 1  # stored, not charged again
    calls = await store.list_gateway_calls(pool, p["id"])
    assert [(c["endpoint"], c["outcome"]) for c in calls] == [
        ("TradedCard", "unknown"),
        ("TradedCard", "unknown"),
        ("TradedCard", "ok"),
    ]
    assert await retrier.run_once(at(DAY)) == 0


async def test_the_gateways_refusal_fails_the_registration(
    pool: asyncpg.Pool, gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    p, _ = await _charged(pool, gateway_client, "cust-2", execute=False)
    assert await _retrier(pool, gateway_client).run_once(at(1)) == 1
    after = await store.get_payment(pool, p["id"])
    assert after["status"] == "succeeded"
    reg = after["registration"]
    assert (reg["status"], reg["card_seq"], reg["error"]["code"]) == ("failed", None, "E01110010")
    assert sandbox.state.requests["TradedCard"] == 1
    assert await _retrier(pool, gateway_client).run_once(at(DAY)) == 0


async def test_an_unreachable_gateway_is_retried_up_to_the_horizon(
    pool: asyncpg.Pool, gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    p, _ = await _charged(pool, gateway_client, "cust-3")
    sandbox.add_fault("TradedCard", "http500", count=100)
    retrier = _retrier(pool, gateway_client, horizon_s=60)
    assert await retrier.run_once(at(1)) == 1
    assert await retrier.run_once(at(31)) == 1
    assert (await store.get_payment(pool, p["id"]))["registration"]["status"] == "pending"
    assert await retrier.run_once(at(90)) == 0
    assert await retrier.run_once(at(91)) == 1  # pending for more than 60 s: given up
    reg = (await store.get_payment(pool, p["id"]))["registration"]
    assert (reg["status"], reg["error"]["category"]) == ("failed", "unknown")
    assert await retrier.run_once(at(DAY)) == 0


async def test_an_exception_is_a_retry(pool: asyncpg.Pool, gateway_client: GatewayClient) -> None:
    p, order_id = await _charged(pool, gateway_client, "cust-4")
    seen: list[tuple[str, str, datetime]] = []

    async def broken(item: dict[str, Any]) -> RegistrationOutcome:
        seen.append((item["order_id"], item["member_id"], item["now"]))
        raise RuntimeError("gateway client broke")

    retrier = RegistrationRetrier(pool, broken, backoff_s=BACKOFF, horizon_s=DAY, interval_s=1)
    assert await retrier.run_once(at(5)) == 1
    assert seen == [(order_id, "cust-4", at(5))]
    assert (await store.get_payment(pool, p["id"]))["registration"]["status"] == "pending"
    assert await retrier.run_once(at(34)) == 0
    assert await retrier.run_once(at(35)) == 1
