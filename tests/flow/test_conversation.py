"""The conversation in memory: a scripted caller (tests/flow/fakes.py) and a fake payment process
with the real money rules. Every row of product.md's end-state table, the keypad rules, cancel
and the limits; the end-to-end calls (tests/e2e/) stay the contract over real sockets, PostgreSQL
and the sandbox gateway."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

import pytest
import structlog
import structlog.testing

from ivrpay.config import Settings
from ivrpay.flow.call import Call, CallStatus, FlowDeps, busy_handler
from ivrpay.flow.prompts import P
from ivrpay.payments import PaymentStatus
from tests.flow.fakes import (
    APPROVED,
    DECLINED,
    NOW,
    SYSTEM_ERROR,
    UNKNOWN,
    FakeCallPayment,
    FakeProcess,
    ScriptedChannel,
    input_error,
    payment,
)

VISA, AMEX = "4111111111111111", "378282246310005"
CARD = [f"{VISA}#", "1230", "123"]  # number, expiry, security code
CONFIRM = ["1"]
PAY = [*CARD, *CONFIRM]


@dataclass
class Run:
    """One call: its IVRPAY_STATUS, the channel, the process, the payment it held, the logs."""

    status: str | None
    channel: ScriptedChannel
    process: FakeProcess
    call: Call
    logs: list[dict[str, Any]]

    @property
    def pay(self) -> FakeCallPayment:
        assert self.process.held is not None
        return self.process.held

    @property
    def heard(self) -> list[str]:
        return self.channel.heard

    def last_words(self, n: int = 2) -> list[str]:
        return self.heard[-n:]


async def call(
    keys: Collection[str],
    *,
    settings: Settings | None = None,
    pay: dict[str, Any] | None = None,
    code: str = "123456",
    transferrer: str = "",
    missing: Collection[str] = (),
    **process: Any,
) -> Run:
    s = settings or Settings()
    proc = FakeProcess(settings=s, **process)
    p = pay or payment()
    proc.by_code.setdefault(p["code"], p)
    channel = ScriptedChannel(keys, code=code, transferrer=transferrer, missing=missing)
    the_call = Call(channel, FlowDeps(settings=s, payments=proc, owner="test", clock=lambda: NOW))
    # Logs are captured, not rendered: a fault's traceback would take longer than the call.
    with structlog.testing.capture_logs() as logs:
        status = await the_call.run()
    assert the_call.card.is_empty, "the card is wiped when the call ends"
    return Run(status, channel, proc, the_call, logs)


def ended(run: Run) -> tuple[PaymentStatus, str | None]:
    """The payment's status and its error code once the call is over."""
    err = run.pay.error
    return run.pay.status, None if err is None else err.get("code")


# -- End states (product.md) ----------------------------------------------------------------------
async def test_approved_charge() -> None:
    run = await call(PAY, answers=[APPROVED])
    assert run.status == "SUCCEEDED" and run.pay.status is PaymentStatus.SUCCEEDED
    assert run.last_words() == [P.paid, P.connecting_back]
    assert run.channel.variables == {
        "CHANNEL(language)": "ja",
        "IVRPAY_STATUS": "SUCCEEDED",
        "IVRPAY_PAYMENT_ID": payment()["id"],
        "IVRPAY_CALLBACK": "PJSIP/1001",
    }
    assert run.channel.music == [True, False]
    assert run.pay.sent == [("VISA", "1111")]
    steps = [s for s, _ in run.pay.steps]
    assert steps == ["amount", "card_number", "expiry", "security_code", "confirm", "processing"]
    assert run.pay.ended == (PaymentStatus.ABANDONED, None, "done")  # a no-op: it succeeded
    # Greeting and amount, then each field's prompt.
    assert run.heard[:2] == [P.welcome, P.amount_is]
    assert P.amount_is_tail in run.heard
    assert [P.enter_card, P.enter_expiry, P.enter_security_code] == [
        h for h in run.heard if h.startswith("enter_")
    ]


