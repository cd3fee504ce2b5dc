"""The money rules, pure: what a gateway answer means for the payment and for the call.

:func:`decide` is the one place that turns an answer into the payment's status and what the call
must do next; :func:`error_of` the one place that turns it into the payment's ``error``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from ivrpay.gateway.results import Outcome


class PaymentStatus(StrEnum):
    """The payment statuses of product.md ("Status")."""

    PENDING = "pending"
    IN_CALL = "in_call"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    ABANDONED = "abandoned"
    CANCELED = "canceled"
    EXPIRED = "expired"


class Operation(StrEnum):
    CHARGE = "charge"
    REGISTER = "register"
    CHARGE_AND_REGISTER = "charge_and_register"


class Step(StrEnum):
    """Where the caller is (the payment's ``progress.step``, product.md "API shapes")."""

    WAITING = "waiting"
    IDENTIFY = "identify"
    AMOUNT = "amount"
    CARD_NUMBER = "card_number"
    EXPIRY = "expiry"
    SECURITY_CODE = "security_code"
    CONFIRM = "confirm"
    PROCESSING = "processing"
    RESULT = "result"
    DONE = "done"


class Next(Enum):
    """What the call does after a gateway answer."""

    SUCCEEDED = "succeeded"  # tell what was done
    REENTER = "reenter"  # a gateway input error on a field the call asks: key it again
    ANOTHER_CARD = "another_card"  # declined (or an input error the call cannot correct)
    UNKNOWN = "unknown"  # the outcome is not known: the reconciler settles it
    ERROR = "error"  # a system error: nothing was charged


@dataclass(frozen=True)
class Decision:
    """``status``: the payment's status after the answer; ``field``: the rejected field (with
    REENTER); ``error``: the payment's error (None on success)."""

    status: PaymentStatus
    next: Next
    error: dict[str, Any] | None = None
    field: str | None = None


# The payment's error once no gateway execution is left (product.md, "Limits").
TOO_MANY_ATTEMPTS: Mapping[str, Any] = {
    "code": "too_many_attempts",
    "category": "declined",
    "message": "the gateway execution limit was reached",
}


def error_of(outcome: Outcome) -> dict[str, Any]:
    """The payment's ``error`` for a gateway answer that is not a success."""
    category = outcome.kind if outcome.kind in ("input", "declined", "unknown") else "system"
    return {
        "code": outcome.err_code or outcome.kind,
        "category": category,
        "message": outcome.message or None,
    }


def rejected_field(outcome: Outcome, fields: Collection[str]) -> str | None:
    """The field a gateway input error sends the caller back to: one this call asks for (a
    security code switched off or not asked makes the card unusable here)."""
    if outcome.kind != "input" or outcome.field not in fields:
        return None
    return outcome.field


def decide(
    outcome: Outcome, attempts: Mapping[str, int], fields: Collection[str], *, max_attempts: int
) -> Decision:
    """The payment's status and the call's next step for one gateway answer.

    ``attempts``: the attempts used so far per field; ``fields``: the fields this call asks for.
    """
    if outcome.ok:
        return Decision(PaymentStatus.SUCCEEDED, Next.SUCCEEDED)
    error = error_of(outcome)
    field = rejected_field(outcome, fields)
    if field is not None:
        used = attempts.get(field, 0) + 1
        status = PaymentStatus.FAILED if used >= max_attempts else PaymentStatus.IN_CALL
        return Decision(status, Next.REENTER, error, field)
    if outcome.kind in ("declined", "input"):
        return Decision(PaymentStatus.IN_CALL, Next.ANOTHER_CARD, error)
    if outcome.kind == "unknown":
        return Decision(PaymentStatus.UNKNOWN, Next.UNKNOWN, error)
    return Decision(PaymentStatus.FAILED, Next.ERROR, {**error, "category": "system"})


def unknown_decision(reason: str) -> Decision:
    """Once ExecTran may have been sent, a fault of ours is an unknown outcome, never an error."""
    return Decision(
        PaymentStatus.UNKNOWN,
        Next.UNKNOWN,
        {"code": "unknown", "category": "unknown", "message": reason},
    )


def result_of(outcome: Outcome) -> dict[str, Any]:
    """The payment's ``result`` of a success."""
    return {
        "approve": outcome.approve,
        "tran_id": outcome.tran_id,
        "tran_date": outcome.tran_date,
        "forward": outcome.forward,
        "card_seq": outcome.card_seq,
    }


def registration_of(outcome: Outcome, *, retry: bool) -> dict[str, Any]:
    """The payment's ``registration`` after a card storage (``retry``: one that may still get
    through is left ``pending`` for the retrier)."""
    return {
        "status": "succeeded" if outcome.ok else ("pending" if retry else "failed"),
        "card_seq": outcome.card_seq,
        "error": None if outcome.ok else error_of(outcome),
    }
