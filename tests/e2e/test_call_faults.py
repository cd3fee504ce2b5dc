"""ivrpay's own faults (product.md, End states: "ivrpay fault → unchanged or abandoned, ERROR, an
apology"): whatever goes wrong inside, the caller is told and goes back to the operator, and the
payment is released, never left held by a call that is over."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.e2e.callkit import OPERATOR, back, ended, heard, held_call, pay_keys
from tests.e2e.conftest import Ivrpay


class BreaksOnce:
    """The calls' clock, which raises an unexpected error once when armed: a stand-in for any
    bug of ours in the middle of a step."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self) -> datetime:
        if self.armed:
            self.armed = False
            raise RuntimeError("a bug")
        return datetime.now(UTC)


async def test_an_unexpected_error_mid_call_is_an_apology_and_a_release(ivrpay: Ivrpay) -> None:
    clock = BreaksOnce()
    ivrpay.service.deps.clock = clock
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, held = await held_call(
        ivrpay, pay_keys(), "GET DATA ivrpay/enter_expiry", code=payment["code"]
    )
    clock.armed = True  # the expiry check breaks
    held.release()
    record = await call.wait()

    ended(record, "ERROR", payment, callback="PJSIP/1001")
    assert heard(record)[-3:] == back("enter_expiry", "apology")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["call"]["ended_at"] is not None
    assert ivrpay.service.deps.live_tokens == set()  # no longer renewed
    # A new call takes it up.
    again = await ivrpay.call(pay_keys(), code=payment["code"])
    ended(again, "SUCCEEDED", payment, callback="PJSIP/1001")


async def _kill_service_connections(ivrpay: Ivrpay) -> None:
    """Every database connection of the service's pool is killed (not its LISTEN connection)."""
    conn = await asyncpg.connect(ivrpay.settings.database_url)
    try:
        killed = await conn.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend' AND query NOT LIKE 'LISTEN%'"""
        )
        assert killed >= 1
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("card", "status", "payment_status"),
    [("4111111111111111", "SUCCEEDED", "succeeded"), ("4000000000000002", "FAILED", "failed")],
)
async def test_connections_killed_after_exec_tran_never_tell_the_caller_error(
    ivrpay: Ivrpay, card: str, status: str, payment_status: str
) -> None:
    """Issue 13.1: once ExecTran was sent a database fault is never "ERROR" (nothing charged);
    the gateway's answer is written once the database answers again, and the caller hears it."""
    gateway = ivrpay.service.gateway
    assert gateway is not None
    real = gateway.exec_tran

    async def exec_then_kill(*args: Any, **kw: Any) -> Any:
        answer = await real(*args, **kw)
        await _kill_service_connections(ivrpay)
        return answer

    gateway.exec_tran = exec_then_kill  # type: ignore[method-assign]
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    keys = pay_keys(card) + (["2"] if status == "FAILED" else [])  # the decline: the operator
    record = await ivrpay.call(keys, code=payment["code"])
    ended(record, status, payment, callback="PJSIP/1001")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == payment_status
    if status == "FAILED":
        assert after["error"]["code"] == "42G020000"  # the decline's own code, kept
