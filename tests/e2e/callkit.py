"""What every call test checks, in one place: the record is clean, the variables, the prompts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ivrpay.simulator import Breakpoint, CallRecord, SimulatedCall
from ivrpay.simulator.call import Match
from tests.support.gateway import future_expiry

if TYPE_CHECKING:
    from tests.e2e.conftest import Ivrpay

EXPIRY = future_expiry()  # MMYY a few years ahead
VISA = "4111111111111111"
OPERATOR = {"id": "op-1", "callback": "PJSIP/1001"}
TRANSFERRER = "PJSIP/1001-0000002a"

# What the caller hears before the card number, by language, for 12,800 yen.
GREETING = {
    "en": ["welcome", "amount_is", "num_12", "unit_thousand", "num_800", "yen", "amount_is_tail"],
    "ja": [
        *("welcome", "amount_is"),
        *("num_1", "unit_man", "num_2000", "num_800", "yen"),
        "amount_is_tail",
    ],
}


# Named prompt runs the call tests compare with.
CARD_PROMPTS = ["enter_card", "enter_expiry", "enter_security_code"]  # the three fields
REGISTER_CARD_PROMPTS = CARD_PROMPTS[:2]  # storing a card asks no security code
NOT_FOUND_PROMPTS = [*("enter_code", "code_not_found") * 2, "enter_code", "payment_not_found"]


def back(*said: str) -> list[str]:
    """The last words of a call: ``said``, then "connecting you back"."""
    return [*said, "connecting_back"]


def result_prompts(said: str) -> list[str]:
    """ "Please wait", the result, "connecting you back": the end of a call that was sent."""
    return ["please_wait", *back(said)]


def past_expiry() -> str:
    """A keyed expiry (``MMYY``) whose month has ended."""
    now = datetime.now()
    return f"{now.month:02d}{(now.year - 1) % 100:02d}"


def clean(record: CallRecord) -> None:
    """The call broke no rule: it ended the normal way, every prompt file the flow played existed
    in the channel's language, the server kept to the protocol, no card number went on the wire."""
    assert record.ok, record
    assert record.missing_prompts == [], record.missing_prompts
    assert record.protocol_errors == [], record.protocol_errors
    assert record.card_like_commands == [], "a card number was sent to Asterisk"
    assert record.fallback_prompts == [], record.fallback_prompts


def heard(record: CallRecord) -> list[str]:
    """The prompt ids the caller heard, in order (after :func:`clean`)."""
    clean(record)
    ids = []
    for p in record.prompts:
        assert p.file.startswith("ivrpay/"), p.file  # never Asterisk's own sounds
        ids.append(p.file.removeprefix("ivrpay/"))
    return ids


def languages_heard(record: CallRecord) -> list[tuple[str, str]]:
    """(prompt id, channel language) of every prompt heard."""
    return [(p.file.removeprefix("ivrpay/"), p.language) for p in record.prompts]


def ended(
    record: CallRecord, status: str, payment: dict[str, Any] | None, callback: str = ""
) -> None:
    """The variables the dialplan reads at the end of the AGI (after :func:`clean`)."""
    clean(record)
    assert record.variables.get("IVRPAY_STATUS") == status, record
    if payment is None:
        assert "IVRPAY_PAYMENT_ID" not in record.variables, record
    else:
        assert record.variables.get("IVRPAY_PAYMENT_ID") == payment["id"], record
    assert record.variables.get("IVRPAY_CALLBACK") == callback, record
    assert not record.hung_up, record


def hung_up(record: CallRecord) -> None:
    """The caller hung up, and the server told the dialplan nothing (it never runs again)."""
    clean(record)
    assert record.hung_up, record
    assert "IVRPAY_STATUS" not in record.variables, record


def confirm_prompts(last4: str, lang: str = "en") -> list[str]:
    """ "Card ending 1 2 3 4, 12,800 yen — press 1 to pay, 2 to re-enter" for 12,800 yen."""
    amount = GREETING[lang][2:]
    return [*card_ending_prompts(last4), *amount, "confirm_pay_press"]


def card_ending_prompts(last4: str) -> list[str]:
    """ "Card ending 1 2 3 4": the start of every confirmation."""
    return ["confirm_card_ending", *[f"digit_{d}" for d in last4], "confirm_card_ending_tail"]


def pay_keys(number: str = VISA, code: str = "123", expiry: str = EXPIRY) -> list[str]:
    """The entries of a caller who pays without a slip: number#, expiry, code, confirm 1."""
    return [f"{number}#", expiry, code, "1"]


async def keyed_call(
    ivrpay: Ivrpay, keys: list[str], status: str = "SUCCEEDED", **call_kw: Any
) -> tuple[dict[str, Any], CallRecord]:
    """A new English payment of 12,800 yen, called with its code and ``keys``: the call ended
    with ``status`` and no callback (:func:`ended`). The payment as created, and the record."""
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(keys, code=payment["code"], **call_kw)
    ended(record, status, payment)
    return payment, record


def outcomes(payment: dict[str, Any], error_field: str = "code") -> list[tuple[str, Any]]:
    """(outcome, that field of the error or None) of each of the payment's executions."""
    return [(e["outcome"], (e["error"] or {}).get(error_field)) for e in payment["executions"]]


def simulated(
    ivrpay: Ivrpay, keys: list[str], *, code: str = "", transferrer: str = "", **kw: Any
) -> SimulatedCall:
    """A call not yet started, for tests that act mid-call (``pause_at``, ``on_command``)."""
    kw.setdefault("sounds_dir", ivrpay.settings.sounds_dir)
    kw.setdefault("language", "en")
    return SimulatedCall(
        "127.0.0.1", ivrpay.service.agi.port, args=(code, transferrer), keys=keys, **kw
    )


async def held_call(
    ivrpay: Ivrpay, keys: list[str], at: Match, **kw: Any
) -> tuple[SimulatedCall, Breakpoint]:
    """A :func:`simulated` call, started and held where the server sends ``at``: the test acts,
    then ``release()`` s the breakpoint and awaits ``call.wait()``."""
    call = simulated(ivrpay, keys, **kw)
    held = call.pause_at(at)
    await call.start()
    await held.reached()
    return call, held


def shift_clock(ivrpay: Ivrpay, delta: timedelta) -> None:
    """The calls' clock runs ``delta`` ahead from now on (the API and workers keep real time)."""
    ivrpay.service.deps.clock = lambda: datetime.now(UTC) + delta


async def call_released(ivrpay: Ivrpay, payment_id: str) -> dict[str, Any]:
    """The payment once its call has let it go: with AGIEXITONHANGUP Asterisk closes the socket
    at once, and the server finishes the call after the stand-in's record has ended."""
    async with asyncio.timeout(10), ivrpay.service.listener.subscribe(payment_id) as changes:
        while True:
            payment = await ivrpay.payment(payment_id)
            if payment["call"] is not None and payment["call"]["ended_at"] is not None:
                return payment
            await changes.get()
