"""ivrpay's own faults (product.md, End states: "ivrpay fault → unchanged or abandoned, ERROR, an
apology"): whatever goes wrong inside, the caller is told and goes back to the operator, and the
payment is released, never left held by a call that is over."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.e2e.callkit import OPERATOR, ended, heard, held_call, pay_keys
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
    assert heard(record)[-3:] == ["enter_expiry", "apology", "connecting_back"]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["call"]["ended_at"] is not None
    assert ivrpay.service.deps.live_tokens == set()  # no longer renewed
    # A new call takes it up.
    again = await ivrpay.call(pay_keys(), code=payment["code"])
    ended(again, "SUCCEEDED", payment, callback="PJSIP/1001")
