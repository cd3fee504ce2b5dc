"""A cancel through the API while the caller is in the IVR (product.md, End states: "canceled
through the API while the caller was in the IVR → canceled, CANCELED, that the payment was
canceled"), whatever the caller does next: the call's status and words follow the payment."""

from __future__ import annotations

import pytest

from tests.e2e.callkit import EXPIRY, OPERATOR, VISA, back, ended, heard, held_call, pay_keys
from tests.e2e.conftest import Ivrpay

# (where the call is held while the cancel arrives, what the caller keys next)
NEXT = [
    ("operator_at_an_entry", [f"{VISA}#", "0#"], "GET DATA ivrpay/enter_expiry"),
    ("operator_at_the_confirmation", [f"{VISA}#", EXPIRY, "123", "0"], "GET DATA ivrpay/confirm"),
    ("no_answer_at_the_confirmation", [*pay_keys()[:3], "_", "_", "_"], "GET DATA ivrpay/confirm"),
    ("operator_after_a_decline", [*pay_keys("4000000000000002"), "2"], "GET DATA ivrpay/declined"),
    ("zero_after_a_decline", [*pay_keys("4000000000000002"), "0"], "GET DATA ivrpay/declined"),
]


@pytest.mark.parametrize(("why", "keys", "hold"), NEXT, ids=[n[0] for n in NEXT])
async def test_a_cancel_wins_over_what_the_caller_chooses_next(
    ivrpay: Ivrpay, why: str, keys: list[str], hold: str
) -> None:
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, held = await held_call(ivrpay, keys, hold, code=payment["code"])
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/cancel")
    assert status == 202, body
    held.release()
    record = await call.wait()

    ended(record, "CANCELED", payment, callback="PJSIP/1001")
    assert heard(record)[-2:] == back("canceled")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "canceled"
    assert after["call"]["ended_at"] is not None
    assert ivrpay.service.deps.live_tokens == set()