@pytest.mark.parametrize(
    ("operation", "stores", "said", "asks_code"),
    [
        ("register", True, P.registered, False),
        ("charge_and_register", True, P.paid_and_registered, True),
        ("charge_and_register", False, P.paid_not_registered, True),
    ],
)
async def test_card_stored(operation: str, stores: bool, said: str, asks_code: bool) -> None:
    keys = [*CARD, "1"] if asks_code else [*CARD[:2], "1"]
    run = await call(keys, pay=payment(operation=operation), answers=[APPROVED], stores_card=stores)
    assert run.status == "SUCCEEDED" and run.last_words() == [said, P.connecting_back]
    assert (P.enter_security_code in run.heard) is asks_code
    if operation == "register":
        assert P.amount_is not in run.heard and P.confirm_register_press in run.heard


@pytest.mark.parametrize(
    ("name", "bad", "code"),
    [
        ("card_number", "4111111111111112#", "invalid_card_number"),
        ("expiry", "1399", "invalid_expiry"),
        ("security_code", "12", "invalid_security_code"),
    ],
)
async def test_attempts_used_up(name: str, bad: str, code: str) -> None:
    before = {"card_number": [], "expiry": CARD[:1], "security_code": CARD[:2]}[name]
    run = await call([*before, bad, bad, bad])
    assert run.status == "FAILED" and ended(run) == (PaymentStatus.FAILED, code)
    assert run.pay.error == {"code": code, "category": "input", "message": None}
    assert run.last_words() == [P.input_failed, P.connecting_back]
    assert run.pay.steps[-1] == (name, {name: 3})
    assert run.pay.sent == []


async def test_gateway_input_error_sends_the_caller_back_to_that_field_only() -> None:
    run = await call([*PAY, "456", "1"], answers=[input_error("security_code"), APPROVED])
    assert run.status == "SUCCEEDED"
    after = run.heard[run.heard.index(P.please_wait) + 1 :]
    assert after[:2] == [P.security_code_invalid, P.enter_security_code]
    assert P.enter_card not in after and P.enter_expiry not in after
    assert run.pay.sent == [("VISA", "1111"), ("VISA", "1111")]


async def test_gateway_input_error_with_attempts_used_up_fails_with_the_gateways_code() -> None:
    settings = Settings(attempts=1)
    run = await call(PAY, settings=settings, answers=[input_error("expiry", "42G830000")])
    assert run.status == "FAILED" and ended(run) == (PaymentStatus.FAILED, "42G830000")
    assert run.pay.error is not None and run.pay.error["category"] == "input"
    assert run.last_words() == [P.input_failed, P.connecting_back]


async def test_executions_used_up_per_call() -> None:
    """Declined, another card (1), declined again: no execution is left for this call."""
    run = await call([*PAY, "1", *PAY], answers=[DECLINED, DECLINED])
    assert run.status == "FAILED" and ended(run) == (PaymentStatus.FAILED, "too_many_attempts")
    assert run.last_words(4) == [
        P.declined,
        P.too_many_attempts,
        P.input_failed,
        P.connecting_back,
    ]
    assert run.pay.call_executions == 2


async def test_executions_used_up_per_payment() -> None:
    run = await call(PAY, executions=3)
    assert run.status == "FAILED" and run.pay.status is PaymentStatus.FAILED
    assert run.last_words(3) == [P.too_many_attempts, P.input_failed, P.connecting_back]
    assert run.pay.sent == []


async def test_declined_and_the_caller_chooses_the_operator() -> None:
    run = await call([*PAY, "2"], answers=[DECLINED])
    assert run.status == "FAILED" and ended(run) == (PaymentStatus.FAILED, "42G020000")
    assert run.pay.error is not None and run.pay.error["category"] == "declined"
    # The generic decline; the reason is for the screen and the API only.
    after = run.heard[run.heard.index(P.please_wait) + 1 :]
    assert after == [P.declined, P.declined_options, P.connecting_back]


async def test_declined_then_another_card_is_approved() -> None:
    run = await call([*PAY, "1", f"{AMEX}#", "1230", "1234", "1"], answers=[DECLINED, APPROVED])
    assert run.status == "SUCCEEDED"
    assert run.pay.sent == [("VISA", "1111"), ("AMEX", "0005")]
    assert P.enter_security_code_amex in run.heard


