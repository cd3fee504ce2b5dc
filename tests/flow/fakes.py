"""In-memory stand-ins for the conversation's two sides: a scripted caller on a fake channel and a
fake payment process. The money rules are the real ones (:func:`ivrpay.payments.decide` turns a
scripted gateway answer into the decision, :func:`ivrpay.payments.wipe_after` wipes the card), so
only the store, the gateway and the wire are replaced.

The caller's script, one item per input the flow asks for:

- ``"4111111111111111#"`` digits ended by ``#``; ``"1230"`` digits that filled the field (or, when
  shorter than the field, timed out after them); ``"#"`` a lone ``#``; ``"_"`` silence;
- ``"^4"`` the key 4 pressed during the next prompt that listens for keys (it stops the prompt);
- ``"!"`` the caller hangs up at that input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from ivrpay import payments
from ivrpay.card.holder import CardData
from ivrpay.config import Settings
from ivrpay.flow.channel import CallerGone
from ivrpay.gateway.results import Outcome
from ivrpay.payments import Decision, Next, Operation, PaymentStatus, decide, wipe_after

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@dataclass
class Played:
    digit: str | None = None
    failed: bool = False


@dataclass
class Data:
    digits: str
    timed_out: bool
    failed: bool = False


class ScriptedChannel:
    """A :class:`~ivrpay.flow.channel.Channel` whose caller follows ``keys``. ``heard``: every
    prompt id played, in order; ``variables``: what the dialplan would read; ``missing``:
    prompt ids whose file is missing (Asterisk's -1)."""

    def __init__(
        self,
        keys: Collection[str] = (),
        *,
        code: str = "123456",
        transferrer: str = "",
        missing: Collection[str] = (),
    ) -> None:
        self.env = SimpleNamespace(
            args=[code, transferrer], uniqueid="1700000000.1", channel="PJSIP/caller-00000001"
        )
        self.hangup_event = asyncio.Event()
        self.keys = list(keys)
        self.missing = set(missing)
        self.heard: list[str] = []
        self.variables: dict[str, str] = {}
        self.music: list[bool] = []

    @property
    def hung_up(self) -> bool:
        return self.hangup_event.is_set()

    def hang_up(self) -> None:
        self.hangup_event.set()

    def _line(self) -> None:
        if self.hung_up:
            raise CallerGone("hung up")

    async def answer(self) -> bool:
        self._line()
        return True

    async def stream_file(self, file: str, escape_digits: str = "") -> Played:
        self._line()
        prompt = file.removeprefix("ivrpay/")
        self.heard.append(prompt)
        if prompt in self.missing:
            return Played(failed=True)
        if escape_digits and self.keys and self.keys[0].startswith("^"):
            return Played(self.keys.pop(0)[1:])
        return Played()

    async def get_data(self, file: str, timeout_ms: int, max_digits: int) -> Data:
        self._line()
        prompt = file.removeprefix("ivrpay/")
        self.heard.append(prompt)
        if prompt in self.missing:
            return Data("", timed_out=False, failed=True)
        if not self.keys or self.keys[0] == "!":
            # The script is over (or says so): the caller hangs up.
            if self.keys:
                self.keys.pop(0)
            self.hang_up()
            raise CallerGone("hung up")
        keys = self.keys.pop(0)
        if keys == "_":
            return Data("", timed_out=True)
        if keys.endswith("#"):
            return Data(keys[:-1][:max_digits], timed_out=False)
        return Data(keys[:max_digits], timed_out=len(keys) < max_digits)

    async def set_variable(self, name: str, value: str | int) -> None:
        self._line()
        self.variables[name] = str(value)

    async def set_music(self, on: bool, music_class: str | None = None) -> None:
        self._line()
        self.music.append(on)

    async def noop(self) -> None:
        self._line()


# Scripted gateway answers (what the fake process's execute "receives").
APPROVED = Outcome("ExecTran", "ok")
DECLINED = Outcome("ExecTran", "declined", err_code="42G020000", message="declined")
SYSTEM_ERROR = Outcome("EntryTran", "system", err_code="E01010001", message="shop")
UNKNOWN = Outcome("ExecTran", "unknown", err_code="timeout", message="no answer")


def input_error(name: str, code: str = "42G440000") -> Outcome:
    return Outcome("ExecTran", "input", field=name, err_code=code)  # type: ignore[arg-type]


Answer = Outcome | BaseException | Callable[[], Outcome]


def payment(**overrides: Any) -> dict[str, Any]:
    """A pending payment as the store shows it to a call."""
    return {
        "id": "9b2f0c54-0000-4000-8000-000000000001",
        "code": "123456",
        "operation": "charge",
        "language": "ja",
        "amount": 12000,
        "tax": 800,
        "operator": {"callback": "PJSIP/1001"},
        "executions": [],
        "registration": None,
        **overrides,
    }


class FakeCallPayment:
    """The payment a call holds (what :class:`ivrpay.payments.CallPayment` records in the store,
    kept in memory): ``steps`` every progress, ``ended`` how the claim was released."""

    def __init__(self, process: FakeProcess, pay: dict[str, Any]) -> None:
        self.process = process
        self.payment = pay
        self._status = PaymentStatus.IN_CALL
        self.token: str | None = "token-1"
        self.call_executions = 0
        self.steps: list[tuple[str, dict[str, int]]] = []
        self.ended: tuple[PaymentStatus | None, Mapping[str, Any] | None, str | None] | None = None
        self.error: Mapping[str, Any] | None = None
        self.sent: list[tuple[str | None, str | None]] = []  # (brand, last4) of each card sent
        self._registered = False

    id = property(lambda self: str(self.payment["id"]))
    operation = property(lambda self: Operation(self.payment["operation"]))
    register_only = property(lambda self: self.operation is Operation.REGISTER)
    language = property(lambda self: str(self.payment["language"]))
    total = property(lambda self: int(self.payment["amount"]) + int(self.payment["tax"]))
    status = property(lambda self: self._status)
    registered = property(lambda self: self._registered)
    callback = property(lambda self: str(self.payment["operator"]["callback"]))
    held = property(lambda self: self.token is not None)

    def executions_left(self) -> bool:
        s = self.process.settings
        return self.call_executions < s.max_executions_per_call and self.payment_executions_left()

    def payment_executions_left(self) -> bool:
        return self.process.executions < self.process.settings.max_executions_per_payment

    async def progress(self, step: str, attempts: Mapping[str, int]) -> None:
        self.steps.append((step, dict(attempts)))
        p = self.process
        if step == p.taken_back_at:
            raise payments.TakenBack("taken back")
        if step == p.fail_at:
            raise RuntimeError("a bug in the bookkeeping")
        if step == p.cancel_at:
            p.cancel_requested = True
        if p.cancel_requested and self._status is PaymentStatus.IN_CALL:
            raise payments.CancelRequested()

    async def start_attempt(self) -> str:
        p = self.process
        if p.cancel_at == "start":
            p.cancel_requested = True
        if p.cancel_requested:
            self._status = PaymentStatus.CANCELED
            raise payments.PaymentCanceled(self.payment)
        if not self.payment_executions_left():
            self._status = PaymentStatus.FAILED
            raise payments.TooManyAttempts(self.payment)
        self.call_executions += 1
        p.executions += 1
        return f"ORDER-{p.executions:02d}"

    async def execute(
        self,
        order_id: str,
        card: CardData,
        attempts: Mapping[str, int],
        fields: Collection[str],
    ) -> Decision:
        p = self.process
        assert card.has_number and card.has_expiry, "the call sends a complete card"
        if p.cancel_at == "execute":
            # Recorded before ExecTran: the move to processing is refused, nothing is sent.
            card.wipe()
            self._status = PaymentStatus.CANCELED
            raise payments.PaymentCanceled(self.payment)
        self.sent.append((card.brand, card.last4))
        self._status = PaymentStatus.PROCESSING
        answer = p.answers.pop(0)
        if isinstance(answer, BaseException):
            card.wipe()
            raise answer
        outcome = answer() if callable(answer) else answer
        decision = decide(outcome, attempts, fields, max_attempts=p.settings.attempts)
        wipe_after(card, decision)
        self._registered = outcome.ok and p.stores_card
        self._status = decision.status
        self.error = decision.error
        if decision.next is Next.ERROR:
            # Nothing was charged: the process ends the claim itself (failed, category system).
            self.token = None
            self.ended = (PaymentStatus.FAILED, decision.error, "done")
        return decision

    async def end(
        self, status: PaymentStatus | None, error: Mapping[str, Any] | None, step: str | None
    ) -> None:
        if self.token is None:
            return
        self.token = None
        self.ended = (status, error, step)
        if status is None:  # the caller left: as CallPayment.end decides
            status = PaymentStatus.ABANDONED
            if not self.payment_executions_left():
                status, error = PaymentStatus.FAILED, dict(payments.TOO_MANY_ATTEMPTS)
        if self._status is PaymentStatus.IN_CALL:
            # As the store does: a cancel recorded during the call wins over abandoned or failed.
            final = status
            if self.process.cancel_requested and final in (
                PaymentStatus.ABANDONED,
                PaymentStatus.FAILED,
            ):
                final = PaymentStatus.CANCELED
            self._status = final
            self.error = error


@dataclass
class FakeClaim:
    call: FakeCallPayment | None
    reason: str | None = None


@dataclass
class FakeProcess:
    """The payment process for one call. ``by_code`` / ``by_device``: the payments findable;
    ``refuse``: a claim refusal reason (``in_use``, ``canceled``, ``expired``, ``succeeded``,
    ``unknown``, ``too_many_attempts``); ``answers``: the gateway's answers, one per execution;
    ``cancel_at`` / ``taken_back_at`` / ``fail_at``: the progress step at which a cancel is
    recorded (or ``start`` / ``execute``: as the attempt starts / just before ExecTran), the
    operator takes the caller back, or the bookkeeping breaks."""

    settings: Settings = field(default_factory=Settings)
    by_code: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_device: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse: str | None = None
    answers: list[Answer] = field(default_factory=list)
    stores_card: bool = True
    executions: int = 0
    cancel_at: str | None = None
    cancel_requested: bool = False
    taken_back_at: str | None = None
    fail_at: str | None = None
    live_tokens: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    held: FakeCallPayment | None = None
    looked_up: list[str] = field(default_factory=list)

    async def find_by_code(self, code: str, *, now: datetime) -> dict[str, Any] | None:
        self.looked_up.append(code)
        return self.by_code.get(code)

    async def find_for_transferrer(
        self, transferrer: str, *, now: datetime
    ) -> dict[str, Any] | None:
        return self.by_device.get(payments.device_of(transferrer))

    async def claim(
        self,
        payment: Mapping[str, Any],
        *,
        owner: str,
        uniqueid: str,
        channel: str,
        clock: Callable[[], datetime],
    ) -> FakeClaim:
        if self.refuse is not None:
            return FakeClaim(None, self.refuse)
        self.held = FakeCallPayment(self, dict(payment))
        return FakeClaim(self.held)
