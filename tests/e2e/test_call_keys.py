"""Key timing on the wire (product.md "Keys", agi.md): the '#' after a full-length entry landing in
the next command (fixture 03) or dropped (03b), barge-in during prompts, digits ended by the
timeout."""

from __future__ import annotations

import pytest

from tests.e2e.callkit import (
    CARD_PROMPTS,
    EXPIRY,
    GREETING,
    REGISTER_CARD_PROMPTS,
    VISA,
    confirm_prompts,
    ended,
    heard,
    keyed_call,
    pay_keys,
    result_prompts,
)
from tests.e2e.conftest import Ivrpay


@pytest.mark.parametrize("carry_over", [True, False], ids=["03-next-command", "03b-dropped"])
async def test_hash_after_full_length_entries(ivrpay: Ivrpay, carry_over: bool) -> None:
    """Expiry, code and confirmation keyed with a '#' each: none of them costs an attempt."""
    keys = [f"{VISA}#", f"{EXPIRY}#", "123#", "1#"]
    payment, record = await keyed_call(ivrpay, keys, carry_over_keys=carry_over)
    prompts = heard(record)
    n = len(GREETING["en"])
    if carry_over:
        # The '#' stops the next prompt at once (an empty GET DATA) and is ignored once.
        assert prompts[n:] == [
            *CARD_PROMPTS,
            "enter_security_code",
            "confirm_card_ending",
            "confirm_card_ending",
            *confirm_prompts("1111")[1:],
            *result_prompts("paid"),
        ]
        interrupted = [p.file for p in record.prompts if p.interrupted]
        assert interrupted == ["ivrpay/enter_security_code", "ivrpay/confirm_card_ending"]
    else:
        assert record.dropped_keys == 3
        assert prompts[n:] == [
            *CARD_PROMPTS,
            *confirm_prompts("1111"),
            *result_prompts("paid"),
        ]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["progress"]["attempts"] == {}


async def test_the_hash_of_a_bad_expiry_stops_the_error_prompt_only_once(ivrpay: Ivrpay) -> None:
    keys = [f"{VISA}#", "1330#", EXPIRY, "123", "1"]
    payment, record = await keyed_call(ivrpay, keys)
    prompts = heard(record)
    start = prompts.index("enter_expiry")
    # The '#' stops "that expiry date is not valid", which is then played whole.
    assert prompts[start : start + 5] == [
        "enter_expiry",
        "expiry_invalid",
        "expiry_invalid",
        "enter_expiry",
        "enter_security_code",
    ]
    assert (await ivrpay.payment(payment["id"]))["progress"]["attempts"] == {"expiry": 1}


async def test_a_nineteen_digit_number_and_its_hash(ivrpay: Ivrpay) -> None:
    """19 digits fill GET DATA: its '#' lands in the error prompt, which is replayed."""
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(
        ["4111111111111111110#", f"{VISA}#", EXPIRY, "123", "1"], code=payment["code"]
    )

    ended(record, "SUCCEEDED", payment)
    prompts = heard(record)
    n = len(GREETING["en"])
    assert prompts[n : n + 5] == [
        "enter_card",
        "brand_not_accepted",
        "brand_not_accepted",
        *REGISTER_CARD_PROMPTS,
    ]


async def test_barge_in_during_an_error_prompt_keeps_every_key(ivrpay: Ivrpay) -> None:
    """The key that stops the error prompt is the first digit of the next entry."""
    keys = ["4111111111111112#", f"~{VISA}#", "1330", f"~{EXPIRY}", "12#", "~123", "1"]
    payment, record = await keyed_call(ivrpay, keys)
    prompts = heard(record)
    n = len(GREETING["en"])
    assert prompts[n:] == [
        "enter_card",
        "card_invalid",  # stopped by the '4'
        "silence",  # the rest of the number
        "enter_expiry",
        "expiry_invalid",
        "silence",
        "enter_security_code",
        "security_code_invalid",
        "silence",
        *confirm_prompts("1111"),
        *result_prompts("paid"),
    ]
    assert [p.interrupted for p in record.prompts if p.file.endswith("_invalid")] == [True] * 3
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "VISA", "last4": "1111"}
    assert after["progress"]["attempts"] == {
        "card_number": 1,
        "expiry": 1,
        "security_code": 1,
    }


async def test_barge_in_during_the_greeting_begins_the_card_number(ivrpay: Ivrpay) -> None:
    payment, record = await keyed_call(ivrpay, [f"~{VISA}#", EXPIRY, "123", "1"])
    prompts = heard(record)
    assert prompts[:3] == ["welcome", "silence", "enter_expiry"]
    assert record.prompts[0].interrupted
    assert (await ivrpay.payment(payment["id"]))["card"]["last4"] == "1111"


async def test_barge_in_at_the_confirmation(ivrpay: Ivrpay) -> None:
    _, record = await keyed_call(ivrpay, [f"{VISA}#", EXPIRY, "123", "~1"])
    prompts = heard(record)
    # "Card ending…" stopped by the '1': no need to hear the rest.
    assert prompts[-5:] == [
        "enter_security_code",
        "confirm_card_ending",
        *result_prompts("paid"),
    ]


async def test_digits_ended_by_the_timeout_are_an_entry(ivrpay: Ivrpay) -> None:
    """A caller who forgets the '#': GET DATA answers the digits with (timeout)."""
    _, record = await keyed_call(ivrpay, [VISA, "12", "_"], "FAILED")
    prompts = heard(record)
    n = len(GREETING["en"])
    # The number is taken; "12" is a (wrong) expiry, not silence; then silence.
    assert prompts[n : n + 5] == [
        *REGISTER_CARD_PROMPTS,
        "expiry_invalid",
        "enter_expiry",
        "no_input",
    ]
    assert any(" (timeout)" in w.data.decode() for w in record.wire if w.direction == "A")


async def test_the_hash_after_a_keyed_code_stops_the_greeting_once(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call([payment["code"] + "#", f"{VISA}#", EXPIRY, "123", "1"])

    ended(record, "SUCCEEDED", payment)
    prompts = heard(record)
    assert prompts[: 2 + len(GREETING["en"])] == ["enter_code", "welcome", *GREETING["en"]]
    assert record.prompts[1].interrupted


async def test_barge_in_during_the_decline_message(ivrpay: Ivrpay) -> None:
    """ "This card cannot be used…" is an error prompt: a caller who already knows to press 1
    for another card loses nothing."""
    keys = ["4000000000000002#", EXPIRY, "123", "1", "~1", *pay_keys("5555555555554444")]
    payment, record = await keyed_call(ivrpay, keys)
    prompts = heard(record)
    first = prompts.index("declined")
    assert prompts[first : first + 2] == ["declined", "enter_card"]
    assert [p.interrupted for p in record.prompts if p.file == "ivrpay/declined"] == [True]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert [e["outcome"] for e in after["executions"]] == ["declined", "succeeded"]
