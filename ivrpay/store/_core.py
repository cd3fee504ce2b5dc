"""Internals shared by the store modules: transactions, snapshots and the one change primitive.

:func:`change` is the only code that updates a payment row. It is a single conditional UPDATE
(status sources from the state machine, the call's lease token, any extra condition), followed in
the same transaction by the progress event, the NOTIFY and, for webhook types, the outbox row.
"""

from __future__ import annotations

import json
import re
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ivrpay.store.errors import InvalidTransition, LeaseLost, NotFound
from ivrpay.store.states import WEBHOOK_TYPES, sources_of

Db = Any  # an asyncpg Pool, Connection or pool connection proxy
NOTIFY_CHANNEL = "ivrpay_payment"
# The columns of a claim, cleared when the call is over.
LEASE_CLEARED = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}
_JST = zoneinfo.ZoneInfo("Asia/Tokyo")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGIT_RUN = re.compile(r"(?<!\d)\d{12,19}(?!\d)")


@asynccontextmanager
async def transaction(db: Db) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction (a savepoint when ``db`` is already in one)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


@asynccontextmanager
async def connection(db: Db) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


def parse_id(value: Any) -> uuid.UUID | None:
    """A payment/client/user id from outside; anything malformed is ``None`` (not found)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def payment_pk(payment_id: Any) -> uuid.UUID:
    """A payment id from outside, or :class:`NotFound` (no payment has a malformed id)."""
    pid = parse_id(payment_id)
    if pid is None:
        raise NotFound("payment not found")
    return pid


def aware(now: datetime, name: str = "now") -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return now


def seconds(s: float) -> timedelta:
    return timedelta(seconds=float(s))


def mask(text: str | None, limit: int = 500) -> str | None:
    """Free text bound for a row: digit runs that could be a card number are replaced."""
    if text is None:
        return None
    return _DIGIT_RUN.sub("[card?]", str(text))[:limit]


def backoff_delay(schedule: Sequence[float], attempt: int) -> float:
    """Delay after the ``attempt``-th failure (1-based); the last entry repeats."""
    if not schedule:
        return 60.0
    return float(schedule[min(max(attempt, 1), len(schedule)) - 1])


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """JSON with RFC 3339 datetimes (webhook bodies)."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def tran_date(value: Any) -> datetime | None:
    """The gateway's TranDate: an aware datetime, or ``yyyyMMddHHmmss`` in JST."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return aware(value, "tran_date")
    text = str(value)
    if not re.fullmatch(r"\d{14}", text):
        raise ValueError("tran_date must be a datetime or yyyyMMddHHmmss")
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=_JST)


def card_fields(card: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{brand, last4}`` → columns; refuses anything that is more than a last four."""
    if not card:
        return {}
    brand = card.get("brand")
    last4 = card.get("last4")
    if last4 is not None and not re.fullmatch(r"\d{4}", str(last4)):
        raise ValueError("card.last4 must be exactly four digits")
    if brand is not None and (len(str(brand)) > 20 or re.search(r"\d{5,}", str(brand))):
        raise ValueError("card.brand is not a brand name")
    extra = set(card) - {"brand", "last4"}
    if extra:
        raise ValueError(f"card may hold brand and last4 only, not {sorted(extra)}")
    return {"card_brand": brand, "card_last4": None if last4 is None else str(last4)}


def result_fields(result: Mapping[str, Any] | None) -> dict[str, Any]:
    if not result:
        return {}
    extra = set(result) - {"approve", "tran_id", "tran_date", "forward", "card_seq"}
    if extra:
        raise ValueError(f"result has unknown fields {sorted(extra)}")

    def text(k: str) -> str | None:
        v = result.get(k)
        return None if v is None else str(v)

    return {
        "result_approve": text("approve"),
        "result_tran_id": text("tran_id"),
        "result_tran_date": tran_date(result.get("tran_date")),
        "result_forward": text("forward"),
        "result_card_seq": card_seq_value(result.get("card_seq")),
    }


