"""How a call ends (product.md, "End states"): the ``IVRPAY_STATUS`` the dialplan reads, what
the caller hears last, and how the payment the call holds ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from ivrpay.flow.prompts import P
from ivrpay.payments import PaymentStatus

__all__ = [
    "APOLOGY",
    "CANCELED",
    "IVRPAY_STATUSES",
    "REFUSED",
    "UNKNOWN",
    "CallStatus",
    "End",
    "to_operator",
]


class CallStatus(StrEnum):
    """Every IVRPAY_STATUS the call may leave for the dialplan (product.md, "End states")."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    OPERATOR = "OPERATOR"
    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    IN_USE = "IN_USE"
    NOT_FOUND = "NOT_FOUND"
    BUSY = "BUSY"


IVRPAY_STATUSES = tuple(s.value for s in CallStatus)


class End(Exception):
    """The call is over: ``status`` for the dialplan, ``prompts`` for the caller, and how an
    ``in_call`` payment ends (``payment_status`` None = leave it as the store has it)."""

    def __init__(
        self,
        status: CallStatus | str,
        prompts: Sequence[str],
        payment_status: PaymentStatus | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = CallStatus(status)  # ValueError: not a status the dialplan knows
        super().__init__(self.status.value)
        self.prompts = list(prompts)
        self.payment_status = payment_status
        self.error = error


# How the claim refusal reasons of the store are told to the caller.
REFUSED = {
    "in_use": (CallStatus.IN_USE, [P.in_use]),
    "canceled": (CallStatus.CANCELED, [P.canceled]),
    "expired": (CallStatus.EXPIRED, [P.expired]),
    "succeeded": (CallStatus.SUCCEEDED, [P.already_paid]),
    "unknown": (CallStatus.UNKNOWN, [P.unknown_outcome]),
    "too_many_attempts": (CallStatus.FAILED, [P.too_many_attempts, P.input_failed]),
    "not_found": (CallStatus.NOT_FOUND, [P.payment_not_found]),
}
APOLOGY = [P.apology, P.connecting_back]
CANCELED = [P.canceled, P.connecting_back]
UNKNOWN = [P.unknown_outcome, P.connecting_back]


def to_operator() -> End:
    """The caller asked for the operator (``0``): a payment held ends abandoned."""
    return End(CallStatus.OPERATOR, [P.connecting_operator], PaymentStatus.ABANDONED)
