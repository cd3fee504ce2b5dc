"""The registration retrier's gateway side: TradedCard again for a ``pending`` registration.

A ``charge_and_register`` payment is decided by its charge; when the card could not be stored
for a reason that may pass (gateway unreachable, busy, answer lost), its registration stays
``pending`` and this stores the card charged on the succeeded attempt's OrderID, through
``await gateway.store_traded_card(order_id, member_id)`` (SaveMember when missing, TradedCard, a
lost answer settled by SearchCard), answering an ``Outcome`` (``ok``, ``card_seq``, ``kind``,
``retry_later``, ``err_code``, ``message``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from ivrpay import store
from ivrpay.workers.loops import RegistrationOutcome, RetryRegistration

log = structlog.get_logger(__name__)

_NO_CHARGE = {
    "code": "no_charged_attempt",
    "category": "system",
    "message": "no succeeded attempt to store the card from",
}


def gateway_registrar(gateway: Any, pool: asyncpg.Pool | None = None) -> RetryRegistration:
    """A ``register(item)`` for :class:`~ivrpay.workers.RegistrationRetrier` over the gateway
    client. Stored: ``succeeded`` with the CardSeq; refused for good (input, declined, a
    parameter error): ``failed``; anything that may pass: ``retry``. With ``pool``, the request
    is recorded as a gateway call of the payment."""

    async def register(item: dict[str, Any]) -> RegistrationOutcome:
        payment = item["payment"]
        order_id, member_id = item["order_id"], item["member_id"]
        if order_id is None or not member_id:
            return RegistrationOutcome("failed", error=_NO_CHARGE)
        out = await gateway.store_traded_card(order_id, member_id)
        await _record(pool, payment["id"], order_id, out)
        if out.ok:
            return RegistrationOutcome("succeeded", card_seq=out.card_seq)
        category = out.kind if out.kind in ("input", "declined", "unknown") else "system"
        error = {"code": out.err_code or out.kind, "category": category, "message": out.message}
        if out.retry_later:
            return RegistrationOutcome("retry", error=error)
        return RegistrationOutcome("failed", error=error)

    return register


async def _record(pool: asyncpg.Pool | None, payment_id: str, order_id: str, out: Any) -> None:
    if pool is None:
        return
    try:
        await store.record_gateway_call(
            pool,
            endpoint=out.endpoint,
            started_at=out.sent_at or datetime.now(UTC),
            duration_ms=int(out.elapsed_ms or 0),
            payment_id=payment_id,
            order_id=order_id,
            err_info=out.err_code,
            outcome=out.kind,
        )
    except (asyncpg.PostgresError, OSError, ValueError):
        # The record is for people; the registration itself must go on.
        log.warning("gateway_call_not_recorded", payment_id=payment_id)
