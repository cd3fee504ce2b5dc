"""Settling what a call could not: an unknown outcome (SearchTrade / SearchCard) and a card
storage to retry (TradedCard). The workers claim the items and record these outcomes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivrpay.gateway.errors import CARD_NOT_FOUND, MEMBER_NOT_FOUND
from ivrpay.payments.journal import log_gateway_call
from ivrpay.payments.rules import Operation, error_of


@dataclass(frozen=True)
class ReconcileOutcome:
    """What the gateway said about an unknown payment (see store.record_reconciliation)."""

    status: str  # "succeeded" | "failed" | "retry"
    error: Mapping[str, Any] | None = None
    result: Mapping[str, Any] | None = None
    card: Mapping[str, Any] | None = None
    order_id: str | None = None
    registration: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RegistrationOutcome:
    """What a retry of a pending card registration found (see store.record_registration_attempt)."""

    status: str  # "succeeded" | "failed" | "retry"
    card_seq: int | None = None
    error: Mapping[str, Any] | None = None


RETRY = ReconcileOutcome("retry")

_NO_CHARGE = {
    "code": "no_charged_attempt",
    "category": "system",
    "message": "no succeeded attempt to store the card from",
}


async def reconcile(
    db: Any, gateway: Any, item: dict[str, Any], clock: Callable[[], datetime]
) -> ReconcileOutcome:
    """An unknown payment (one item of store.claim_reconciliations plus ``now``).

    Every attempt still marked unknown (or never answered) is looked up with SearchTrade: one
    found executed makes the payment ``succeeded``; all of them certainly not executed make it
    ``failed`` (category ``system``: nothing was charged); anything else is a retry. The
    "UNPROCESSED is trusted only after IVRPAY_RECONCILE_AFTER_S" rule lives in the gateway
    client, judged at ``item["now"]``. Each SearchTrade is in the gateway-call log.
    """
    payment = item["payment"]
    open_attempts = [
        e
        for e in item["executions"]
        if e["sent_at"] is not None and e["outcome"] in (None, "unknown")
    ]
    if not open_attempts:
        return RETRY  # nothing SearchTrade can settle: an admin will
    if payment["operation"] == Operation.REGISTER:
        # Storing a card opens no trade: SearchCard tells whether SaveCard went through.
        return await _reconcile_registration(gateway, item, open_attempts[-1], clock)
    not_executed = 0
    for attempt in open_attempts:
        rec = await gateway.reconcile(
            attempt["order_id"], sent_at=attempt["sent_at"], now=item.get("now")
        )
        await log_gateway_call(
            db,
            rec.trade,
            payment_id=payment["id"],
            order_id=attempt["order_id"],
            clock=clock,
            state=rec.state,
        )
        if rec.state == "executed":
            trade = rec.trade
            card = payment.get("card") or {}
            last4 = trade.card_last4 or card.get("last4")
            return ReconcileOutcome(
                "succeeded",
                order_id=attempt["order_id"],
                result={
                    "approve": trade.approve,
                    "tran_id": trade.tran_id,
                    "tran_date": trade.tran_date or trade.process_date,
                    "forward": trade.forward,
                },
                card={"brand": card.get("brand"), "last4": last4} if last4 else None,
            )
        if rec.state == "not_executed":
            not_executed += 1
    if not_executed == len(open_attempts):
        previous = payment.get("error") or {}
        return ReconcileOutcome(
            "failed",
            order_id=open_attempts[-1]["order_id"],
            error={
                "code": previous.get("code") or "not_executed",
                "category": "system",
                "message": "the gateway did not execute the payment; nothing was charged",
            },
        )
    return RETRY


async def _reconcile_registration(
    gateway: Any, item: dict[str, Any], attempt: dict[str, Any], clock: Callable[[], datetime]
) -> ReconcileOutcome:
    """A ``register`` payment whose SaveCard outcome was unknown: the member's card list decides.

    A live card with the keyed last four digits = stored. No such card is trusted as "not stored"
    only once the send is older than the reconcile window (a SaveCard still in flight looks the
    same), as with SearchTrade's UNPROCESSED.
    """
    payment = item["payment"]
    last4 = (payment.get("card") or {}).get("last4")
    listed = await gateway.search_card(payment["member_id"])
    if listed.kind not in ("ok", "system"):
        return RETRY
    cards = [c for c in listed.cards if not c.deleted and c.last4 == last4] if listed.ok else []
    if cards:
        seq = max(c.card_seq for c in cards)
        return ReconcileOutcome(
            "succeeded",
            order_id=attempt["order_id"],
            result={"card_seq": seq},
            registration={"status": "succeeded", "card_seq": seq, "error": None},
        )
    if not listed.ok and listed.err_code not in (CARD_NOT_FOUND, MEMBER_NOT_FOUND):
        return RETRY  # the list could not be read: ask again later
    now = item.get("now") or clock()
    if (now - attempt["sent_at"]).total_seconds() < gateway.reconcile_after_s:
        return RETRY
    error = {
        "code": "not_stored",
        "category": "system",
        "message": "the gateway did not store the card",
    }
    return ReconcileOutcome(
        "failed",
        order_id=attempt["order_id"],
        error=error,
        registration={"status": "failed", "card_seq": None, "error": error},
    )


async def retry_registration(
    db: Any, gateway: Any, item: dict[str, Any], clock: Callable[[], datetime]
) -> RegistrationOutcome:
    """TradedCard again for a ``pending`` registration (one item of store.claim_registrations).

    Stored: ``succeeded`` with the CardSeq; refused for good (input, declined, a parameter
    error): ``failed``; anything that may pass: ``retry``. The request is in the gateway-call log.
    """
    payment = item["payment"]
    order_id, member_id = item["order_id"], item["member_id"]
    if order_id is None or not member_id:
        return RegistrationOutcome("failed", error=_NO_CHARGE)
    out = await gateway.store_traded_card(order_id, member_id)
    await log_gateway_call(db, out, payment_id=payment["id"], order_id=order_id, clock=clock)
    if out.ok:
        return RegistrationOutcome("succeeded", card_seq=out.card_seq)
    error = error_of(out)
    return RegistrationOutcome("retry" if out.retry_later else "failed", error=error)
