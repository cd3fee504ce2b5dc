"""JSON rendering for the API: RFC 3339 times, and only the documented fields of a payment.

The store's snapshot may carry more than the contract (internal columns); the API answers with
the typed :class:`~ivrpay.api.models.Payment` built from it here, once, so exactly the fields its
OpenAPI document lists go out (answers and SSE alike) and nothing internal leaks by accident.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from ivrpay.api.models import Payment
from ivrpay.api.openapi import WEBHOOK_DELIVERY_FIELDS
from ivrpay.api.schema import build, plain


def rfc3339(value: datetime) -> str:
    """An aware datetime as RFC 3339 in UTC; a naive one is taken as UTC (PostgreSQL timestamptz
    always arrives aware, so this only guards against a programming slip)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot render a {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def to_plain(value: Any) -> Any:
    """The JSON value exactly as a client will parse it (for idempotent replays and SSE)."""
    return json.loads(dumps(value))


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=dumps(value), status=status, content_type="application/json", headers=headers
    )


def payment_view(snapshot: Mapping[str, Any]) -> Payment:
    """The store's payment snapshot as the API's typed payment."""
    return build(Payment, snapshot)


def payment_json(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The API's payment object: the documented fields, in the documented order."""
    return plain(payment_view(snapshot))


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in WEBHOOK_DELIVERY_FIELDS}
