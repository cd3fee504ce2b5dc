"""The payment process over the real database and the sandbox gateway: a charge, a decline, the
gateway-call log, and what happens when the database goes away after ExecTran was sent
(issue 13.1: the caller is never told ERROR, the gateway's answer is not lost)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from ivrpay import store
from ivrpay.config import Settings
from ivrpay.gateway import GatewayClient
from ivrpay.payments import CallPayment, Next, PaymentProcess, PaymentStatus
from ivrpay.store.db import create_pool
from tests.store.helpers import new_payment
from tests.support.db import with_server_setting
from tests.support.gateway import make_card

APP = "ivrpay-process-under-test"
FIELDS = ("card_number", "expiry", "security_code")


@pytest.fixture
async def proc_pool(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The process's own pool, named so a test can kill its connections and no others."""
    p = await create_pool(with_server_setting(database_url, "application_name", APP), min_size=1)
    try:
        yield p
    finally:
        p.terminate()


async def kill_process_connections(admin: asyncpg.Pool) -> int:
    return int(
        await admin.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database() AND application_name = $1""",
            APP,
        )
    )


class KillAfterExec(GatewayClient):
    """The real client; right after ExecTran answers, ``after_exec()`` runs (a fault hook)."""

    after_exec: Any = None

    async def exec_tran(self, *args: Any, **kw: Any) -> Any:
        answer = await super().exec_tran(*args, **kw)
        if self.after_exec is not None:
            await self.after_exec()
        return answer


@pytest.fixture
async def hooked(sandbox: Any) -> AsyncIterator[KillAfterExec]:
    async with KillAfterExec(sandbox.url, "shop", "pass", timeout_s=2.0) as gw:
        yield gw


async def claim(process: PaymentProcess, pool: asyncpg.Pool, **kw: Any) -> CallPayment:
    p = await new_payment(pool, now=process.clock(), **kw)
    claimed = await process.claim(p, owner="proc-a", uniqueid="1.1", channel="PJSIP/9-1")
    assert claimed.call is not None, claimed.reason
    return claimed.call


async def test_a_charge_and_its_gateway_calls(
    pool: asyncpg.Pool, proc_pool: asyncpg.Pool, hooked: KillAfterExec
) -> None:
    process = PaymentProcess(proc_pool, hooked, Settings())
    call = await claim(process, pool)
    card = make_card("4111111111111111")
    decision = await call.execute(await call.start_attempt(), card, {}, FIELDS)
    assert decision.next is Next.SUCCEEDED and card.is_empty
    assert call.payment["status"] == "succeeded"
    calls = await store.list_gateway_calls(pool, call.id)
    assert [(c["endpoint"], c["outcome"]) for c in calls] == [
        ("EntryTran", "ok"),
        ("ExecTran", "ok"),
    ]


async def test_a_decline_is_logged_with_its_codes_in_their_columns(
    pool: asyncpg.Pool, proc_pool: asyncpg.Pool, hooked: KillAfterExec
) -> None:
    process = PaymentProcess(proc_pool, hooked, Settings())
    call = await claim(process, pool)
    decision = await call.execute(
        await call.start_attempt(), make_card("4000000000000002"), {}, FIELDS
    )
    assert decision.next is Next.ANOTHER_CARD and decision.status is PaymentStatus.IN_CALL
    assert decision.error and decision.error["code"] == "42G020000"
    exec_row = (await store.list_gateway_calls(pool, call.id))[-1]
    # ErrCode values in err_code, ErrInfo values in err_info (they were swapped before).
    assert (exec_row["endpoint"], exec_row["err_code"], exec_row["err_info"]) == (
        "ExecTran",
        "G02",
        "42G020000",
    )


async def test_connections_killed_after_exec_tran_the_answer_is_still_written(
    pool: asyncpg.Pool, proc_pool: asyncpg.Pool, hooked: KillAfterExec
) -> None:
    process = PaymentProcess(proc_pool, hooked, Settings())
    call = await claim(process, pool)

    async def kill() -> None:
        assert await kill_process_connections(pool) >= 1

    hooked.after_exec = kill
    decision = await call.execute(
        await call.start_attempt(), make_card("4111111111111111"), {}, FIELDS
    )
    assert decision.next is Next.SUCCEEDED  # before the fix: a ConnectionDoesNotExistError
    assert (await store.get_payment(pool, call.id))["status"] == "succeeded"


async def test_a_database_away_longer_than_the_lease_is_unknown_then_the_answer_is_written(
    database_url: str, pool: asyncpg.Pool, proc_pool: asyncpg.Pool, hooked: KillAfterExec
) -> None:
    process = PaymentProcess(proc_pool, hooked, Settings(lease_s=0.3))
    call = await claim(process, pool)
    db = await pool.fetchval("SELECT current_database()")
    # A database cannot refuse connections to itself: the server's maintenance database does it.
    admin = await asyncpg.connect(urlsplit(database_url)._replace(path="/postgres").geturl())

    async def database_away() -> None:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        await kill_process_connections(pool)

    hooked.after_exec = database_away
    try:
        decision = await call.execute(
            await call.start_attempt(), make_card("4000000000000002"), {}, FIELDS
        )
        # Not ERROR ("nothing was charged"): the caller hears that it could not be confirmed.
        assert decision.next is Next.UNKNOWN
        assert process.tasks, "the answer is kept to be written later"
        assert (await store.get_payment(pool, call.id))["status"] == "processing"
    finally:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        await admin.close()
    await call.end(None, None, "done")  # the call is over (the database refuses: processing)
    await asyncio.wait_for(asyncio.gather(*process.tasks), 30)
    after = await store.get_payment(pool, call.id)
    # The decline's own code, not a reconciler's guess; the claim is released.
    assert after["status"] == "failed"
    assert after["error"]["code"] == "42G020000"
    assert after["call"]["ended_at"] is not None
    assert process.live_tokens == set()
