"""Capture, void and refund as API answers: the payment process settles, this names the problem.

The API never talks to the gateway: :meth:`ivrpay.payments.PaymentProcess.settle` does, and its
refusals become ``application/problem+json`` answers here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ivrpay.api import keys
from ivrpay.api.problems import Problem, conflict, not_found
from ivrpay.payments import SETTLEMENT_ACTIONS, SettleRefused

__all__ = ["SETTLEMENT_ACTIONS", "settle_payment"]

# SettleRefused.reason -> (HTTP status, problem slug)
_PROBLEMS = {
    "no_gateway": (503, "gateway-unavailable"),
    "gateway_unknown": (504, "gateway-outcome-unknown"),
    "gateway_busy": (503, "gateway-busy"),
    "gateway_refused": (502, "gateway-refused"),
    "in_progress": (409, "settlement-in-progress"),
}


async def settle_payment(
    config: Mapping[Any, Any], payment_id: str, action: str, actor: str
) -> dict[str, Any]:
    """Capture, void or refund (the API's and the screen's): the new snapshot, or a Problem."""
    try:
        return await config[keys.PAYMENTS].settle(payment_id, action, actor=actor)
    except SettleRefused as refused:
        if refused.reason == "not_found":
            raise not_found() from None
        if refused.reason == "not_settleable":
            raise conflict("not-settleable", refused.message) from None
        status, slug = _PROBLEMS[refused.reason]
        extra: dict[str, Any] = (
            {"gateway_errors": refused.gateway_errors} if refused.reason != "no_gateway" else {}
        )
        raise Problem(status, slug, refused.message, **extra) from None
