"""The listen-in keypad guard in the conversation, in memory: every card field is opened before
it is asked (the card number before the greeting, whose keys start it) and closed when keyed; a
field the guard refuses ends the card entry before its prompt, with the caller sent back."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import structlog.testing

from ivrpay.config import Settings
from ivrpay.flow.call import Call, FlowDeps
from ivrpay.flow.prompts import P
from ivrpay.payments import PaymentStatus
from tests.flow.fakes import APPROVED, NOW, FakeProcess, ScriptedChannel, payment

PAY = ["4111111111111111#", "1230", "123", "1"]


class FakeGuard:
    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.log: list[str] = []
        self.open_now: str | None = None

    async def open(self, field: str) -> bool:
        if self.open_now == field:
            return True
        self.log.append(f"open {field}")
        if field == self.refuse:
            return False
        self.open_now = field
        return True

    async def close(self) -> None:
        self.log.append("close")
        self.open_now = None

    async def finish(self) -> None:
        self.log.append("finish")


async def run(
    keys: Collection[str], guard: FakeGuard | None, listen: bool = True
) -> tuple[str | None, ScriptedChannel, FakeProcess, list[Mapping[str, Any]]]:
    settings = Settings()
    proc = FakeProcess(settings=settings, answers=[APPROVED])
    p = payment(listen_in={"operator_channel": "PJSIP/1001-0000002a"} if listen else None)
    proc.by_code[p["code"]] = p
    seen: list[Mapping[str, Any]] = []

    def guards(found: Mapping[str, Any]) -> FakeGuard | None:
        seen.append(found)
        return guard

    channel = ScriptedChannel(keys, code=p["code"])
    deps = FlowDeps(settings=settings, payments=proc, owner="t", clock=lambda: NOW, guards=guards)
    with structlog.testing.capture_logs():
        status = await Call(channel, deps).run()
    return status, channel, proc, seen


async def test_every_field_is_opened_before_it_is_asked_and_closed_after() -> None:
    guard = FakeGuard()
    status, _channel, _proc, seen = await run(PAY, guard)
    assert status == "SUCCEEDED"
    assert seen and seen[0]["listen_in"]["operator_channel"] == "PJSIP/1001-0000002a"
    assert guard.log == [
        "open card_number",  # before the greeting
        "close",
        "open expiry",
        "close",
        "open security_code",
        "close",
        "close",  # the end of the card entry: always lifted
        "finish",  # the end of the call
    ]


async def test_a_refused_field_is_never_asked() -> None:
    guard = FakeGuard(refuse="expiry")
    status, channel, proc, _ = await run(PAY, guard)
    assert status == "OPERATOR"
    assert P.enter_card in channel.heard and P.enter_expiry not in channel.heard
    assert channel.heard[-1] == P.connecting_operator
    assert proc.held is not None and proc.held.status is PaymentStatus.ABANDONED
    assert proc.held.sent == []  # nothing went to the gateway
    assert guard.log[-1] == "finish"


async def test_refused_before_the_greeting_takes_no_key() -> None:
    guard = FakeGuard(refuse="card_number")
    status, channel, _proc, _ = await run(PAY, guard)
    assert status == "OPERATOR"
    assert P.welcome not in channel.heard and P.enter_card not in channel.heard


async def test_no_guard_for_a_plain_transfer() -> None:
    status, _channel, _proc, seen = await run(PAY, None, listen=False)
    assert status == "SUCCEEDED" and seen[0]["listen_in"] is None