def error_value(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{code, category, message}`` with the message masked."""
    if error is None:
        return None
    category = error.get("category")
    if category not in ("input", "declined", "system", "unknown"):
        raise ValueError("error.category must be input, declined, system or unknown")
    return {
        "code": mask(str(error.get("code") or ""), 100),
        "category": category,
        "message": mask(error.get("message")),
    }


def card_seq_value(value: Any) -> int | None:
    """The gateway's CardSeq as the number it is (``"0"`` from an answer becomes ``0``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("card_seq must be a non-negative integer")
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise ValueError("card_seq must be a non-negative integer")
    return int(text)


REGISTRATION_STATUSES = ("succeeded", "failed", "pending")


def registration_value(registration: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if registration is None:
        return None
    if registration.get("status") not in REGISTRATION_STATUSES:
        raise ValueError("registration.status must be succeeded, failed or pending")
    error = registration.get("error")
    if error is not None:
        error = error_value(error)
    return {
        "status": registration["status"],
        "card_seq": card_seq_value(registration.get("card_seq")),
        "error": error,
    }


def registration_sets(value: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """Columns for a new registration value: a ``pending`` one is due for a retry at once (the
    registration retrier, :func:`ivrpay.store.claim_registrations`); any other is not."""
    sets: dict[str, Any] = {"registration": value}
    if value is not None and value["status"] == "pending":
        sets.update(registration_next_at=now, registration_since=now, registration_attempts=0)
    else:
        sets["registration_next_at"] = None
    return sets


# -- snapshots --------------------------------------------------------------------------------


def snapshot(row: Mapping[str, Any], executions: list[dict[str, Any]]) -> dict[str, Any]:
    """A payment row as the API's payment JSON (datetimes stay datetimes)."""
    result = None
    if any(row[k] is not None for k in ("result_approve", "result_tran_id", "result_card_seq")):
        result = {
            "approve": row["result_approve"],
            "tran_id": row["result_tran_id"],
            "tran_date": row["result_tran_date"],
            "forward": row["result_forward"],
            "card_seq": row["result_card_seq"],
        }
    card = None
    if row["card_brand"] is not None or row["card_last4"] is not None:
        card = {"brand": row["card_brand"], "last4": row["card_last4"]}
    call = None
    if row["call_started_at"] is not None:
        call = {
            "uniqueid": row["call_uniqueid"],
            "channel": row["call_channel"],
            "started_at": row["call_started_at"],
            "ended_at": row["call_ended_at"],
        }
    return {
        "id": str(row["id"]),
        "order_id": row["order_id"],
        "amount": row["amount"],
        "tax": row["tax"],
        "job": row["job"],
        "method": row["method"],
        "pay_times": row["pay_times"],
        "operation": row["operation"],
        "member_id": row["member_id"],
        "language": row["language"],
        "metadata": row["metadata"],
        "status": row["status"],
        "code": row["code"],
        "transfer_to": "8" + row["code"],
        "expires_at": row["expires_at"],
        "operator": row["operator"],
        "progress": {"step": row["progress_step"], "attempts": row["progress_attempts"]},
        "executions": executions,
        "card": card,
        "result": result,
        "registration": row["registration"],
        "error": row["error"],
        "call": call,
        "settlement": row["settlement"],
        "cancel_requested": row["cancel_requested"],
        "taken_back": row["taken_back"],
        "listen_in": _listen_in(row),
        "needs_review": row["needs_review"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _listen_in(row: Mapping[str, Any]) -> dict[str, Any] | None:
    value = row["listen_in"]
    if value is None:
        return None
    # It lasts as long as the IVR call it started.
    return {**value, "ended_at": row["call_ended_at"]}


async def snapshots(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    if not rows:
        return []
    ex = await conn.fetch(
        """SELECT payment_id, order_id, started_at, outcome, error FROM executions
           WHERE payment_id = ANY($1::uuid[]) ORDER BY payment_id, n""",
        [r["id"] for r in rows],
    )
    by_payment: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for e in ex:
        by_payment.setdefault(e["payment_id"], []).append(
            {
                "order_id": e["order_id"],
                "started_at": e["started_at"],
                "outcome": e["outcome"],
                "error": e["error"],
            }
        )
    return [snapshot(r, by_payment.get(r["id"], [])) for r in rows]


async def get_snapshot(conn: asyncpg.Connection, payment_id: Any) -> dict[str, Any] | None:
    pid = parse_id(payment_id)
    if pid is None:
        return None
    row = await conn.fetchrow(
        f"SELECT p.*, ex.* FROM payments p{with_executions()} WHERE p.id = $1", pid
    )
    return None if row is None else row_snapshot(row)


# -- the change primitive ---------------------------------------------------------------------


class Raw(str):
    """A SQL expression for a SET clause (instead of a bound value)."""


# A SQL fragment that needs bound values: called with the argument binder, returns the SQL.
Fragment = Callable[["_Args"], str]


class _Args:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


# The snapshot's executions in the same statement as the payment row (alias ``p``): one round
# trip, not two. As text arrays, the one array type asyncpg decodes without a type introspection
# per connection (started_at as microseconds since the epoch: exact, whatever the TimeZone).
EXECUTION_ROWS = (
    "SELECT n, order_id, started_at, outcome, error FROM executions WHERE payment_id = p.id"
)


def with_executions(rows: str = EXECUTION_ROWS) -> str:
    """``CROSS JOIN LATERAL`` of the snapshot's executions of ``p`` (``rows``: their source)."""
    values = {
        "order_id": "x.order_id",
        "started_at": "(extract(epoch FROM x.started_at) * 1000000)::bigint::text",
        "outcome": "x.outcome",
        "error": "x.error::text",
    }
    cols = ", ".join(f"array_agg({v} ORDER BY x.n) AS _ex_{c}" for c, v in values.items())
    return f" CROSS JOIN LATERAL (SELECT {cols} FROM ({rows}) x) ex"


def row_executions(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The executions of a row read :func:`with_executions`, as the snapshot lists them."""
    if row["_ex_order_id"] is None:  # array_agg of no rows
        return []
    return [
        {
            "order_id": order_id,
            "started_at": _EPOCH + timedelta(microseconds=int(started_at)),
            "outcome": outcome,
            "error": None if error is None else json.loads(error),
        }
        for order_id, started_at, outcome, error in zip(
            row["_ex_order_id"],
            row["_ex_started_at"],
            row["_ex_outcome"],
            row["_ex_error"],
            strict=True,
        )
    ]


def row_snapshot(row: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot of a row read :func:`with_executions`."""
    return snapshot(row, row_executions(row))


# (kind, data, step): a payment event; data may be SQL (:class:`Raw`) over the updated row ``p``;
# step None is the row's progress step after the change.
Event = tuple[str, "Mapping[str, Any] | Raw | None", str | None]


async def change(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    *,
    now: datetime,
    kind: str,
    to_status: str | None = None,
    from_statuses: Sequence[str] | None = None,
    sets: Mapping[str, Any] | None = None,
    token: uuid.UUID | None = None,
    where: Fragment | str | None = None,
    data: Mapping[str, Any] | None = None,
    webhook_type: str | None = None,
    also: Sequence[Fragment] = (),
    executions: Fragment | None = None,
    events: Sequence[Event] | None = None,
) -> dict[str, Any] | None:
    """Update one payment if it matches; with it its event(s) and NOTIFY, in one statement (and
    the webhook outbox row in the same transaction). ``None``: no match, nothing written.

    ``sets`` values are bound, or SQL (:class:`Raw`, or a :data:`Fragment` for SQL with bound
    values); ``where`` is an extra condition. A status change is allowed only from
    :func:`sources_of` ``to_status``. ``also``: more data-modifying statements run with the update
    (SQL that reads the updated row as ``p``; it runs whether or not the payment matched, so it
    must select from ``p`` when it depends on the change). ``executions``: the rows of
    the snapshot's executions (as :data:`EXECUTION_ROWS`) when ``also`` changes them (a
    statement does not see its own writes).
    ``events``: several events for one change (the sequence moves by one per event).

    Outside a transaction ``conn`` commits the change on its own; a change that may owe a webhook
    opens one, so that its outbox row commits with it.
    """
    if webhook_type is None and to_status is not None:
        webhook_type = WEBHOOK_TYPES.get(to_status)
    if webhook_type is not None and not conn.is_in_transaction():
        async with conn.transaction():
            return await _change(
                conn, payment_id, now, kind, to_status, from_statuses, sets, token, where,
                data, webhook_type, also, executions, events,
            )  # fmt: skip
    return await _change(
        conn, payment_id, now, kind, to_status, from_statuses, sets, token, where, data,
        webhook_type, also, executions, events,
    )  # fmt: skip


async def _change(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    now: datetime,
    kind: str,
    to_status: str | None,
    from_statuses: Sequence[str] | None,
    sets: Mapping[str, Any] | None,
    token: uuid.UUID | None,
    where: Fragment | str | None,
    data: Mapping[str, Any] | None,
    webhook_type: str | None,
    also: Sequence[Fragment],
    executions: Fragment | None,
    events: Sequence[Event] | None,
) -> dict[str, Any] | None:
    a = _Args()
    assignments = []
    for col, value in (sets or {}).items():
        if isinstance(value, Raw):
            assignments.append(f"{col} = {value}")
        elif callable(value):
            assignments.append(f"{col} = {value(a)}")
        else:
            assignments.append(f"{col} = {a(value)}")
    if to_status is not None:
        assignments.append(f"status = {a(to_status)}")
    # Strictly increasing per row, so a list cursor that passed the old value sees the change.
    assignments.append(
        f"updated_at = GREATEST({a(now)}::timestamptz, updated_at + interval '1 microsecond')"
    )
    evs: Sequence[Event] = events or [(kind, data, None)]
    assignments.append(f"seq = seq + {len(evs)}")
    conditions = [f"id = {a(payment_id)}"]
    if to_status is not None:
        sources = set(sources_of(to_status))
        if from_statuses is not None:
            sources &= set(from_statuses)
        conditions.append(f"status = ANY({a(sorted(sources))}::text[])")
    elif from_statuses is not None:
        conditions.append(f"status = ANY({a(list(from_statuses))}::text[])")
    if token is not None:
        conditions.append(f"lease_token = {a(token)} AND call_ended_at IS NULL")
    if where:
        conditions.append(f"({where(a) if callable(where) else where})")
    ctes = [
        f"p AS (UPDATE payments SET {', '.join(assignments)} "
        f"WHERE {' AND '.join(conditions)} RETURNING *)"
    ]
    ctes += [f"a{i} AS ({frag(a)})" for i, frag in enumerate(also)]
    rows = " UNION ALL ".join(
        f"SELECT p.id, p.seq - {len(evs) - 1 - i}, {a(now)}::timestamptz, {a(k)}::text, p.status,"
        f" coalesce({a(step)}::text, p.progress_step),"
        f" {d if isinstance(d, Raw) else a(dict(d or {}))}::jsonb FROM p"
        for i, (k, d, step) in enumerate(evs)
    )
    ctes.append(
        "ev AS (INSERT INTO payment_events (payment_id, seq, created_at, kind, status, step, data) "
        f"{rows})"
    )
    webhook = (
        ", EXISTS (SELECT 1 FROM api_clients c WHERE c.id = p.client_id"
        " AND c.webhook_url IS NOT NULL AND c.enabled) AS _webhook"
        if webhook_type is not None
        else ""
    )
    row = await conn.fetchrow(
        f"WITH {', '.join(ctes)} SELECT p.*, ex.*, "
        f"pg_notify({a(NOTIFY_CHANNEL)}, p.id::text || ':' || p.seq::text) AS _notified{webhook} "
        f"FROM p{with_executions(executions(a)) if executions else with_executions()}",
        *a.values,
    )
    if row is None:
        return None
    snap = row_snapshot(row)
    if webhook_type is not None and row["_webhook"]:
        await enqueue_webhook(conn, row["client_id"], snap, webhook_type, row["seq"], now)
    return snap


async def enqueue_webhook(
    conn: asyncpg.Connection,
    client_id: uuid.UUID,
    snap: dict[str, Any],
    type_: str,
    seq: int,
    now: datetime,
) -> None:
    """The outbox row for a client that has a webhook URL (nothing otherwise)."""
    event_id = uuid.uuid4()
    body = dumps(
        {"id": str(event_id), "type": type_, "sequence": seq, "created_at": now, "payment": snap}
    )
    await conn.execute(
        """INSERT INTO webhook_deliveries
               (id, client_id, payment_id, type, sequence, body, next_attempt_at, created_at)
           SELECT $1, c.id, $3, $4, $5, $6, $7, $7 FROM api_clients c
           WHERE c.id = $2 AND c.webhook_url IS NOT NULL AND c.enabled""",
        event_id,
        client_id,
        uuid.UUID(snap["id"]),
        type_,
        seq,
        body,
        now,
    )


async def finish_execution(
    conn: asyncpg.Connection,
    pid: uuid.UUID,
    order_id: str | None,
    outcome: str,
    error: dict[str, Any] | None,
    now: datetime,
) -> None:
    if order_id is None:
        return
    await conn.execute(
        """UPDATE executions SET outcome = $3, error = $4, finished_at = $5
           WHERE payment_id = $1 AND order_id = $2""",
        pid,
        order_id,
        outcome,
        error,
        now,
    )


async def close_unsent_executions(
    conn: asyncpg.Connection,
    pid: uuid.UUID,
    outcome: str,
    error: dict[str, Any] | None,
    now: datetime,
) -> None:
    """The call is over in ``in_call``: an attempt whose ExecTran was never sent (EntryTran
    failed, the caller hung up, a cancel) gets the call's outcome, so no attempt stays open."""
    await conn.execute(
        """UPDATE executions SET outcome = $2, error = $3, finished_at = $4
           WHERE payment_id = $1 AND outcome IS NULL AND sent_at IS NULL""",
        pid,
        outcome,
        error,
        now,
    )


async def change_or_explain(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    *,
    to_status: str | None = None,
    token: uuid.UUID | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """:func:`change`, raising the reason (:func:`explain`) when it matched nothing."""
    snap = await change(conn, payment_id, to_status=to_status, token=token, **fields)
    if snap is None:
        await explain(conn, payment_id, to_status=to_status, token=token)
    assert snap is not None
    return snap


async def explain(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    *,
    to_status: str | None = None,
    token: uuid.UUID | None = None,
) -> None:
    """Raise the reason :func:`change` matched nothing (always raises)."""
    row = await conn.fetchrow(
        "SELECT status, lease_token, call_ended_at FROM payments WHERE id = $1", payment_id
    )
    if row is None:
        raise NotFound(f"payment {payment_id} not found")
    if token is not None and (row["lease_token"] != token or row["call_ended_at"] is not None):
        raise LeaseLost(f"payment {payment_id} is no longer held by this call")
    raise InvalidTransition(row["status"], to_status or row["status"])


async def lock_payment(conn: asyncpg.Connection, payment_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM payments WHERE id = $1 FOR UPDATE", payment_id)


async def lock_existing(conn: asyncpg.Connection, payment_id: uuid.UUID) -> asyncpg.Record:
    """The payment row, locked, or :class:`NotFound`."""
    row = await lock_payment(conn, payment_id)
    if row is None:
        raise NotFound(f"payment {payment_id} not found")
    return row


async def audit(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    now: datetime,
    payment_id: uuid.UUID | None = None,
    target: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO audit (created_at, actor, action, payment_id, target, data)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        now,
        actor,
        action,
        payment_id,
        target,
        dict(data or {}),
    )
