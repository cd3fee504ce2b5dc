"""Back to the operator on the caller's request (``0#`` / ``0``), and callers turned away when the
in-flight limit is reached (product.md, End states: OPERATOR, BUSY)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.callkit import (
    EXPIRY,
    GREETING,
    OPERATOR,
    TRANSFERRER,
    VISA,
    back,
    ended,
    heard,
    held_call,
    keyed_call,
    pay_keys,
)
from tests.e2e.conftest import Ivrpay

WHERE = [
    ("card_number", ["0#"], {}),
    ("expiry", [f"{VISA}#", "0#"], {}),
    ("security_code", [f"{VISA}#", EXPIRY, "0#"], {}),
    ("confirm", [f"{VISA}#", EXPIRY, "123", "0"], {}),
    ("card_number", ["4111111111111112#", "~0#"], {"card_number": 1}),  # over the error prompt
]


@pytest.mark.parametrize(
    ("step", "keys", "attempts"), WHERE, ids=[f"{w[0]}-{i}" for i, w in enumerate(WHERE)]
)
async def test_zero_asks_for_the_operator(
    ivrpay: Ivrpay, step: str, keys: list[str], attempts: dict[str, int]
) -> None:
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    record = await ivrpay.call(keys, code=payment["code"])

    ended(record, "OPERATOR", payment, callback="PJSIP/1001")
    assert heard(record)[-1] == "connecting_operator"
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["progress"] == {"step": "done", "attempts": attempts}
    assert after["executions"] == []
    assert after["card"] is None


async def test_zero_at_the_decline_choice(ivrpay: Ivrpay) -> None:
    payment, record = await keyed_call(ivrpay, [*pay_keys("4000000000000002"), "0"], "OPERATOR")
    assert heard(record)[-3:] == ["declined", "declined_options", "connecting_operator"]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["error"]["code"] == "42G020000"


async def test_a_zero_inside_a_number_is_a_digit(ivrpay: Ivrpay) -> None:
    await keyed_call(ivrpay, pay_keys("3530111333300000"))


async def test_the_abandoned_payment_is_taken_up_again(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    first = await ivrpay.call(["0#"], code=payment["code"])
    ended(first, "OPERATOR", payment)

    record = await ivrpay.call(pay_keys(), code=payment["code"])
    ended(record, "SUCCEEDED", payment)
    assert heard(record)[: len(GREETING["en"])] == GREETING["en"]


class TestBusy:
    @pytest.fixture
    def e2e_overrides(self) -> dict[str, Any]:
        return {"max_calls": 1}

    async def test_a_call_beyond_the_limit_is_turned_away_politely(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        first, held = await held_call(
            ivrpay, pay_keys(), "GET DATA ivrpay/enter_card", code=payment["code"]
        )

        other = await ivrpay.create_payment(language="en")
        busy = await ivrpay.call(pay_keys(), code=other["code"], transferrer=TRANSFERRER)
        # Turned away before the payment is looked up: in the first configured language.
        assert busy.variables["IVRPAY_STATUS"] == "BUSY"
        assert busy.variables["IVRPAY_CALLBACK"] == "PJSIP/1001"
        assert "IVRPAY_PAYMENT_ID" not in busy.variables
        assert [(p.file, p.language) for p in busy.prompts] == [
            ("ivrpay/busy", "ja"),
            ("ivrpay/connecting_back", "ja"),
        ]
        heard(busy)
        assert (await ivrpay.payment(other["id"]))["status"] == "pending"

        held.release()
        record = await first.wait()
        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")


async def test_no_answer_at_the_confirmation_goes_back_to_the_operator(ivrpay: Ivrpay) -> None:
    payment, record = await keyed_call(ivrpay, [*pay_keys()[:3], "_", "9", "_"], "OPERATOR")
    prompts = heard(record)
    assert prompts.count("confirm_pay_press") == 3
    assert prompts[-1] == "connecting_operator"
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["progress"]["attempts"] == {"confirm": 3}
    assert after["executions"] == []


async def test_no_choice_after_a_decline_fails_with_the_gateways_code(ivrpay: Ivrpay) -> None:
    payment, record = await keyed_call(
        ivrpay, [*pay_keys("4000000000009995"), "_", "_", "_"], "FAILED"
    )
    assert heard(record)[-2:] == back("declined_options")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "failed"
    assert after["error"]["code"] == "42G030000"
    assert after["error"]["category"] == "declined"
