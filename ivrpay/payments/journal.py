"""The gateway-call log: one row per gateway request, written one way for every caller."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from ivrpay import store
from ivrpay.gateway.results import Outcome

log = structlog.get_logger(__name__)


def gateway_call_fields(
    outcome: Outcome,
    *,
    payment_id: Any,
    order_id: str | None,
    clock: Callable[[], datetime],
    state: str | None = None,
) -> dict[str, Any]:
    """The log row of one gateway answer (:func:`ivrpay.store.record_gateway_call`'s fields):
    ``err_code`` holds the answer's ErrCode values and ``err_info`` its ErrInfo values,
    ``|``-joined as GMO-PG sends them (the deciding ErrInfo alone when the answer had none, e.g.
    a timeout). ``state`` overrides the outcome column (SearchTrade's reconcile state)."""
    codes = "|".join(code for code, _info in outcome.err_info) or None
    infos = "|".join(info for _code, info in outcome.err_info) or outcome.err_code
    return {
        "endpoint": outcome.endpoint,
        "started_at": outcome.sent_at or clock(),
        "duration_ms": int(outcome.elapsed_ms or 0),
        "payment_id": payment_id,
        "order_id": order_id or outcome.order_id,
        "err_code": codes,
        "err_info": infos,
        "outcome": state or outcome.kind,
    }


async def log_gateway_call(
    db: Any,
    outcome: Outcome,
    *,
    payment_id: Any,
    order_id: str | None,
    clock: Callable[[], datetime],
    state: str | None = None,
) -> None:
    """Record one gateway answer (:func:`gateway_call_fields`). Never raises: the record is for
    people, the payment must go on."""
    fields = gateway_call_fields(
        outcome, payment_id=payment_id, order_id=order_id, clock=clock, state=state
    )
    try:
        await store.record_gateway_call(db, **fields)
    except Exception as exc:
        log.warning(
            "gateway_call_not_recorded", payment_id=str(payment_id), error=type(exc).__name__
        )
