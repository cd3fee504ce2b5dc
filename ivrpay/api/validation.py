"""Request validation for the payment API, exactly per product.md "Payment resource".

Every check adds a :class:`FieldError`; a request with any is refused as a whole with ``422`` and
the full list, so a client fixes everything in one round. The limits here are also the numbers the
OpenAPI document publishes (``openapi.py`` reads them from this module).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multidict import MultiMapping

from ivrpay.api.problems import FieldError, validation_failed
from ivrpay.card.scan import holds_card_number, json_holds_card_number
from ivrpay.config import Settings
from ivrpay.store.states import STATUSES  # the state machine's own list, re-used as is

ORDER_ID_RE = r"^[A-Za-z0-9-]{1,24}$"
MEMBER_ID_RE = r"^[A-Za-z0-9_.@-]{1,60}$"
# Printable, no control characters: operator ids end up on the screen and in logs.
OPERATOR_ID_RE = r"^[^\x00-\x1f\x7f]{1,64}$"
IDEMPOTENCY_KEY_RE = r"^[\x21-\x7e]{1,255}$"

JOBS = ("AUTH", "CAPTURE", "CHECK")
METHODS = (1, 2, 5)
OPERATIONS = ("charge", "register", "charge_and_register")
AMOUNT_MAX = 9_999_999
PAY_TIMES_MIN, PAY_TIMES_MAX = 2, 99
EXPIRES_IN_MIN, EXPIRES_IN_MAX, EXPIRES_IN_DEFAULT = 60, 86_400, 1800
METADATA_MAX_BYTES = 4096
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 200

CREATE_FIELDS = (
    "order_id",
    "amount",
    "tax",
    "job",
    "method",
    "pay_times",
    "operation",
    "member_id",
    "operator",
    "language",
    "expires_in",
    "metadata",
)
LIST_PARAMS = ("order_id", "status", "updated_since", "cursor", "limit")

CARD_NUMBER_MESSAGE = "must not contain a card number (card data never passes through the API)"
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?)"
    r"(?:([Zz])|([+\- ])([0-9]{2}:[0-9]{2}))"
)


@dataclass(frozen=True)
class NewPayment:
    """A validated ``POST /payments`` body, with defaults applied."""

    order_id: str
    operation: str
    amount: int | None
    tax: int | None
    job: str | None
    method: int | None
    pay_times: int | None
    member_id: str | None
    operator: dict[str, str] | None
    language: str
    expires_in: int
    metadata: dict[str, Any] = field(default_factory=dict)


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


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, a subclass of int: they are not numbers here.
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(errs: _Errors, name: str, value: Any, lo: int, hi: int) -> int | None:
    if not _is_int(value):
        errs.add(name, "must be an integer")
        return None
    if not lo <= value <= hi:
        errs.add(name, f"must be between {lo} and {hi}")
        return None
    return int(value)


def _string(errs: _Errors, name: str, value: Any, pattern: str, what: str) -> str | None:
    if not isinstance(value, str):
        errs.add(name, "must be a string")
        return None
    if not re.fullmatch(pattern, value):
        errs.add(name, what)
        return None
    if (why := _json_text_ok(value)) is not None:
        errs.add(name, why)
        return None
    return value


def _json_text_ok(value: Any) -> str | None:
    """Why a JSON value may not be stored: PostgreSQL jsonb refuses NUL and lone surrogates, and
    nothing may hold a card number, in any form (``ivrpay.card.scan`` says which)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if "\x00" in v:
                return "must not contain NUL characters"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "must be valid Unicode text"
    if json_holds_card_number(value):
        return CARD_NUMBER_MESSAGE
    return None


