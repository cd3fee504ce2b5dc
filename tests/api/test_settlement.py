"""Capture, void and refund through the real gateway client against the sandbox gateway.

A payment is brought to ``succeeded`` the way the call flow does it (claim, the attempt's OrderID
stored first, EntryTran, processing, ExecTran, the answer recorded); the API then alters the real
transaction, and the sandbox's own view of the order confirms it.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ivrpay import store
from ivrpay.gateway import GatewayClient
from ivrpay.sandbox import Sandbox
from tests.api.conftest import Clock, MakeClient, body
from tests.support.gateway import make_card

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