@pytest.mark.parametrize("at", ["card_number", "expiry", "security_code", "confirm"])
async def test_the_caller_asks_for_the_operator(at: str) -> None:
    keys = {
        "card_number": ["0#"],
        "expiry": [CARD[0], "0#"],
        "security_code": [*CARD[:2], "0#"],
        "confirm": [*CARD, "0"],
    }[at]
    run = await call(keys)
    assert run.status == "OPERATOR" and run.pay.status is PaymentStatus.ABANDONED
    assert run.last_words(1) == [P.connecting_operator]
    assert run.pay.ended == (PaymentStatus.ABANDONED, None, "done")


async def test_the_operator_before_the_payment_is_known() -> None:
    run = await call(["0#"], code="")
    assert run.status == "OPERATOR" and run.process.held is None
    assert run.channel.variables["IVRPAY_STATUS"] == "OPERATOR"


async def test_the_caller_hangs_up_the_step_is_recorded() -> None:
    run = await call([CARD[0], "!"])
    assert run.status is None and run.pay.status is PaymentStatus.ABANDONED
    assert run.pay.ended == (None, None, "expiry")  # the process decides: abandoned
    assert "IVRPAY_STATUS" not in run.channel.variables


async def _leaves_while_processing(answer: Any, executions: int = 0) -> FakeCallPayment:
    """The caller hangs up while the gateway answers ``answer``."""
    holder: list[ScriptedChannel] = []

    def answered_as_the_caller_leaves() -> Any:
        holder[0].hang_up()
        return answer

    s = Settings()
    proc = FakeProcess(settings=s, answers=[answered_as_the_caller_leaves], executions=executions)
    proc.by_code["123456"] = payment()
    channel = ScriptedChannel(PAY)
    holder.append(channel)
    status = await Call(channel, FlowDeps(settings=s, payments=proc, owner="t")).run()
    assert status is None and proc.held is not None
    return proc.held


async def test_a_hang_up_after_the_gateway_call_was_sent_keeps_its_outcome() -> None:
    held = await _leaves_while_processing(APPROVED)
    assert held.status is PaymentStatus.SUCCEEDED


async def test_a_hang_up_after_the_last_execution_allowed_fails_the_payment() -> None:
    held = await _leaves_while_processing(DECLINED, executions=2)
    assert held.ended == (None, None, "result")  # the process decides
    assert held.status is PaymentStatus.FAILED and held.error is not None
    assert held.error["code"] == "too_many_attempts"


async def test_gateway_system_error_nothing_charged() -> None:
    run = await call(PAY, answers=[SYSTEM_ERROR])
    assert run.status == "ERROR" and ended(run) == (PaymentStatus.FAILED, "E01010001")
    assert run.pay.error is not None and run.pay.error["category"] == "system"
    assert run.last_words() == [P.system_error, P.connecting_back]


async def test_outcome_unknown() -> None:
    run = await call(PAY, answers=[UNKNOWN])
    assert run.status == "UNKNOWN" and run.pay.status is PaymentStatus.UNKNOWN
    assert run.last_words() == [P.unknown_outcome, P.connecting_back]


@pytest.mark.parametrize("at", ["amount", "expiry", "confirm", "processing"])
async def test_canceled_through_the_api_while_in_the_ivr(at: str) -> None:
    run = await call(PAY, cancel_at=at, answers=[APPROVED])
    assert run.status == "CANCELED" and run.pay.status is PaymentStatus.CANCELED
    assert run.last_words() == [P.canceled, P.connecting_back]
    assert run.pay.sent == []


@pytest.mark.parametrize("when", ["start", "execute"])
async def test_a_cancel_recorded_after_the_last_step_stops_the_execution(when: str) -> None:
    """The cancel lands after the last progress: the attempt is refused (``start``), or the
    move to ``processing`` before ExecTran is (``execute``). Nothing is sent."""
    run = await call(PAY, cancel_at=when, answers=[APPROVED])
    assert run.status == "CANCELED" and run.pay.status is PaymentStatus.CANCELED
    assert run.pay.sent == [] and run.last_words() == [P.canceled, P.connecting_back]


