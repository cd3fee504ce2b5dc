"""The reconciler wired to the real gateway client and the local sandbox gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.gateway import GatewayClient
from ivrpay.payments import PaymentProcess
from ivrpay.workers import Reconciler
from tests.store.helpers import entered, exec_card, new_payment

BACKOFF = (30, 60, 120, 300, 900)


async def _unknown_after(
    pool: asyncpg.Pool, gw: GatewayClient, sent_at: datetime, *, execute: bool
) -> tuple[dict[str, Any], str]:
    """A payment whose attempt went to the gateway at ``sent_at`` (EntryTran, and ExecTran when
    ``execute``) and whose answer the call never got."""
    p = await new_payment(pool, now=sent_at - timedelta(minutes=1))
    claim, order_id, entry = await entered(pool, gw, p, now=sent_at)
    tok = claim.token
    if execute:
        assert (await exec_card(gw, order_id, entry, "4111111111111111")).ok
    await store.record_gateway_result(
        pool, p["id"], tok, order_id=order_id, status="unknown", now=sent_at,
        card={"brand": "VISA", "last4": "1111"},
    )  # fmt: skip
    await store.end_call(pool, p["id"], tok, now=sent_at)
    return p, order_id


async def test_reconciler_over_the_sandbox(
    pool: asyncpg.Pool, gateway_client: GatewayClient
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(minutes=10)
    charged, charged_order = await _unknown_after(pool, gateway_client, old, execute=True)
    never, _ = await _unknown_after(pool, gateway_client, old, execute=False)
    fresh, _ = await _unknown_after(pool, gateway_client, now, execute=False)

    reconciler = Reconciler(
        pool,
        PaymentProcess(pool, gateway_client, Settings()).reconcile,
        backoff_s=BACKOFF,
        horizon_s=86400,
        interval_s=1,
    )
    assert await reconciler.run_once(now) == 3

    a = await store.get_payment(pool, charged["id"])
    assert a["status"] == "succeeded" and a["settlement"] == "authorized"
    assert a["result"]["tran_id"] and a["result"]["approve"]
    assert a["card"] == {"brand": "VISA", "last4": "1111"}
    assert a["executions"] == [
        {"order_id": charged_order, "started_at": old, "outcome": "succeeded", "error": None}
    ]
    assert (await store.get_gateway_handle(pool, charged["id"]))["order_id"] == charged_order

    b = await store.get_payment(pool, never["id"])
    assert b["status"] == "failed" and b["error"]["category"] == "system"
    assert b["executions"][0]["outcome"] == "system"

    c = await store.get_payment(pool, fresh["id"])
    assert c["status"] == "unknown"  # UNPROCESSED this soon is not trusted: retried later
    assert await reconciler.run_once(now + timedelta(seconds=29)) == 0
    assert await reconciler.run_once(now + timedelta(seconds=30)) == 1

    calls = await store.list_gateway_calls(pool, charged["id"])
    assert [(c["endpoint"], c["outcome"]) for c in calls] == [("SearchTrade", "executed")]
