"""Each entry checked as it comes (product.md, "The call" steps 2–5, "Keys", "Limits"): every
validation failure has its own prompt and uses an attempt, then a good entry goes through."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.callkit import (
    CARD_PROMPTS,
    EXPIRY,
    GREETING,
    REGISTER_CARD_PROMPTS,
    VISA,
    back,
    confirm_prompts,
    ended,
    heard,
    keyed_call,
    past_expiry,
    pay_keys,
    result_prompts,
)
from tests.e2e.conftest import Ivrpay

NUMBER_FAILURES = [
    ("luhn", "4111111111111112#", "card_invalid"),
    ("too_short", "41111111111#", "card_invalid"),
    ("longer_than_gateway", "4111111111111111110", "brand_not_accepted"),  # 19 > 16
    ("length_of_brand", "411111111111116#", "card_invalid"),  # VISA has no 15-digit numbers
    ("unknown_brand", "9111111111111110#", "card_invalid"),
    ("discover_not_accepted", "6011111111111117#", "brand_not_accepted"),
    ("letters", "4111A11111111111#", "card_invalid"),
]


@pytest.mark.parametrize(
    ("why", "entry", "error"), NUMBER_FAILURES, ids=[f[0] for f in NUMBER_FAILURES]
)
async def test_a_bad_card_number_then_a_good_one(
    ivrpay: Ivrpay, why: str, entry: str, error: str
) -> None:
    payment, record = await keyed_call(ivrpay, [entry, *pay_keys()])
    prompts = heard(record)
    assert prompts[: len(GREETING["en"]) + 4] == [
        *GREETING["en"],
        "enter_card",
        error,
        *REGISTER_CARD_PROMPTS,
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["progress"]["attempts"] == {"card_number": 1}
    assert after["card"] == {"brand": "VISA", "last4": "1111"}
    assert len(after["executions"]) == 1


EXPIRY_FAILURES = [
    ("month_13", "1330", "expiry_invalid"),
    ("month_00", "0030", "expiry_invalid"),
    ("short", "123#", "expiry_invalid"),
    ("past", past_expiry(), "expiry_past"),
]


@pytest.mark.parametrize(
    ("why", "entry", "error"), EXPIRY_FAILURES, ids=[f[0] for f in EXPIRY_FAILURES]
)
async def test_a_bad_expiry_then_a_good_one(
    ivrpay: Ivrpay, why: str, entry: str, error: str
) -> None:
    payment, record = await keyed_call(ivrpay, [f"{VISA}#", entry, EXPIRY, "123", "1"])
    prompts = heard(record)
    start = prompts.index("enter_expiry")
    assert prompts[start : start + 4] == [
        "enter_expiry",
        error,
        "enter_expiry",
        "enter_security_code",
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["progress"]["attempts"] == {"expiry": 1}


@pytest.mark.parametrize("entry", ["12#", "#"], ids=["two_digits", "empty"])
async def test_a_security_code_of_the_wrong_length_then_a_good_one(
    ivrpay: Ivrpay, entry: str
) -> None:
    payment = await ivrpay.create_payment(language="en")
    # The expiry's '#' lands in the next command and is ignored once: the lone '#' keyed after
    # it is an empty entry, not the expiry's '#'.
    keys = [f"{VISA}#", EXPIRY + "#", entry, "123", "1"]
    record = await ivrpay.call(keys, code=payment["code"])

    ended(record, "SUCCEEDED", payment)
    prompts = heard(record)
    start = prompts.index("enter_security_code")
    assert prompts[start : start + 5] == [
        "enter_security_code",
        "enter_security_code",
        "security_code_invalid",
        "enter_security_code",
        "confirm_card_ending",
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["progress"]["attempts"] == {"security_code": 1}
    assert after["status"] == "succeeded"


LIMITS = [
    ("card_number", ["4111111111111112#"] * 3, "invalid_card_number", "card_invalid"),
    ("expiry", [f"{VISA}#", "1330", "1330", "1330"], "invalid_expiry", "expiry_invalid"),
    ("security_code", [f"{VISA}#", EXPIRY, "1#", "1#", "1#"], "invalid_security_code", None),
    ("silence", ["_", "_", "_"], "invalid_card_number", "no_input"),
]


@pytest.mark.parametrize(
    ("field", "keys", "code", "last_error"), LIMITS, ids=[x[0] for x in LIMITS]
)
async def test_the_attempt_limit_fails_the_payment(
    ivrpay: Ivrpay, field: str, keys: list[str], code: str, last_error: Any
) -> None:
    payment = await ivrpay.create_payment(language="en", operator={"id": "o", "callback": "SIP/7"})
    record = await ivrpay.call(keys, code=payment["code"])

    ended(record, "FAILED", payment, callback="SIP/7")
    prompts = heard(record)
    # The third failure is not told field by field: the call ends.
    assert prompts[-2:] == back("input_failed")
    assert "please_wait" not in prompts
    if last_error:
        assert prompts.count(last_error) == 2
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "failed"
    assert after["error"]["code"] == code
    assert after["error"]["category"] == "input"
    name = "card_number" if field == "silence" else field
    assert after["progress"]["attempts"] == {name: 3}
    assert after["executions"] == []
    assert after["card"] is None


async def test_silence_replays_the_prompt_and_uses_an_attempt(ivrpay: Ivrpay) -> None:
    payment, record = await keyed_call(ivrpay, ["_", f"{VISA}#", "_", EXPIRY, "123", "1"])
    prompts = heard(record)
    n = len(GREETING["en"])
    assert prompts[n : n + 7] == [
        "enter_card",
        "no_input",
        *REGISTER_CARD_PROMPTS,
        "no_input",
        "enter_expiry",
        "enter_security_code",
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["progress"]["attempts"] == {"card_number": 1, "expiry": 1}


async def test_a_star_replays_the_prompt_without_using_an_attempt(ivrpay: Ivrpay) -> None:
    keys = ["4111*", f"{VISA}#", "1*", EXPIRY, "*", "123", "*", "1"]
    payment, record = await keyed_call(ivrpay, keys)
    prompts = heard(record)
    n = len(GREETING["en"])
    assert prompts[n : n + 6] == [
        "enter_card",
        *REGISTER_CARD_PROMPTS,
        "enter_expiry",
        "enter_security_code",
        "enter_security_code",
    ]
    # The confirmation is heard twice, whole.
    assert prompts.count("confirm_pay_press") == 2
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["progress"]["attempts"] == {}


async def test_two_at_the_confirmation_starts_again_from_the_card_number(ivrpay: Ivrpay) -> None:
    keys = [*pay_keys()[:3], "2", *pay_keys("5555555555554444")]
    payment, record = await keyed_call(ivrpay, keys)
    prompts = heard(record)
    n = len(GREETING["en"])
    assert prompts[n:] == [
        *CARD_PROMPTS,
        *confirm_prompts("1111"),
        *CARD_PROMPTS,
        *confirm_prompts("4444"),
        *result_prompts("paid"),
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["card"] == {"brand": "MASTERCARD", "last4": "4444"}
    assert len(after["executions"]) == 1


async def test_a_wrong_key_at_the_confirmation_asks_again(ivrpay: Ivrpay) -> None:
    payment, record = await keyed_call(ivrpay, [*pay_keys()[:3], "7", "_", "1"])
    prompts = heard(record)
    assert prompts.count("confirm_pay_press") == 3
    assert "no_input" in prompts
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"


class TestConfiguration:
    """Settings that change the conversation."""

    @pytest.fixture
    def e2e_overrides(self) -> dict[str, Any]:
        return {
            "card_brands": ("VISA", "JCB"),
            "security_code": False,
            "confirm": False,
            "attempts": 2,
        }

    async def test_brand_not_accepted_by_configuration_no_code_no_confirm(
        self, ivrpay: Ivrpay
    ) -> None:
        keys = ["5555555555554444#", "3530111333300000#", EXPIRY]
        payment, record = await keyed_call(ivrpay, keys)
        n = len(GREETING["en"])
        assert heard(record)[n:] == [
            "enter_card",
            "brand_not_accepted",
            *REGISTER_CARD_PROMPTS,
            *result_prompts("paid"),
        ]
        after = await ivrpay.payment(payment["id"])
        assert after["card"] == {"brand": "JCB", "last4": "0000"}
        assert after["progress"]["attempts"] == {"card_number": 1}

    async def test_attempts_setting_is_the_limit(self, ivrpay: Ivrpay) -> None:
        payment, record = await keyed_call(ivrpay, [f"{VISA}#", "_", "0099"], "FAILED")
        assert heard(record)[-4:] == back("no_input", "enter_expiry", "input_failed")
        after = await ivrpay.payment(payment["id"])
        assert after["error"]["code"] == "invalid_expiry"
        assert after["progress"]["attempts"] == {"expiry": 2}