@pytest.mark.parametrize(
    ("reason", "status", "said"),
    [
        ("canceled", "CANCELED", P.canceled),
        ("expired", "EXPIRED", P.expired),
        ("succeeded", "SUCCEEDED", P.already_paid),
        ("in_use", "IN_USE", P.in_use),
        ("unknown", "UNKNOWN", P.unknown_outcome),
    ],
)
async def test_a_payment_that_cannot_be_taken_up(reason: str, status: str, said: str) -> None:
    run = await call([], refuse=reason)
    assert run.status == status and run.process.held is None  # unchanged: never claimed
    assert run.last_words() == [said, P.connecting_back]
    assert run.channel.variables["IVRPAY_CALLBACK"] == "PJSIP/1001"  # the operator's callback


async def test_no_payment_found_after_three_codes() -> None:
    run = await call(["111111", "_", "22"], code="")
    assert run.status == "NOT_FOUND" and run.process.held is None
    assert run.process.looked_up == ["111111"]  # a short entry is not looked up
    assert run.heard == [
        P.enter_code,
        P.code_not_found,
        P.enter_code,
        P.no_input,
        P.enter_code,
        P.payment_not_found,
    ]
    assert "IVRPAY_PAYMENT_ID" not in run.channel.variables


async def test_found_by_the_code_keyed_or_by_the_transferrer() -> None:
    keyed = await call(["999999", "123456", *PAY], code="", answers=[APPROVED])
    assert keyed.status == "SUCCEEDED" and keyed.process.looked_up == ["999999", "123456"]
    by_device = payment(code="654321")
    proc_pay = {"by_device": {"PJSIP/1001": by_device}}
    moved = await call(
        PAY,
        pay=by_device,
        code="",
        transferrer="PJSIP/1001-0000002a",
        answers=[APPROVED],
        **proc_pay,
    )
    assert moved.status == "SUCCEEDED" and moved.process.looked_up == []


async def test_in_flight_limit_reached() -> None:
    channel = ScriptedChannel(transferrer="PJSIP/1001-0000002a")
    await busy_handler(FlowDeps(settings=Settings(), payments=FakeProcess(), owner="t"))(channel)
    assert channel.variables["IVRPAY_STATUS"] == "BUSY"
    assert channel.variables["IVRPAY_CALLBACK"] == "PJSIP/1001"
    assert channel.heard == [P.busy, P.connecting_back]


async def test_an_ivrpay_fault_is_an_apology() -> None:
    missing = await call(PAY, missing={P.enter_expiry})
    assert missing.status == "ERROR" and missing.pay.status is PaymentStatus.ABANDONED
    assert missing.last_words() == [P.apology, P.connecting_back]
    assert [e["event"] for e in missing.logs if e["log_level"] == "error"] == ["call.fault"]
    bug = await call(PAY, fail_at="expiry")
    assert bug.status == "ERROR" and bug.pay.status is PaymentStatus.ABANDONED
    assert bug.last_words() == [P.apology, P.connecting_back]
    assert [e["event"] for e in bug.logs if e["log_level"] == "error"] == ["call.bug"]


async def test_a_fault_once_the_gateway_may_have_been_asked_is_unknown() -> None:
    run = await call(PAY, answers=[RuntimeError("a bug after sending")])
    assert run.status == "UNKNOWN" and run.last_words() == [P.unknown_outcome, P.connecting_back]
    assert run.pay.status is PaymentStatus.PROCESSING  # the store's sweep resolves it


async def test_taken_back_by_the_operator() -> None:
    run = await call(PAY, taken_back_at="security_code")
    assert run.status is None and run.pay.status is PaymentStatus.ABANDONED
    assert run.pay.sent == [] and "IVRPAY_STATUS" not in run.channel.variables


async def test_every_status_the_dialplan_knows_is_reached_here() -> None:
    """A guard on this file: the rows above reach every IVRPAY_STATUS."""
    reached = {
        "SUCCEEDED", "FAILED", "OPERATOR", "ERROR", "UNKNOWN", "CANCELED", "EXPIRED",
        "IN_USE", "NOT_FOUND", "BUSY",
    }  # fmt: skip
    assert reached == {s.value for s in CallStatus}


