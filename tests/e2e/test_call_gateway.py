"""What the gateway answers, as the caller hears it and the payment records it (product.md, "The
call" steps 6–7, "Gateway use", "Errors on the payment", the sandbox test cards and faults)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from ivrpay.card.holder import CardData
from ivrpay.gateway import GatewayClient
from ivrpay.sandbox.state import MAX_CARDS
from ivrpay.workers import Loop, Reconciler, RegistrationRetrier
from tests.e2e.callkit import (
    EXPIRY,
    GREETING,
    REGISTER_CARD_PROMPTS,
    VISA,
    back,
    card_ending_prompts,
    confirm_prompts,
    ended,
    heard,
    keyed_call,
    outcomes,
    pay_keys,
    result_prompts,
)
from tests.e2e.conftest import Ivrpay
from tests.support.gateway import make_card

L = TypeVar("L", bound=Loop)


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    # The service's own background loops run once at start and then keep out of the way:
    # these tests drive the reconciler themselves, with the time they choose.
    return {"worker_interval_s": 3600.0}


def worker(ivrpay: Ivrpay, kind: type[L]) -> L:
    """One of the service's own background loops, to run once at a chosen moment."""
    assert ivrpay.service.workers is not None
    return ivrpay.service.workers.loop(kind)


GATEWAY_INPUT = [
    ("expiry", "4000000000000069", "42G830000", "expiry_invalid", "enter_expiry"),
    (
        "security_code",
        "4000000000000127",
        "42G440000",
        "security_code_invalid",
        "enter_security_code",
    ),
]


@pytest.mark.parametrize(
    ("field", "number", "err", "error_prompt", "ask"),
    GATEWAY_INPUT,
    ids=[g[0] for g in GATEWAY_INPUT],
)
async def test_a_gateway_input_error_sends_the_caller_back_to_that_field(
    ivrpay: Ivrpay, field: str, number: str, err: str, error_prompt: str, ask: str
) -> None:
    """Only the rejected field is keyed again; then the caller re-enters the card (2) and pays."""
    payment = await ivrpay.create_payment(language="en")
    again = EXPIRY if field == "expiry" else "321"
    keys = [*pay_keys(number), again, "2", *pay_keys()]
    record = await ivrpay.call(keys, code=payment["code"])

    ended(record, "SUCCEEDED", payment)
    prompts = heard(record)
    wait = prompts.index("please_wait")
    assert prompts[wait : wait + 3 + len(confirm_prompts("0069"))] == [
        "please_wait",
        error_prompt,
        ask,
        *confirm_prompts(number[-4:]),
    ]
    assert prompts[-3:] == result_prompts("paid")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["progress"]["attempts"] == {field: 1}
    assert outcomes(after) == [
        ("input", err),
        ("succeeded", None),
    ]


class TestGatewayInputAttemptsUsedUp:
    @pytest.fixture
    def e2e_overrides(self) -> dict[str, Any]:
        return {"attempts": 2, "worker_interval_s": 3600.0}

    async def test_the_gateways_error_fails_the_payment(self, ivrpay: Ivrpay) -> None:
        keys = [*pay_keys("4000000000000069"), EXPIRY, "1"]
        payment, record = await keyed_call(ivrpay, keys, "FAILED")
        prompts = heard(record)
        assert prompts.count("please_wait") == 2
        assert prompts[-2:] == back("input_failed")
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "failed"
        assert after["error"]["code"] == "42G830000"
        assert after["error"]["category"] == "input"
        assert after["progress"]["attempts"] == {"expiry": 2}
        assert [e["outcome"] for e in after["executions"]] == ["input", "input"]


async def test_the_lost_answer_is_reconciled_with_one_execution(ivrpay: Ivrpay) -> None:
    """4000000000000119: charged, the answer never arrives; the call's own SearchTrade finds it."""
    payment, record = await keyed_call(ivrpay, pay_keys("4000000000000119"))
    assert heard(record)[-3:] == result_prompts("paid")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["result"]["approve"] and after["result"]["tran_id"]
    assert after["card"] == {"brand": "VISA", "last4": "0119"}
    assert [e["outcome"] for e in after["executions"]] == ["succeeded"]
    state = ivrpay.sandbox.state
    assert state.executions(payment["order_id"]) == 1
    assert state.successes(payment["order_id"]) == 1
    assert state.double_charges() == {}


