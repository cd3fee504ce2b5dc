"""Typed results of gateway calls. None of them holds card data: at most the last four digits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ivrpay.gateway.errors import Field, Kind, rule_for

ReconcileState = Literal["executed", "not_executed", "unknown"]


@dataclass(frozen=True, slots=True)
class StoredCard:
    """One card of a member as SearchCard shows it (masked number: last 4 only)."""

    card_seq: int
    last4: str
    default: bool
    deleted: bool
    card_name: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one gateway endpoint or composite operation.

    ``kind``: ``ok`` | ``input`` (``field`` says which: card_number | expiry | security_code) |
    ``declined`` | ``system`` (nothing happened, nothing to retry) | ``busy`` (only inside the
    client: busy that outlasts its retries is reported as ``system``) | ``unknown`` (the request may
    have been executed: reconcile).
    ``err_code`` is the deciding ErrInfo (e.g. ``42G020000``), ``err_info`` every
    ``(ErrCode, ErrInfo)`` pair of the answer. ``sent`` is False when the request certainly never
    reached the gateway. ``reconciled`` marks data recovered through SearchTrade/SearchCard.
    """

    endpoint: str
    kind: Kind
    field: Field | None = None
    err_code: str | None = None
    err_info: tuple[tuple[str, str], ...] = ()
    message: str = ""
    sent: bool = False
    refused_here: bool = False  # never sent: a value the gateway cannot take (retrying won't help)
    sent_at: datetime | None = None  # UTC, when the (last) request went out
    attempts: int = 0
    elapsed_ms: int = 0
    reconciled: bool = False
    # success data (whatever the endpoint answers)
    order_id: str | None = None
    access_id: str | None = None
    access_pass: str | None = dataclasses.field(default=None, repr=False)
    forward: str | None = None
    approve: str | None = None
    tran_id: str | None = None
    tran_date: datetime | None = None
    method: str | None = None
    pay_times: str | None = None
    status: str | None = None  # SearchTrade
    job_cd: str | None = None
    amount: int | None = None
    tax: int | None = None
    process_date: datetime | None = None
    card_last4: str | None = None
    card_seq: int | None = None
    member_id: str | None = None
    member_name: str | None = None
    cards: tuple[StoredCard, ...] = ()

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def retry_later(self) -> bool:
        """Whether sending the same request later may succeed: the outcome is unknown, or the
        gateway was unreachable, busy or unreadable. A definite answer (an input error, a
        decline, a parameter error such as a card the gateway will not store) is not retried."""
        if self.kind in ("unknown", "busy"):
            return True
        if self.kind != "system" or self.refused_here:
            return False
        return self.err_code is None or rule_for(self.err_code).kind in ("busy", "unknown")


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What SearchTrade says about an execution whose outcome was unknown.

    ``executed``: it went through (``trade`` carries TranID, Approve, …); ``not_executed``: it did
    not, and the send is old enough to trust that; ``unknown``: still unknown (too recent, gateway
    unreachable, or a state that needs a person).
    """

    state: ReconcileState
    trade: Outcome
    reason: str

    @property
    def executed(self) -> bool:
        return self.state == "executed"

    @property
    def not_executed(self) -> bool:
        return self.state == "not_executed"
