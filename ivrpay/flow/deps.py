"""What the conversation needs from the rest of the process, as interfaces: the payment process
(find, claim) and the payment a call holds (its store bookkeeping, bound to the payment, its lease
token and the clock). :class:`ivrpay.payments.PaymentProcess` and
:class:`ivrpay.payments.CallPayment` provide them; the in-memory tests provide fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ivrpay.card.holder import CardData
from ivrpay.config import Settings
from ivrpay.payments import Decision, Operation, PaymentStatus

__all__ = ["Claim", "FlowDeps", "HeldPayment", "KeypadGuard", "Payments"]


class HeldPayment(Protocol):
    """What the conversation needs of the payment it holds (:class:`~ivrpay.payments.CallPayment`:
    the store bookkeeping of the call, bound to the payment, its lease token and the clock)."""

    @property
    def id(self) -> str: ...
    @property
    def operation(self) -> Operation: ...
    @property
    def register_only(self) -> bool: ...
    @property
    def language(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def status(self) -> PaymentStatus: ...
    @property
    def registered(self) -> bool: ...
    @property
    def callback(self) -> str: ...
    @property
    def held(self) -> bool: ...
    def executions_left(self) -> bool: ...
    async def progress(self, step: str, attempts: Mapping[str, int]) -> None: ...
    async def start_attempt(self) -> str: ...
    async def execute(
        self,
        order_id: str,
        card: CardData,
        attempts: Mapping[str, int],
        fields: Collection[str],
    ) -> Decision: ...
    async def end(
        self, status: PaymentStatus | None, error: Mapping[str, Any] | None, step: str | None
    ) -> None: ...


class Claim(Protocol):
    """A claim's outcome: ``call`` when this call holds the payment, else the ``reason``."""

    @property
    def call(self) -> HeldPayment | None: ...
    @property
    def reason(self) -> str | None: ...


class Payments(Protocol):
    """What the conversation needs of :class:`~ivrpay.payments.PaymentProcess`."""

    live_tokens: set[str]
    tasks: set[asyncio.Task[Any]]

    async def find_by_code(self, code: str, *, now: datetime) -> dict[str, Any] | None: ...
    async def find_for_transferrer(
        self, transferrer: str, *, now: datetime
    ) -> dict[str, Any] | None: ...
    async def claim(
        self,
        payment: Mapping[str, Any],
        *,
        owner: str,
        uniqueid: str,
        channel: str,
        clock: Callable[[], datetime],
    ) -> Claim: ...


class KeypadGuard(Protocol):
    """Listen-in: a card field may be keyed only while the operator listens on the spy leg and,
    for a caller whose keys are tones, only while that leg is muted (:mod:`ivrpay.ami.guard`)."""

    async def open(self, field: str) -> bool:
        """Before the caller may key ``field``: False = card entry must stop (the caller goes
        back to the operator). Opening the field that is open already is a no-op."""
        ...

    async def close(self) -> None:
        """The field is done (or the call ends): lift what :meth:`open` set. Never raises."""
        ...

    async def finish(self) -> None:
        """The call's card entry is over, whatever the end: the listen-in's end is recorded.
        Never raises."""
        ...


# The guard of a payment about to be keyed (its snapshot), or None: no listen-in.
Guards = Callable[[Mapping[str, Any]], KeypadGuard | None]


@dataclass
class FlowDeps:
    """What a call needs from the process: settings, the payment process, a lease owner."""

    settings: Settings
    payments: Payments
    owner: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    guards: Guards | None = None  # listen-in keypad guards (AMI configured)

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        return self.payments.tasks  # gateway work in flight

    @property
    def live_tokens(self) -> set[str]:
        return self.payments.live_tokens