async def test_a_dropped_answer_is_reconciled_too(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    ivrpay.sandbox.add_fault("ExecTran", "drop_answer")
    record = await ivrpay.call(pay_keys(), code=payment["code"])

    ended(record, "SUCCEEDED", payment)
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert ivrpay.sandbox.state.executions(payment["order_id"]) == 1
    assert ivrpay.sandbox.state.double_charges() == {}


async def test_an_unknown_outcome_then_the_reconciler_fails_it(ivrpay: Ivrpay) -> None:
    """4000000000000101: E91020001, nothing charged. The call ends UNKNOWN; SearchTrade's
    UNPROCESSED is trusted only IVRPAY_RECONCILE_AFTER_S after the send: then ``failed``."""
    payment = await ivrpay.create_payment(language="en", operator={"id": "o", "callback": "SIP/9"})
    record = await ivrpay.call(pay_keys("4000000000000101"), code=payment["code"])

    ended(record, "UNKNOWN", payment, callback="SIP/9")
    assert heard(record)[-3:] == result_prompts("unknown_outcome")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "unknown"
    assert after["error"]["category"] == "unknown"
    assert after["error"]["code"] == "E91020001"
    assert [e["outcome"] for e in after["executions"]] == ["unknown"]
    assert after["call"]["ended_at"] is not None

    assert ivrpay.service.deps.live_tokens == set()  # the claim is no longer renewed

    # Too early: SearchTrade's UNPROCESSED is not trusted yet.
    now = datetime.now(UTC)
    assert await worker(ivrpay, Reconciler).run_once(now) == 1
    assert (await ivrpay.payment(payment["id"]))["status"] == "unknown"

    later = now + timedelta(seconds=ivrpay.settings.reconcile_after_s + 60)
    assert await worker(ivrpay, Reconciler).run_once(later) == 1
    final = await ivrpay.payment(payment["id"])
    assert final["status"] == "failed"
    assert final["error"]["category"] == "system"
    assert final["result"] is None
    assert ivrpay.sandbox.state.executions(payment["order_id"]) == 1
    assert ivrpay.sandbox.state.successes(payment["order_id"]) == 0

    # A failed payment can be taken up again.
    again = await ivrpay.call(pay_keys(), code=payment["code"])
    ended(again, "SUCCEEDED", payment, callback="SIP/9")


async def test_a_gateway_system_error_before_execution_charges_nothing(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    ivrpay.sandbox.add_fault("EntryTran", "http500", 2)
    record = await ivrpay.call(pay_keys(), code=payment["code"])

    ended(record, "ERROR", payment)
    assert heard(record)[-3:] == result_prompts("system_error")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "failed"
    assert after["error"]["category"] == "system"
    assert after["progress"]["step"] == "done"
    assert ivrpay.sandbox.state.executions(payment["order_id"]) == 0


async def test_a_gateway_system_error_before_execution_is_recorded_on_the_attempt(
    ivrpay: Ivrpay,
) -> None:
    """``executions`` tells the core system what became of each attempt: never ``null`` once
    the call is over."""
    payment = await ivrpay.create_payment(language="en")
    ivrpay.sandbox.add_fault("EntryTran", "http500", 2)
    record = await ivrpay.call(pay_keys(), code=payment["code"])

    ended(record, "ERROR", payment)
    after = await ivrpay.payment(payment["id"])
    assert outcomes(after, "category") == [("system", "system")]


class TestExecutionLimit:
    """At most IVRPAY_MAX_EXECUTIONS (3/2) per payment and per call: then too_many_attempts."""

    async def test_the_limit_per_call(self, ivrpay: Ivrpay) -> None:
        keys = [*pay_keys("4000000000000002"), "1", *pay_keys("4000000000009995"), "1"]
        payment, record = await keyed_call(ivrpay, keys, "FAILED")
        prompts = heard(record)
        assert prompts.count("please_wait") == 2
        # No third card is asked for: no execution would be allowed.
        assert prompts[-5:] == [
            "please_wait",
            "declined",
            "too_many_attempts",
            *back("input_failed"),
        ]
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "failed"
        assert after["error"]["code"] == "too_many_attempts"
        assert after["error"]["category"] == "declined"
        assert len(after["executions"]) == 2

    async def test_the_limit_per_payment_across_calls(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(language="en")
        first = await ivrpay.call(
            [*pay_keys("4000000000000002"), "1", *pay_keys("4000000000000002")],
            code=payment["code"],
        )
        ended(first, "FAILED", payment)

        second = await ivrpay.call(pay_keys("4000000000000002"), code=payment["code"])
        ended(second, "FAILED", payment)
        assert heard(second)[-4:] == [
            "declined",
            "too_many_attempts",
            *back("input_failed"),
        ]
        assert len((await ivrpay.payment(payment["id"]))["executions"]) == 3

        third = await ivrpay.call(pay_keys(), code=payment["code"])
        ended(third, "FAILED", payment)
        assert heard(third) == back("too_many_attempts", "input_failed")
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "failed"
        assert after["error"]["code"] == "too_many_attempts"
        assert len(after["executions"]) == 3
        assert ivrpay.sandbox.state.executions(payment["order_id"]) == 3


class TestRegistration:
    async def test_register_stores_the_card_without_a_security_code(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(
            language="en", operation="register", member_id="member-1"
        )
        record = await ivrpay.call([f"{VISA}#", EXPIRY, "1"], code=payment["code"])

        ended(record, "SUCCEEDED", payment)
        assert heard(record) == [
            "welcome",
            *REGISTER_CARD_PROMPTS,
            *card_ending_prompts("1111"),
            "confirm_register_press",
            *result_prompts("registered"),
        ]
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "succeeded"
        assert after["registration"]["status"] == "succeeded"
        card_seq = after["registration"]["card_seq"]
        assert isinstance(card_seq, int) and card_seq >= 0  # the gateway's CardSeq, a number
        assert after["result"]["card_seq"] == card_seq
        assert after["card"] == {"brand": "VISA", "last4": "1111"}
        members = ivrpay.sandbox.state.members()
        assert [m["member_id"] for m in members] == ["member-1"]
        # Nothing was charged.
        assert ivrpay.sandbox.state.successes(payment["order_id"]) == 0

    async def test_charge_and_register(self, ivrpay: Ivrpay) -> None:
        payment = await ivrpay.create_payment(
            language="en", operation="charge_and_register", member_id="member-2"
        )
        record = await ivrpay.call(pay_keys("5555555555554444"), code=payment["code"])

        ended(record, "SUCCEEDED", payment)
        prompts = heard(record)
        assert prompts[: len(GREETING["en"])] == GREETING["en"]
        assert "enter_security_code" in prompts
        assert prompts[-3:] == result_prompts("paid_and_registered")
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "succeeded"
        assert after["result"]["approve"]
        assert after["registration"]["status"] == "succeeded"
        assert after["registration"]["card_seq"] == 0
        assert ivrpay.sandbox.state.successes(payment["order_id"]) == 1


async def test_charge_and_register_when_the_card_cannot_be_stored(ivrpay: Ivrpay) -> None:
    """The charge decides the payment; the storage the gateway could not be reached for is
    ``pending`` in ``registration``, and TradedCard is retried in the background."""
    payment = await ivrpay.create_payment(
        language="en", operation="charge_and_register", member_id="member-3"
    )
    ivrpay.sandbox.add_fault("TradedCard", "http500", count=4)
    record = await ivrpay.call(pay_keys(), code=payment["code"])

    ended(record, "SUCCEEDED", payment)
    assert heard(record)[-2:] == back("paid_not_registered")
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["result"]["approve"]
    assert after["registration"]["status"] == "pending"
    assert after["registration"]["card_seq"] is None
    assert after["registration"]["error"]["category"] == "unknown"

    retrier, now = worker(ivrpay, RegistrationRetrier), datetime.now(UTC)
    assert await retrier.run_once(now) == 1  # still unreachable: the last two faults
    assert (await ivrpay.payment(payment["id"]))["registration"]["status"] == "pending"
    assert await retrier.run_once(now + timedelta(seconds=29)) == 0  # backing off
    assert await retrier.run_once(now + timedelta(seconds=30)) == 1
    final = await ivrpay.payment(payment["id"])
    assert final["status"] == "succeeded"
    assert final["registration"] == {"status": "succeeded", "card_seq": 0, "error": None}
    assert ivrpay.sandbox.state.requests["TradedCard"] == 5
    assert ivrpay.sandbox.state.successes(payment["order_id"]) == 1


async def test_charge_and_register_when_the_gateway_refuses_the_card(ivrpay: Ivrpay) -> None:
    """A refusal (the member has the most cards the gateway keeps) is final: ``failed``."""
    async with GatewayClient.from_settings(ivrpay.settings, base_url=ivrpay.sandbox.url) as gw:
        for _ in range(MAX_CARDS):
            card = make_card(VISA, code=None)
            assert (await gw.register("member-4", card)).ok
            card.wipe()
    payment = await ivrpay.create_payment(
        language="en", operation="charge_and_register", member_id="member-4"
    )
    record = await ivrpay.call(pay_keys(), code=payment["code"])

    ended(record, "SUCCEEDED", payment)
    assert heard(record)[-2:] == back("paid_not_registered")
    reg = (await ivrpay.payment(payment["id"]))["registration"]
    assert (reg["status"], reg["card_seq"], reg["error"]["code"]) == ("failed", None, "E01230009")
    assert await worker(ivrpay, RegistrationRetrier).run_once(datetime.now(UTC)) == 0


class TestGatewayRejectsTheNumber:
    """With IVRPAY_GATEWAY_MAX_CARD_DIGITS above what the gateway takes, a 19-digit number reaches
    the gateway and comes back as an input error on the number (E01170011)."""

    @pytest.fixture
    def e2e_overrides(self) -> dict[str, Any]:
        return {"gateway_max_card_digits": 19, "worker_interval_s": 3600.0}

    async def test_back_to_the_number_keeping_expiry_and_code(self, ivrpay: Ivrpay) -> None:
        keys = ["4111111111111111110", EXPIRY, "123", "1", "5555555555554444#", "1"]
        payment, record = await keyed_call(ivrpay, keys)
        prompts = heard(record)
        first = prompts.index("please_wait")
        assert prompts[first:] == [
            "please_wait",
            "card_invalid",
            "enter_card",
            *confirm_prompts("4444"),
            *result_prompts("paid"),
        ]
        after = await ivrpay.payment(payment["id"])
        assert after["card"] == {"brand": "MASTERCARD", "last4": "4444"}
        assert after["progress"]["attempts"] == {"card_number": 1}
        assert outcomes(after) == [
            ("input", "E01170011"),
            ("succeeded", None),
        ]

    async def test_a_new_number_of_another_code_length_asks_the_code_again(
        self, ivrpay: Ivrpay
    ) -> None:
        keys = ["4111111111111111110", EXPIRY, "123", "1", "378282246310005#", "1234", "1"]
        payment, record = await keyed_call(ivrpay, keys)
        prompts = heard(record)
        first = prompts.index("please_wait")
        assert prompts[first : first + 4] == [
            "please_wait",
            "card_invalid",
            "enter_card",
            "enter_security_code_amex",
        ]
        after = await ivrpay.payment(payment["id"])
        assert after["card"] == {"brand": "AMEX", "last4": "0005"}


def _card_data_held() -> int:
    """Card holders in this process that still hold a digit."""
    return sum(1 for o in gc.get_objects() if isinstance(o, CardData) and not o.is_empty)


async def test_the_card_is_wiped_once_the_charge_answered_before_the_card_is_stored(
    ivrpay: Ivrpay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Card data rule: wiped when the gateway answered. TradedCard (the storage of a charged
    card) needs no card data: none may still be held while it runs."""
    seen: dict[str, int] = {}
    state = ivrpay.sandbox.state
    handle = state.handle

    def observe(endpoint: str, params: Any) -> Any:
        seen[endpoint] = _card_data_held()  # the sandbox answers in this process, synchronously
        return handle(endpoint, params)

    monkeypatch.setattr(state, "handle", observe)
    payment = await ivrpay.create_payment(
        language="en", operation="charge_and_register", member_id="member-5"
    )
    record = await ivrpay.call(pay_keys(), code=payment["code"])

    ended(record, "SUCCEEDED", payment)
    assert seen["ExecTran"] == 1  # the holder was full when the card went to the gateway
    assert seen["TradedCard"] == 0
    assert (await ivrpay.payment(payment["id"]))["registration"]["status"] == "succeeded"


class TestAnInputErrorOnAFieldNotAsked:
    """The security code is switched off, yet the gateway rejects it: the caller cannot key it
    again, so the same card must not be sent again. The card cannot be used: another card or
    the operator, as after a decline."""

    @pytest.fixture
    def e2e_overrides(self) -> dict[str, Any]:
        return {"security_code": False, "worker_interval_s": 3600.0}

    async def test_the_caller_is_offered_another_card(self, ivrpay: Ivrpay) -> None:
        keys = ["4000000000000127#", EXPIRY, "1", "1", f"{VISA}#", EXPIRY, "1"]
        payment, record = await keyed_call(ivrpay, keys)
        prompts = heard(record)
        first = prompts.index("please_wait")
        assert prompts[first : first + 4] == [
            "please_wait",
            "declined",
            "declined_options",
            "enter_card",
        ]
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "succeeded"
        assert after["progress"]["attempts"] == {}
        assert outcomes(after) == [
            ("input", "42G440000"),
            ("succeeded", None),
        ]

    async def test_or_the_operator(self, ivrpay: Ivrpay) -> None:
        payment, record = await keyed_call(
            ivrpay, ["4000000000000127#", EXPIRY, "1", "2"], "FAILED"
        )
        assert heard(record)[-4:] == [
            "please_wait",
            "declined",
            *back("declined_options"),
        ]
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "failed"
        assert after["error"]["code"] == "42G440000"
        assert after["error"]["category"] == "input"
        assert len(after["executions"]) == 1
