"""Crash recovery (issue 13): a ``serve`` killed with SIGKILL at any point of a call leaves its
payment in a state that another ``serve`` on the same database resolves within the lease time —
never charged twice, never left held — and the caller's AGI connection simply ends (the dialplan
then sends the caller back to the operator, as for any AGI that ends without a status).

Killed at three points: while the caller keys the expiry (nothing sent), while the gateway holds
ExecTran's answer (the card was charged, the answer is lost with the process), and while the
result is being said (already recorded)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from ivrpay import store
from ivrpay.sandbox.server import Sandbox
from ivrpay.simulator import SimulatedCall
from ivrpay.store._core import NOTIFY_CHANNEL
from tests.e2e.callkit import VISA, pay_keys
from tests.e2e.test_commands import _env, serve_process
from tests.support.gateway import LOST_ANSWER_CARD

FINAL = {"succeeded", "failed", "abandoned"}


async def _final_status(database_url: str, payment_id: str) -> str:
    """The payment's status once final, woken by the store's NOTIFY on each change."""
    conn = await asyncpg.connect(database_url)
    changed = asyncio.Event()
    await conn.add_listener(NOTIFY_CHANNEL, lambda *_a: changed.set())
    try:
        async with asyncio.timeout(60):
            while True:
                changed.clear()
                status = await conn.fetchval(
                    "SELECT status FROM payments WHERE id = $1", payment_id
                )
                if status in FINAL:
                    return str(status)
                await changed.wait()
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("card", "kill_at", "expected"),
    [
        (VISA, "GET DATA ivrpay/enter_expiry", {"abandoned"}),
        (LOST_ANSWER_CARD, "ExecTran", {"succeeded"}),
        (VISA, "STREAM FILE ivrpay/paid", {"succeeded"}),
    ],
)
async def test_a_serve_killed_mid_call_is_resolved_by_another(
    database_url: str,
    pool: asyncpg.Pool,
    sandbox: Sandbox,
    card: str,
    kill_at: str,
    expected: set[str],
) -> None:
    env = _env(
        database_url,
        sandbox,
        IVRPAY_LEASE_S="2",
        IVRPAY_RECONCILE_AFTER_S="0",
        IVRPAY_RECONCILE_BACKOFF_S="0.5",
    )
    async with serve_process(env) as survivor, serve_process(env) as doomed:
        client, _key, _ = await store.create_api_client(pool, "crash")
        payment: dict[str, Any] = await store.create_payment(
            pool, client_id=client["id"], order_id="crash-1", amount=900, now=datetime.now(UTC)
        )
        call = SimulatedCall(
            "127.0.0.1",
            doomed.agi_port,
            args=(payment["code"], ""),
            keys=pay_keys(card),
            language="en",
        )
        exec_received = asyncio.Event()
        handle = sandbox.state.handle

        def spy(name: str, params: Any) -> Any:
            if name == "ExecTran":
                exec_received.set()  # the card is at the gateway; its answer is withheld
            return handle(name, params)

        sandbox.state.handle = spy  # type: ignore[method-assign]
        point = call.pause_at("SET MUSIC ON" if kill_at == "ExecTran" else kill_at)
        await call.start()
        await point.reached()
        if kill_at == "ExecTran":
            point.release()
            async with asyncio.timeout(30):
                await exec_received.wait()
        doomed.proc.send_signal(signal.SIGKILL)
        assert await doomed.proc.wait() == -signal.SIGKILL
        point.release()
        record = await call.wait()
        # The AGI ended without a status: the dialplan's fallback sends the caller back.
        assert "IVRPAY_STATUS" not in record.variables or kill_at.startswith("STREAM")
        status = await _final_status(database_url, payment["id"])
        assert survivor.proc.returncode is None
    assert status in expected, status
    charged = sandbox.state.successes(
        await pool.fetchval(
            "SELECT order_id FROM executions WHERE payment_id = $1 LIMIT 1", payment["id"]
        )
        or "none"
    )
    assert charged == (1 if status == "succeeded" else 0), (status, charged)
    row = await pool.fetchrow(
        "SELECT lease_owner, lease_token FROM payments WHERE id = $1", payment["id"]
    )
    assert row is None or row["lease_owner"] is None, dict(row)