# -- Keys (product.md) ----------------------------------------------------------------------------
async def test_star_replays_without_using_an_attempt() -> None:
    bad = "4111111111111112#"
    run = await call(["*", bad, "12*", bad, f"{VISA}#", *CARD[1:], "1"], answers=[APPROVED])
    assert run.status == "SUCCEEDED"
    assert run.heard.count(P.enter_card) == 5
    assert ("card_number", {"card_number": 2}) in run.pay.steps


async def test_silence_replays_and_uses_an_attempt() -> None:
    run = await call(["_", "_", "_"])
    assert run.status == "FAILED" and ended(run) == (PaymentStatus.FAILED, "invalid_card_number")
    assert run.heard.count(P.no_input) == 2


async def test_a_lone_hash_is_an_entry_and_not_a_valid_one() -> None:
    run = await call(["#", *PAY], answers=[APPROVED])
    assert run.status == "SUCCEEDED"
    assert run.heard[run.heard.index(P.enter_card) + 1] == P.card_invalid


async def test_digits_then_timeout_are_a_complete_entry() -> None:
    run = await call([VISA, "1230", "123", "1"], answers=[APPROVED])  # no '#' after the number
    assert run.status == "SUCCEEDED" and run.pay.sent == [("VISA", "1111")]


async def test_the_hash_after_a_full_length_entry_is_ignored_once() -> None:
    run = await call([CARD[0], "1230", "#", "123", "1"], answers=[APPROVED])
    assert run.status == "SUCCEEDED"
    assert P.security_code_invalid not in run.heard
    assert run.heard.count(P.enter_security_code) == 2  # asked again, no attempt used


async def test_a_key_that_stops_an_error_prompt_begins_the_next_entry() -> None:
    run = await call(
        ["4111111111111112#", "^4", "111111111111111#", *CARD[1:], "1"], answers=[APPROVED]
    )
    assert run.status == "SUCCEEDED" and run.pay.sent == [("VISA", "1111")]
    i = run.heard.index(P.card_invalid)
    assert run.heard[i + 1] == P.silence  # the prompt was not played again: the entry went on


async def test_a_key_during_the_greeting_begins_the_card_number() -> None:
    run = await call(["^4", "111111111111111#", *CARD[1:], "1"], answers=[APPROVED])
    assert run.status == "SUCCEEDED" and run.pay.sent == [("VISA", "1111")]
    assert P.enter_card not in run.heard and P.amount_is not in run.heard


async def test_two_at_the_confirmation_starts_again_from_the_card_number() -> None:
    run = await call([*CARD, "2", f"{AMEX}#", "1230", "1234", "1"], answers=[APPROVED])
    assert run.status == "SUCCEEDED" and run.pay.sent == [("AMEX", "0005")]
    assert run.heard.count(P.enter_card) == 2


async def test_no_choice_at_the_confirmation_goes_to_the_operator() -> None:
    run = await call([*CARD, "_", "7", "_"])
    assert run.status == "OPERATOR" and run.pay.status is PaymentStatus.ABANDONED


async def test_number_rules_have_their_own_prompts() -> None:
    discover = "6011111111111117#"
    run = await call([discover, "0120", *CARD], answers=[APPROVED])
    # A DISCOVER number (not accepted), then the past expiry: each with its prompt.
    assert P.brand_not_accepted in run.heard
    run = await call([CARD[0], "0120", "1230", "123", "1"], answers=[APPROVED])
    assert run.status == "SUCCEEDED" and P.expiry_past in run.heard


# -- Settings -------------------------------------------------------------------------------------
async def test_security_code_and_confirmation_switched_off() -> None:
    settings = replace(Settings(), security_code=False, confirm=False)
    run = await call(CARD[:2], settings=settings, answers=[APPROVED])
    assert run.status == "SUCCEEDED"
    assert P.enter_security_code not in run.heard and P.confirm_card_ending not in run.heard
    assert [s for s, _ in run.pay.steps] == ["amount", "card_number", "expiry", "processing"]