def metadata_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def parse_new_payment(body: Any, settings: Settings) -> NewPayment:
    """Validate a create body; raises the 422 :class:`Problem` listing every field error."""
    errs = _Errors()
    if not isinstance(body, dict):
        errs.add("body", "must be a JSON object")
        errs.raise_if_any()
    # Explicit null counts as "not given" for optional fields, as generated clients send it.
    given = {k: v for k, v in body.items() if v is not None}
    for name in body:
        if name not in CREATE_FIELDS:
            errs.add(name, "unknown field")

    operation = given.get("operation", "charge")
    if operation not in OPERATIONS:
        errs.add("operation", f"must be one of {', '.join(OPERATIONS)}")
        operation = None
    charges = operation in ("charge", "charge_and_register")
    registers = operation in ("register", "charge_and_register")

    order_id = None
    if "order_id" not in given:
        errs.add("order_id", "is required")
    else:
        order_id = _string(
            errs, "order_id", given["order_id"], ORDER_ID_RE, "must be 1–24 of A-Z a-z 0-9 -"
        )

    amount = tax = method = pay_times = None
    job: str | None = None
    if charges or operation is None:
        if "amount" not in given:
            errs.add("amount", "is required")
        else:
            amount = _int_in(errs, "amount", given["amount"], 1, AMOUNT_MAX)
        tax = 0
        if "tax" in given:
            tax = _int_in(errs, "tax", given["tax"], 0, AMOUNT_MAX - 1)
        if amount is not None and tax is not None and amount + tax > AMOUNT_MAX:
            errs.add("tax", f"amount + tax must not exceed {AMOUNT_MAX}")
        job = given.get("job", "AUTH")
        if job not in JOBS:
            errs.add("job", f"must be one of {', '.join(JOBS)}")
            job = None
        method = 1
        if "method" in given:
            m = given["method"]
            if not _is_int(m) or m not in METHODS:
                errs.add("method", "must be 1 (lump sum), 2 (instalments) or 5 (revolving)")
                method = None
            else:
                method = int(m)
        if "pay_times" in given:
            if method == 2:
                pay_times = _int_in(errs, "pay_times", given["pay_times"], PAY_TIMES_MIN, 99)
            elif method is not None:
                errs.add("pay_times", "is allowed only with method 2 (instalments)")
        elif method == 2:
            errs.add("pay_times", "is required with method 2 (instalments)")
    else:
        # register stores a card: it charges nothing, so amount and tax are ignored.
        for name in ("amount", "tax"):
            if name in given and not _is_int(given[name]):
                errs.add(name, "must be an integer")
        for name in ("job", "method", "pay_times"):
            if name in given:
                errs.add(name, "does not apply to operation register")

    member_id = None
    if "member_id" in given:
        if operation is not None and not registers:
            errs.add("member_id", "applies only to register and charge_and_register")
        else:
            member_id = _string(
                errs,
                "member_id",
                given["member_id"],
                MEMBER_ID_RE,
                "must be 1–60 of A-Z a-z 0-9 _ . @ -",
            )
    elif registers:
        errs.add("member_id", f"is required for operation {operation}")

    operator = None
    if "operator" in given:
        operator = _operator(errs, given["operator"], settings)

    language = given.get("language", settings.default_language)
    if language not in settings.languages:
        errs.add("language", f"must be one of {', '.join(settings.languages)}")

    expires_in: int | None = EXPIRES_IN_DEFAULT
    if "expires_in" in given:
        expires_in = _int_in(
            errs, "expires_in", given["expires_in"], EXPIRES_IN_MIN, EXPIRES_IN_MAX
        )

    metadata: dict[str, Any] = {}
    if "metadata" in given:
        md = given["metadata"]
        if not isinstance(md, dict):
            errs.add("metadata", "must be a JSON object")
        elif (why := _json_text_ok(md)) is not None:
            errs.add("metadata", why)
        elif metadata_size(md) > METADATA_MAX_BYTES:
            errs.add("metadata", f"must be at most {METADATA_MAX_BYTES} bytes as compact JSON")
        else:
            metadata = md

    errs.raise_if_any()
    assert order_id is not None and operation is not None and expires_in is not None
    return NewPayment(
        order_id=order_id,
        operation=operation,
        amount=amount if charges else None,
        tax=tax if charges else None,
        job=job if charges else None,
        method=method if charges else None,
        pay_times=pay_times,
        member_id=member_id,
        operator=operator,
        language=language,
        expires_in=expires_in,
        metadata=metadata,
    )


def _operator(errs: _Errors, value: Any, settings: Settings) -> dict[str, str] | None:
    if not isinstance(value, dict):
        errs.add("operator", "must be an object with id and callback")
        return None
    for name in value:
        if name not in ("id", "callback"):
            errs.add(f"operator.{name}", "unknown field")
    out: dict[str, str] = {}
    if value.get("id") is None:
        errs.add("operator.id", "is required")
    else:
        op_id = _string(
            errs,
            "operator.id",
            value["id"],
            OPERATOR_ID_RE,
            "must be 1–64 characters without control characters",
        )
        if op_id is not None:
            out["id"] = op_id
    callback = value.get("callback")
    if callback is None:
        errs.add("operator.callback", "is required")
    elif not isinstance(callback, str):
        errs.add("operator.callback", "must be a string")
    elif (why := _json_text_ok(callback)) is not None:
        errs.add("operator.callback", why)
    elif not re.fullmatch(settings.callback_pattern, callback):
        errs.add("operator.callback", "is not an allowed dial string (IVRPAY_CALLBACK_PATTERN)")
    else:
        out["callback"] = callback
    return out if len(out) == 2 else None


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
        order_id = _string(
            errs, "order_id", values["order_id"], ORDER_ID_RE, "must be 1–24 of A-Z a-z 0-9 -"
        )
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
