"""Capture, void and refund through the gateway client (AlterTran), as API answers.

The gateway client knows nothing of payments; this module turns the store's gateway handle into the
client's call and the client's outcome into either the result to record or a problem for the client.
"""

from __future__ import annotations

from typing import Any

import structlog

from ivrpay.api.problems import Problem
from ivrpay.gateway.client import GatewayClient
from ivrpay.gateway.results import Outcome

log = structlog.get_logger(__name__)

SETTLEMENT_ACTIONS = {"capture": "captured", "void": "voided", "refund": "refunded"}


async def alter(gateway: GatewayClient, action: str, handle: dict[str, Any]) -> dict[str, Any]:
    """Capture (SALES), void or refund the payment's executed order through the gateway client,
    whose ``capture``/``void``/``refund`` look the order up first (SearchTrade) and so are
    idempotent; returns the answer's data, or raises a :class:`Problem`."""
    order_id = handle["order_id"]
    if action == "capture":
        outcome: Outcome = await gateway.capture(order_id, int(handle["amount"]))
    elif action == "void":
        outcome = await gateway.void(order_id)
    else:
        outcome = await gateway.refund(order_id)
    kind = outcome.kind
    log.info(
        "api.settlement_sent",
        action=action,
        order_id=order_id,
        outcome=kind,
        err_code=outcome.err_code,
    )
    if kind == "ok":
        return {
            "approve": outcome.approve,
            "tran_id": outcome.tran_id,
            "tran_date": outcome.tran_date,
            "forward": outcome.forward,
        }
    # (ErrCode, ErrInfo) pairs: the ErrInfo detail is what a merchant looks up.
    codes = [info for _code, info in outcome.err_info]
    if kind == "unknown":
        raise Problem(
            504,
            "gateway-outcome-unknown",
            "The gateway's answer was lost; nothing was recorded. Retrying is safe.",
            gateway_errors=codes,
        )
    if kind == "busy":
        raise Problem(
            503, "gateway-busy", "The gateway is busy; retry later.", gateway_errors=codes
        )
    raise Problem(
        502,
        "gateway-refused",
        f"The gateway refused to {action} the payment; nothing was changed.",
        gateway_errors=codes,
    )
