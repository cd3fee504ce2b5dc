"""Capture, void and refund (AlterTran) of a succeeded payment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from ivrpay import store
from ivrpay.gateway.results import Outcome
from ivrpay.payments.journal import log_gateway_call

log = structlog.get_logger(__name__)

SETTLEMENT_ACTIONS = {"capture": "captured", "void": "voided", "refund": "refunded"}


class SettleRefused(Exception):
    """A settlement that did not happen. ``reason``: "not_found" | "not_settleable" |
    "no_gateway" | "gateway_unknown" | "gateway_busy" | "gateway_refused"; ``gateway_errors``:
    the gateway's ErrInfo codes."""

    def __init__(self, reason: str, message: str, gateway_errors: list[str] | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.gateway_errors = gateway_errors or []


async def settle(
    db: Any,
    gateway: Any,
    payment_id: str,
    action: str,
    *,
    actor: str,
    clock: Callable[[], datetime],
) -> dict[str, Any]:
    """Capture (SALES of an AUTH), void or refund: the new snapshot, or SettleRefused."""
    if action not in SETTLEMENT_ACTIONS:
        raise ValueError(f"unknown settlement action {action!r}")
    snapshot = await store.get_payment(db, payment_id)
    if snapshot is None:
        raise SettleRefused("not_found", "No such payment.")
    verdict = store.settlement_action(snapshot, action)
    if verdict == "already":
        return snapshot
    if verdict != "ok":
        raise SettleRefused(
            "not_settleable",
            f"A {snapshot['status']} payment (settlement {snapshot.get('settlement')}) "
            f"cannot be {SETTLEMENT_ACTIONS[action]}.",
        )
    if gateway is None:
        raise SettleRefused("no_gateway", "No payment gateway is configured.")
    handle = await store.get_gateway_handle(db, payment_id)
    if handle is None:
        raise SettleRefused("not_settleable", "The payment has no gateway transaction to change.")
    outcome = await alter(gateway, action, handle)
    await log_gateway_call(
        db, outcome, payment_id=payment_id, order_id=handle["order_id"], clock=clock
    )
    result = _answer(action, outcome)
    try:
        return await store.record_settlement(
            db, payment_id, action=action, now=clock(), actor=actor, result=result
        )
    except store.Conflict:
        raise SettleRefused(
            "not_settleable", f"The payment changed meanwhile and cannot be {action}d."
        ) from None


async def alter(gateway: Any, action: str, handle: dict[str, Any]) -> Outcome:
    """The gateway client's ``capture``/``void``/``refund`` (each looks the order up first with
    SearchTrade, so repeating one is harmless)."""
    order_id = handle["order_id"]
    if action == "capture":
        outcome: Outcome = await gateway.capture(order_id, int(handle["amount"]))
    elif action == "void":
        outcome = await gateway.void(order_id)
    else:
        outcome = await gateway.refund(order_id)
    log.info(
        "payment.settlement_sent",
        action=action,
        order_id=order_id,
        outcome=outcome.kind,
        err_code=outcome.err_code,
    )
    return outcome


def _answer(action: str, outcome: Outcome) -> dict[str, Any]:
    """The result to record of a done AlterTran, or SettleRefused."""
    if outcome.ok:
        return {
            "approve": outcome.approve,
            "tran_id": outcome.tran_id,
            "tran_date": outcome.tran_date,
            "forward": outcome.forward,
        }
    # (ErrCode, ErrInfo) pairs: the ErrInfo detail is what a merchant looks up.
    codes = [info for _code, info in outcome.err_info]
    if outcome.kind == "unknown":
        raise SettleRefused(
            "gateway_unknown",
            "The gateway's answer was lost; nothing was recorded. Retrying is safe.",
            codes,
        )
    if outcome.kind == "busy":
        raise SettleRefused("gateway_busy", "The gateway is busy; retry later.", codes)
    raise SettleRefused(
        "gateway_refused",
        f"The gateway refused to {action} the payment; nothing was changed.",
        codes,
    )
