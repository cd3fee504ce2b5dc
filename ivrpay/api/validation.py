"""Request validation for the payment API, exactly per product.md "Payment resource".

Every check adds a :class:`FieldError`; a request with any is refused as a whole with ``422`` and
the full list, so a client fixes everything in one round. The create body is read with its model
(``models.NewPayment``), the same declaration the OpenAPI document publishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from multidict import MultiMapping

from ivrpay.api.models import (
    IDEMPOTENCY_KEY_RE,
    JOBS,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    METHODS,
    OPERATIONS,
    ORDER_ID_MESSAGE,
    ORDER_ID_RE,
    NewPayment,
)
from ivrpay.api.problems import FieldError, validation_failed
from ivrpay.api.schema import CARD_NUMBER_MESSAGE, Invalid, Text, parse
from ivrpay.card.scan import holds_card_number
from ivrpay.config import Settings
from ivrpay.store.states import STATUSES  # the state machine's own list, re-used as is

__all__ = ["JOBS", "METHODS", "OPERATIONS", "ListQuery", "NewPayment", "parse_new_payment"]

LIST_PARAMS = ("order_id", "status", "updated_since", "cursor", "limit")
_ORDER_ID = Text(ORDER_ID_RE, ORDER_ID_MESSAGE)

_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?)"
    r"(?:([Zz])|([+\- ])([0-9]{2}:[0-9]{2}))"
)


@dataclass(frozen=True)
class ListQuery:
    order_id: str | None = None
    status: str | None = None
    updated_since: datetime | None = None
    cursor: str | None = None
    limit: int = LIST_LIMIT_DEFAULT


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, field_name: str, message: str) -> None:
        self.items.append(FieldError(field_name, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise validation_failed(self.items)


def parse_new_payment(body: object, settings: Settings) -> NewPayment:
    """Validate a create body; raises the 422 :class:`Problem` listing every field error."""
    errors: list[FieldError] = []
    new = parse(NewPayment, body, settings, errors)
    if new is None:
        raise validation_failed(errors)
    return new


def parse_empty_body(body: Any) -> None:
    """Action routes (cancel, capture, void, refund) take no fields: nothing or ``{}``."""
    if body is None:
        return
    errs = _Errors()
    if not isinstance(body, dict):
        errs.add("body", "must be a JSON object")
    else:
        for name in body:
            errs.add(name, "unknown field")
    errs.raise_if_any()


def parse_rfc3339(text: str) -> datetime | None:
    """An RFC 3339 date-time with an offset, or ``None``.

    A ``+`` that an unencoded query string turned into a space is taken back as ``+``.
    """
    m = _RFC3339.fullmatch(text)
    if not m:
        return None
    date, time, zulu, sign, offset = m.groups()
    frac = ""
    if "." in time:
        time, frac = time.split(".")
        frac = "." + frac[:6].ljust(6, "0")
    suffix = "+00:00" if zulu else ("+" if sign == " " else sign) + offset
    try:
        value = datetime.fromisoformat(f"{date}T{time}{frac}{suffix}")
        # The instant must exist in UTC too (the database compares in UTC): 0001-01-01 at +01:00
        # is the year 0 there.
        value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return value


def parse_list_query(query: MultiMapping[str]) -> ListQuery:
    """Validate ``GET /payments`` parameters (a repeated parameter is an error)."""
    errs = _Errors()
    values: dict[str, str] = {}
    for name in dict.fromkeys(query):
        if name not in LIST_PARAMS:
            errs.add(name, "unknown query parameter")
            continue
        all_values = query.getall(name)
        if len(all_values) > 1:
            errs.add(name, "must be given at most once")
            continue
        values[name] = all_values[0]
    order_id = status = cursor = None
    updated_since = None
    limit = LIST_LIMIT_DEFAULT
    if "order_id" in values:
        try:
            order_id = _ORDER_ID.check(values["order_id"])
        except Invalid as exc:
            errs.add("order_id", exc.message)
    if "status" in values:
        status = values["status"]
        if status not in STATUSES:
            errs.add("status", f"must be one of {', '.join(STATUSES)}")
    if "updated_since" in values:
        updated_since = parse_rfc3339(values["updated_since"])
        if updated_since is None:
            errs.add("updated_since", "must be an RFC 3339 date-time with an offset")
    if "cursor" in values:
        cursor = values["cursor"]
        if not re.fullmatch(r"[\x21-\x7e]{1,512}", cursor):
            errs.add("cursor", "is not a cursor this API gave out")
    if "limit" in values:
        raw = values["limit"]
        if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= LIST_LIMIT_MAX:
            errs.add("limit", f"must be an integer between 1 and {LIST_LIMIT_MAX}")
        else:
            limit = int(raw)
    errs.raise_if_any()
    return ListQuery(order_id, status, updated_since, cursor, limit)


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(IDEMPOTENCY_KEY_RE, value):
        raise validation_failed(
            [FieldError("Idempotency-Key", "must be 1–255 visible ASCII characters")]
        )
    # Kept only as a hash, but refused all the same: a card number has no business in a header.
    if holds_card_number([value]):
        raise validation_failed([FieldError("Idempotency-Key", CARD_NUMBER_MESSAGE)])
    return value
