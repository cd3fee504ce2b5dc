"""The reconciler's gateway side: SearchTrade per unknown attempt, mapped to a store outcome.

Kept apart from the loop so the loop takes any callable (tests, another gateway). The gateway
object is used through one method, ``await gateway.reconcile(order_id, sent_at=..., now=...)``,
answering an object with ``state`` ("executed" | "not_executed" | "unknown") and ``trade``
(SearchTrade's outcome: approve, tran_id, tran_date, forward, card_last4, err_code, sent_at,
elapsed_ms); the "UNPROCESSED is trusted only after IVRPAY_RECONCILE_AFTER_S" rule lives in the
gateway client, judged at the reconciler's ``now`` (``item["now"]``), not the client's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from ivrpay import store
from ivrpay.gateway.errors import CARD_NOT_FOUND, MEMBER_NOT_FOUND
from ivrpay.workers.loops import Reconcile, ReconcileOutcome

log = structlog.get_logger(__name__)


def gateway_reconciler(gateway: Any, pool: asyncpg.Pool | None = None) -> Reconcile:
    """A ``reconcile(item)`` for :class:`~ivrpay.workers.Reconciler` over the gateway client.

    Every attempt of the payment still marked unknown (or never answered) is looked up: one found
    executed makes the payment ``succeeded``; all of them certainly not executed make it
    ``failed`` (category ``system``: nothing was charged); anything else is a retry. With
    ``pool``, each SearchTrade is recorded as a gateway call of the payment.
    """

    async def reconcile(item: dict[str, Any]) -> ReconcileOutcome:
        payment = item["payment"]
        open_attempts = [
            e
            for e in item["executions"]
            if e["sent_at"] is not None and e["outcome"] in (None, "unknown")
        ]
        if not open_attempts:
            return ReconcileOutcome("retry")  # nothing SearchTrade can settle: an admin will
        if payment["operation"] == "register":
            # Storing a card opens no trade: SearchCard tells whether SaveCard went through.
            return await _reconcile_registration(gateway, item, open_attempts[-1])
        not_executed = 0
        for attempt in open_attempts:
            rec = await gateway.reconcile(
                attempt["order_id"], sent_at=attempt["sent_at"], now=item.get("now")
            )
            await _record(pool, payment["id"], attempt["order_id"], rec)
            if rec.state == "executed":
                trade = rec.trade
                card = payment.get("card") or {}
                last4 = getattr(trade, "card_last4", None) or card.get("last4")
                return ReconcileOutcome(
                    "succeeded",
                    order_id=attempt["order_id"],
                    result={
                        "approve": trade.approve,
                        "tran_id": trade.tran_id,
                        "tran_date": trade.tran_date or getattr(trade, "process_date", None),
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
        return ReconcileOutcome("retry")

    return reconcile


async def _reconcile_registration(
    gateway: Any, item: dict[str, Any], attempt: dict[str, Any]
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
        return ReconcileOutcome("retry")
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
        return ReconcileOutcome("retry")  # the list could not be read: ask again later
    now = item.get("now") or datetime.now(UTC)
    if (now - attempt["sent_at"]).total_seconds() < gateway.reconcile_after_s:
        return ReconcileOutcome("retry")
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


async def _record(pool: asyncpg.Pool | None, payment_id: str, order_id: str, rec: Any) -> None:
    if pool is None:
        return
    trade = rec.trade
    try:
        await store.record_gateway_call(
            pool,
            endpoint="SearchTrade",
            started_at=getattr(trade, "sent_at", None) or datetime.now(UTC),
            duration_ms=int(getattr(trade, "elapsed_ms", 0) or 0),
            payment_id=payment_id,
            order_id=order_id,
            err_info=getattr(trade, "err_code", None),
            outcome=rec.state,
        )
    except (asyncpg.PostgresError, OSError, ValueError):
        # The record is for people; the reconciliation itself must go on.
        log.warning("gateway_call_not_recorded", payment_id=payment_id)
