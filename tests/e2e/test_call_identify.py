"""Finding the payment (product.md, "The call": by code, by transferrer, keyed code), the
language spoken before and after, and payments that cannot be taken (canceled, expired, paid,
in use)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ivrpay import store
from tests.e2e.callkit import (
    GREETING,
    NOT_FOUND_PROMPTS,
    OPERATOR,
    TRANSFERRER,
    back,
    ended,
    heard,
    held_call,
    languages_heard,
    pay_keys,
    shift_clock,
)
from tests.e2e.conftest import Ivrpay


async def test_the_caller_keys_the_code_the_operator_read_out(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call([payment["code"], *pay_keys()])

    ended(record, "SUCCEEDED", payment)
    prompts = heard(record)
    assert prompts[: 1 + len(GREETING["en"])] == ["enter_code", *GREETING["en"]]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "VISA", "last4": "1111"}


async def test_before_the_payment_is_known_the_first_language_is_spoken(ivrpay: Ivrpay) -> None:
    """Default IVRPAY_LANGUAGES=ja,en: the code is asked in Japanese, the rest is in English."""
    payment = await ivrpay.create_payment(language="en")
    wrong = "000000" if payment["code"] != "000000" else "111111"
    record = await ivrpay.call([wrong, payment["code"], *pay_keys()], language="ja")

    ended(record, "SUCCEEDED", payment)
    spoken = languages_heard(record)
    assert spoken[:3] == [("enter_code", "ja"), ("code_not_found", "ja"), ("enter_code", "ja")]
    assert {lang for _, lang in spoken[3:]} == {"en"}
    assert record.variables["CHANNEL(language)"] == "en"


async def test_a_japanese_payment_is_spoken_in_japanese(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="ja")
    record = await ivrpay.call(pay_keys(), code=payment["code"], language="en")

    ended(record, "SUCCEEDED", payment)
    assert heard(record)[: len(GREETING["ja"])] == GREETING["ja"]
    assert {lang for _, lang in languages_heard(record)} == {"ja"}
    assert record.variables["CHANNEL(language)"] == "ja"


class TestEnglishFirst:
    @pytest.fixture
    def e2e_overrides(self) -> dict[str, Any]:
        return {"languages": ("en", "ja")}

    async def test_the_code_is_asked_in_english_then_japanese(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="ja")
        assert payment["language"] == "ja"
        record = await ivrpay.call([payment["code"], *pay_keys()], language="ja")

        ended(record, "SUCCEEDED", payment)
        spoken = languages_heard(record)
        assert spoken[0] == ("enter_code", "en")
        assert {lang for _, lang in spoken[1:]} == {"ja"}

    async def test_the_payments_language_defaults_to_the_first(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment()
        assert payment["language"] == "en"
        record = await ivrpay.call(pay_keys(), code=payment["code"], language="ja")
        ended(record, "SUCCEEDED", payment)
        assert {lang for _, lang in languages_heard(record)} == {"en"}


async def test_three_unknown_codes_end_not_found(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    wrong = "000000" if payment["code"] != "000000" else "111111"
    record = await ivrpay.call([wrong, "12#", "_"], transferrer="PJSIP/2002-00000001")

    ended(record, "NOT_FOUND", None, callback="PJSIP/2002")
    assert heard(record) == [
        *NOT_FOUND_PROMPTS,
    ]
    assert (await ivrpay.payment(payment["id"]))["status"] == "pending"


async def test_a_star_at_the_code_replays_without_using_a_try(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(["12*", "_", "_", payment["code"], *pay_keys()])

    ended(record, "SUCCEEDED", payment)
    assert heard(record)[:6] == [
        "enter_code",
        "enter_code",
        "no_input",
        "enter_code",
        "no_input",
        "enter_code",
    ]


async def test_the_operator_from_the_code_prompt(ivrpay: Ivrpay) -> None:
    record = await ivrpay.call(["0#"], transferrer="PJSIP/2002-00000001;2")

    ended(record, "OPERATOR", None, callback="PJSIP/2002")
    assert heard(record) == ["enter_code", "connecting_operator"]


async def test_an_unknown_code_argument_falls_back_to_asking(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    wrong = "000000" if payment["code"] != "000000" else "111111"
    record = await ivrpay.call([payment["code"], *pay_keys()], code=wrong)

    ended(record, "SUCCEEDED", payment)
    assert heard(record)[0] == "enter_code"


class TestTransferrer:
    """The operator blind-transferred without a code: the transferring channel finds it."""

    async def test_the_one_pending_payment_of_the_operators_device(self, ivrpay: Ivrpay) -> None:
        other = await ivrpay.create_payment(
            language="en", operator={"id": "b", "callback": "PJSIP/1002"}
        )
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        record = await ivrpay.call(pay_keys(), transferrer=TRANSFERRER)

        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
        assert heard(record)[: len(GREETING["en"])] == GREETING["en"]
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "succeeded"
        assert (await ivrpay.payment(other["id"]))["status"] == "pending"

    async def test_a_channel_with_a_local_suffix(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        record = await ivrpay.call(pay_keys(), transferrer="PJSIP/1001-0000002a;2")
        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")

    async def test_several_pending_payments_ask_for_the_code(self, ivrpay: Ivrpay) -> None:
        await ivrpay.create_payment(language="en", operator=OPERATOR)
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        record = await ivrpay.call([payment["code"], *pay_keys()], transferrer=TRANSFERRER)

        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
        spoken = languages_heard(record)
        assert spoken[0] == ("enter_code", "ja")
        assert spoken[1] == ("welcome", "en")

    async def test_a_payment_older_than_ten_minutes_asks_for_the_code(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        shift_clock(ivrpay, timedelta(minutes=10, seconds=5))
        record = await ivrpay.call([payment["code"], *pay_keys()], transferrer=TRANSFERRER)

        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
        assert heard(record)[:2] == ["enter_code", "welcome"]

    async def test_a_payment_just_under_ten_minutes_old_is_taken(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        shift_clock(ivrpay, timedelta(minutes=9, seconds=50))
        record = await ivrpay.call(pay_keys(), transferrer=TRANSFERRER)

        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
        assert heard(record)[0] == "welcome"

    async def test_a_paid_payment_of_the_device_is_not_taken_again(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        first = await ivrpay.call(pay_keys(), transferrer=TRANSFERRER)
        ended(first, "SUCCEEDED", payment, callback="PJSIP/1001")

        record = await ivrpay.call(["_", "_", "_"], transferrer=TRANSFERRER)
        ended(record, "NOT_FOUND", None, callback="PJSIP/1001")
        assert heard(record)[0] == "enter_code"

    async def test_no_operator_callback_falls_back_to_the_transferrer(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en")
        record = await ivrpay.call(pay_keys(), code=payment["code"], transferrer=TRANSFERRER)
        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")


class TestPaymentsThatCannotBeTaken:
    async def test_canceled_before_the_call(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        status, _ = await ivrpay.api("POST", f"/payments/{payment['id']}/cancel")
        assert status == 200
        record = await ivrpay.call(pay_keys(), code=payment["code"], language="ja")

        ended(record, "CANCELED", payment, callback="PJSIP/1001")
        # Told in the payment's language.
        assert languages_heard(record) == [("canceled", "en"), ("connecting_back", "en")]
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "canceled"
        assert after["call"] is None

    async def test_expired_by_the_expiry_worker(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en")
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await store.expire_payments(ivrpay.pool, now=later) == [payment["id"]]
        record = await ivrpay.call(pay_keys(), code=payment["code"])

        ended(record, "EXPIRED", payment)
        assert heard(record) == back("expired")
        assert (await ivrpay.payment(payment["id"]))["status"] == "expired"

    async def test_past_its_expiry_but_not_yet_swept(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", expires_in=600)
        shift_clock(ivrpay, timedelta(seconds=601))
        record = await ivrpay.call(pay_keys(), code=payment["code"])

        ended(record, "EXPIRED", payment)
        assert heard(record) == back("expired")
        assert (await ivrpay.payment(payment["id"]))["status"] == "pending"

    async def test_already_paid(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en")
        first = await ivrpay.call(pay_keys(), code=payment["code"])
        ended(first, "SUCCEEDED", payment)
        paid = await ivrpay.payment(payment["id"])

        record = await ivrpay.call(pay_keys("5555555555554444"), code=payment["code"])
        ended(record, "SUCCEEDED", payment)
        assert heard(record) == back("already_paid")
        after = await ivrpay.payment(payment["id"])
        assert after["card"] == {"brand": "VISA", "last4": "1111"}
        assert after["executions"] == paid["executions"]
        assert after["updated_at"] == paid["updated_at"]
        assert ivrpay.sandbox.state.successes(payment["order_id"]) == 1

    async def test_in_use_by_another_call(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
        first, held = await held_call(
            ivrpay, pay_keys(), "GET DATA ivrpay/enter_expiry", code=payment["code"]
        )

        second = await ivrpay.call(pay_keys(), code=payment["code"])
        ended(second, "IN_USE", payment, callback="PJSIP/1001")
        assert heard(second) == back("in_use")
        assert (await ivrpay.payment(payment["id"]))["status"] == "in_call"

        held.release()
        record = await first.wait()
        ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "succeeded"
        assert after["call"]["uniqueid"] == record.env["agi_uniqueid"]

    async def test_a_failed_payment_is_taken_up_by_a_new_call(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en")
        first = await ivrpay.call(["4111111111111112#"] * 3, code=payment["code"])
        ended(first, "FAILED", payment)

        record = await ivrpay.call(pay_keys(), code=payment["code"])
        ended(record, "SUCCEEDED", payment)
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "succeeded"
        assert after["error"] is None
        assert after["progress"]["attempts"] == {}


async def test_canceled_through_the_api_while_the_caller_is_in_the_ivr(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, held = await held_call(
        ivrpay, pay_keys(), "GET DATA ivrpay/enter_expiry", code=payment["code"]
    )

    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/cancel")
    assert status == 202
    assert body["cancel_requested"] is True
    assert body["status"] == "in_call"
    held.release()
    record = await call.wait()

    ended(record, "CANCELED", payment, callback="PJSIP/1001")
    prompts = heard(record)
    # The expiry is taken, then at the next step the caller is told.
    assert prompts[-3:] == back("enter_expiry", "canceled")
    assert "please_wait" not in prompts
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "canceled"
    assert after["executions"] == []
    assert ivrpay.sandbox.state.orders(payment["order_id"]) == []


async def test_canceled_while_the_caller_confirms_sends_nothing_to_the_gateway(
    ivrpay: Ivrpay,
) -> None:
    payment = await ivrpay.create_payment(language="ja")
    call, held = await held_call(
        ivrpay, pay_keys(), "GET DATA ivrpay/confirm_pay_press", code=payment["code"]
    )
    status, _ = await ivrpay.api("POST", f"/payments/{payment['id']}/cancel")
    assert status == 202
    held.release()
    record = await call.wait()

    ended(record, "CANCELED", payment)
    assert languages_heard(record)[-3:] == [
        ("confirm_pay_press", "ja"),
        ("canceled", "ja"),
        ("connecting_back", "ja"),
    ]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "canceled"
    assert after["executions"] == []
    assert ivrpay.sandbox.state.orders(payment["order_id"]) == []
