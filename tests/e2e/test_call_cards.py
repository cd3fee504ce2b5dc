"""Every test card of the sandbox table and every brand, through a whole call (product.md,
"Sandbox gateway test cards", "The call" steps 2–7)."""

from __future__ import annotations

import pytest

from tests.e2e.callkit import (
    EXPIRY,
    GREETING,
    OPERATOR,
    REGISTER_CARD_PROMPTS,
    back,
    confirm_prompts,
    ended,
    heard,
    keyed_call,
    pay_keys,
    result_prompts,
)
from tests.e2e.conftest import Ivrpay

APPROVED = [
    ("4111111111111111", "VISA", "123"),
    ("5555555555554444", "MASTERCARD", "123"),
    ("3530111333300000", "JCB", "123"),
    ("378282246310005", "AMEX", "1234"),
    ("36227206271667", "DINERS", "123"),
]


@pytest.mark.parametrize(("number", "brand", "code"), APPROVED, ids=[a[1] for a in APPROVED])
async def test_an_approved_card_of_every_brand_is_paid(
    ivrpay: Ivrpay, number: str, brand: str, code: str
) -> None:
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    record = await ivrpay.call(pay_keys(number, code), code=payment["code"])

    ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
    ask_code = "enter_security_code_amex" if brand == "AMEX" else "enter_security_code"
    assert heard(record) == [
        *GREETING["en"],
        *REGISTER_CARD_PROMPTS,
        ask_code,
        *confirm_prompts(number[-4:]),
        *result_prompts("paid"),
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": brand, "last4": number[-4:]}
    assert after["error"] is None
    assert after["result"]["approve"] and after["result"]["tran_id"]
    assert after["progress"] == {"step": "done", "attempts": {}}
    assert [e["outcome"] for e in after["executions"]] == ["succeeded"]
    assert after["executions"][0]["order_id"] == f"{payment['order_id']}-01"
    assert after["call"]["ended_at"] is not None
    assert ivrpay.sandbox.state.successes(payment["order_id"]) == 1


async def test_amex_asks_for_its_four_digit_code_and_refuses_three(ivrpay: Ivrpay) -> None:
    keys = ["378282246310005#", EXPIRY, "123#", "1234", "1"]
    payment, record = await keyed_call(ivrpay, keys)
    prompts = heard(record)
    assert prompts[prompts.index("enter_expiry") + 1 :][:3] == [
        "enter_security_code_amex",
        "security_code_invalid",
        "enter_security_code_amex",
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "AMEX", "last4": "0005"}
    assert after["progress"]["attempts"] == {"security_code": 1}


DECLINES = [("4000000000000002", "42G020000"), ("4000000000009995", "42G030000")]


@pytest.mark.parametrize(("number", "err"), DECLINES, ids=[d[1] for d in DECLINES])
async def test_a_declined_card_then_the_operator(ivrpay: Ivrpay, number: str, err: str) -> None:
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    record = await ivrpay.call([*pay_keys(number), "2"], code=payment["code"])

    ended(record, "FAILED", payment, callback="PJSIP/1001")
    prompts = heard(record)
    # The decline is told generically: the reason goes to the screen and the API only.
    assert prompts[prompts.index("please_wait") :] == [
        "please_wait",
        "declined",
        *back("declined_options"),
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "failed"
    assert after["error"]["code"] == err
    assert after["error"]["category"] == "declined"
    assert after["card"] == {"brand": "VISA", "last4": number[-4:]}
    assert after["result"] is None
    assert [(e["outcome"], e["error"]["code"]) for e in after["executions"]] == [("declined", err)]
    assert ivrpay.sandbox.state.successes(payment["order_id"]) == 0


async def test_a_declined_card_then_another_card(ivrpay: Ivrpay) -> None:
    keys = [*pay_keys("4000000000000002"), "1", *pay_keys("5555555555554444")]
    payment, record = await keyed_call(ivrpay, keys)
    prompts = heard(record)
    first = prompts.index("declined")
    assert prompts[first : first + 3] == ["declined", "declined_options", "enter_card"]
    assert prompts[-2:] == back("paid")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "MASTERCARD", "last4": "4444"}
    assert after["error"] is None
    assert [e["outcome"] for e in after["executions"]] == ["declined", "succeeded"]
    assert [e["order_id"] for e in after["executions"]] == [
        f"{payment['order_id']}-01",
        f"{payment['order_id']}-02",
    ]
    assert ivrpay.sandbox.state.double_charges() == {}


async def test_another_luhn_valid_card_of_an_accepted_brand_is_approved(ivrpay: Ivrpay) -> None:
    payment, record = await keyed_call(ivrpay, pay_keys("4242424242424242"))
    assert heard(record)[-2:] == back("paid")
    after = await ivrpay.payment(payment["id"])
    assert after["card"] == {"brand": "VISA", "last4": "4242"}


async def test_the_amount_said_includes_tax(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="ja", amount=11637, tax=1163)
    record = await ivrpay.call(pay_keys(), code=payment["code"])

    ended(record, "SUCCEEDED", payment)
    prompts = heard(record)
    assert prompts[: len(GREETING["ja"])] == GREETING["ja"]  # 12,800 yen
    assert prompts[prompts.index("confirm_card_ending_tail") + 1 :][:6] == GREETING["ja"][2:]
    orders = ivrpay.sandbox.state.orders(payment["order_id"])
    assert [(o["amount"], o["tax"]) for o in orders] == [(11637, 1163)]
