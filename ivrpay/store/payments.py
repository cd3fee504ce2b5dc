"""The API's side of a payment: create, read, list, cancel, settlement, review."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ivrpay.store._core import (
    NOTIFY_CHANNEL,
    Db,
    Raw,
    _Args,
    audit,
    aware,
    change,
    change_or_explain,
    connection,
    dumps,
    explain,
    finish_execution,
    get_snapshot,
    lock_existing,
    parse_id,
    payment_pk,
    registration_sets,
    registration_value,
    result_fields,
    seconds,
    snapshots,
    transaction,
)
from ivrpay.store.errors import Conflict, InvalidCursor, NotFound
from ivrpay.store.states import CLAIMABLE_STATUSES, STATUSES, WEBHOOK_TYPES, device_of

# A code stays reserved this long after its payment expires (product.md).
CODE_REISSUE_AFTER = timedelta(hours=24)
_CODE_TRIES = 50

SETTLEMENT_RULES: dict[str, tuple[frozenset[str], str]] = {
    "capture": (frozenset({"authorized"}), "captured"),
    "void": (frozenset({"authorized", "captured"}), "voided"),
    "refund": (frozenset({"captured"}), "refunded"),
}


def _random_code() -> str:
    # No leading zero: "0" alone means "the operator" at an entry, keep codes clear of it.
    return str(100000 + secrets.randbelow(900000))


def settlement_for(job: str | None, operation: str) -> str | None:
    """The settlement a success starts with: an AUTH is authorized, a CAPTURE captured."""
    if operation == "register":
        return None
    return {"AUTH": "authorized", "CAPTURE": "captured"}.get(job or "")


# settlement_for in SQL, over the row being updated.
SETTLEMENT_SQL = Raw(
    "CASE WHEN operation = 'register' THEN NULL WHEN job = 'AUTH' THEN 'authorized'"
    " WHEN job = 'CAPTURE' THEN 'captured' END"
)


def succeeded_sets(
    row: Mapping[str, Any] | Raw, result: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The columns of a confirmed success: the gateway's result, its settlement, no error.
    ``row``: the payment's row, or :data:`SETTLEMENT_SQL` to let the update decide."""
    settlement = row if isinstance(row, Raw) else settlement_for(row["job"], row["operation"])
    return {**result_fields(result), "settlement": settlement, "error": None}


async def _reserve_code(
    conn: asyncpg.Connection, payment_id: uuid.UUID, now: datetime, until: datetime
) -> str:
    """A random code free of any unexpired reservation, reserved for ``payment_id``."""
    for _ in range(_CODE_TRIES):
        code = _random_code()
        got = await conn.fetchval(
            """INSERT INTO payment_codes (code, payment_id, reserved_until) VALUES ($1, $2, $3)
               ON CONFLICT (code) DO UPDATE
                   SET payment_id = EXCLUDED.payment_id, reserved_until = EXCLUDED.reserved_until
                   WHERE payment_codes.reserved_until <= $4
               RETURNING code""",
            code,
            payment_id,
            until,
            now,
        )
        if got is not None:
            return got
    raise Conflict("no_free_code", "no free payment code; try again")


async def create_payment(
    db: Db,
    *,
    client_id: Any,
    order_id: str,
    amount: int,
    tax: int = 0,
    job: str | None = "AUTH",
    method: int | None = 1,
    pay_times: int | None = None,
    operation: str = "charge",
    member_id: str | None = None,
    operator: Mapping[str, Any] | None = None,
    language: str = "ja",
    metadata: Mapping[str, Any] | None = None,
    expires_in: float = 1800,
    now: datetime,
) -> dict[str, Any]:
    """A new ``pending`` payment with a fresh code; Conflict("order_id_exists") on a reused one."""
    aware(now)
    cid = parse_id(client_id)
    if cid is None:
        raise NotFound("API client not found")
    if expires_in <= 0:
        raise ValueError("expires_in must be positive")
    pid = uuid.uuid4()
    expires_at = now + seconds(expires_in)
    operator_value = dict(operator) if operator else None
    callback = (operator_value or {}).get("callback")
    device = device_of(callback) if callback else None
    async with transaction(db) as conn:
        code = await _reserve_code(conn, pid, now, expires_at + CODE_REISSUE_AFTER)
        try:
            row = await conn.fetchrow(
                """INSERT INTO payments (id, client_id, order_id, amount, tax, job, method,
                       pay_times, operation, member_id, language, metadata, status, code,
                       expires_at, operator, operator_device, seq, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13,
                           $14, $15, $16, 1, $17, $17)
                   RETURNING *""",
                pid,
                cid,
                order_id,
                amount,
                tax,
                job,
                method,
                pay_times,
                operation,
                member_id,
                language,
                dict(metadata or {}),
                code,
                expires_at,
                operator_value,
                device,
                now,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("order_id_exists", f"order_id {order_id!r} is already used") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("API client not found") from None
        except asyncpg.CheckViolationError as exc:
            raise ValueError(f"invalid payment ({exc.constraint_name})") from None
        await conn.execute(
            """INSERT INTO payment_events (payment_id, seq, created_at, kind, status, step, data)
               VALUES ($1, 1, $2, 'created', 'pending', 'waiting', '{}')""",
            pid,
            now,
        )
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{pid}:1")
        return (await snapshots(conn, [row]))[0]


async def get_payment(db: Db, payment_id: Any) -> dict[str, Any] | None:
    async with connection(db) as conn:
        return await get_snapshot(conn, payment_id)


async def get_payment_by_order_id(db: Db, order_id: str) -> dict[str, Any] | None:
    async with connection(db) as conn:
        row = await conn.fetchrow("SELECT * FROM payments WHERE order_id = $1", order_id)
        return None if row is None else (await snapshots(conn, [row]))[0]


_CURSOR_FILTERS = ("order_id", "status", "updated_since")


def _encode_cursor(updated_at: datetime, pid: uuid.UUID, query: Mapping[str, Any]) -> str:
    """The position after (updated_at, id) *and* the query it pages: a client that follows
    ``next_cursor`` alone gets the next page of the same filtered list (holdback included)."""
    carried = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in query.items()}
    raw = json.dumps([updated_at.isoformat(), str(pid), carried]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID, dict[str, Any] | None]:
    """Position and carried query (``None`` for a cursor of the older, position-only form)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, pid, *rest = json.loads(raw)
        when = _instant(ts)
        if len(rest) > 1:
            raise ValueError
        query: dict[str, Any] | None = None
        if rest:
            carried = rest[0]
            if not isinstance(carried, dict) or set(carried) != set(_CURSOR_FILTERS):
                raise ValueError
            since = carried["updated_since"]
            if since is not None:
                since = _instant(since)
            if carried["status"] is not None and carried["status"] not in STATUSES:
                raise ValueError
            if carried["order_id"] is not None and not isinstance(carried["order_id"], str):
                raise ValueError
            query = {**carried, "updated_since": since}
        return when, uuid.UUID(pid), query
    except (
        ValueError,
        TypeError,
        AttributeError,
        OverflowError,
        binascii.Error,
        UnicodeDecodeError,
    ):
        raise InvalidCursor("is not a cursor this API gave out") from None


def _instant(text: Any) -> datetime:
    """An aware datetime that exists in UTC (the database's range); ValueError otherwise."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("not aware")
    when.astimezone(UTC)  # OverflowError outside years 1–9999 in UTC
    return when


async def list_payments(
    db: Db,
    *,
    now: datetime,
    order_id: str | None = None,
    status: str | None = None,
    updated_since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
    holdback_s: float = 5.0,
    client_id: Any = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Payments ascending by (updated_at, id), a page at a time.

    With ``updated_since``, rows updated in the last ``holdback_s`` before ``now`` are held back:
    a transaction that stamped an earlier time but commits late still shows up on the next poll.
    The cursor carries the filters of the query it pages (``updated_since`` included, so the
    holdback applies on every page): a filter given with a cursor must be the cursor's own, else
    :class:`InvalidCursor`.
    """
    aware(now)
    position: tuple[datetime, uuid.UUID] | None = None
    if cursor:
        after_ts, after_id, carried = _decode_cursor(cursor)
        position = (after_ts, after_id)
        if carried is not None:
            given = {"order_id": order_id, "status": status, "updated_since": updated_since}
            for name in _CURSOR_FILTERS:
                if given[name] is not None and given[name] != carried[name]:
                    raise InvalidCursor(
                        "was made for another query: repeat its filters or leave them out"
                    )
            order_id, status = carried["order_id"], carried["status"]
            updated_since = carried["updated_since"]
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    limit = max(1, min(int(limit), 1000))
    a = _Args()
    conds = ["TRUE"]
    if order_id is not None:
        conds.append(f"order_id = {a(order_id)}")
    if status is not None:
        conds.append(f"status = {a(status)}")
    if client_id is not None:
        cid = parse_id(client_id)
        if cid is None:
            return [], None
        conds.append(f"client_id = {a(cid)}")
    if updated_since is not None:
        aware(updated_since, "updated_since")
        conds.append(f"updated_at >= {a(updated_since)}")
        conds.append(f"updated_at < {a(now - seconds(holdback_s))}")
    if position is not None:
        conds.append(f"(updated_at, id) > ({a(position[0])}, {a(position[1])})")
    async with connection(db) as conn:
        rows = await conn.fetch(
            f"SELECT * FROM payments WHERE {' AND '.join(conds)} "
            f"ORDER BY updated_at, id LIMIT {a(limit + 1)}",
            *a.values,
        )
        page = rows[:limit]
        items = await snapshots(conn, page)
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        query = {"order_id": order_id, "status": status, "updated_since": updated_since}
        next_cursor = _encode_cursor(last["updated_at"], last["id"], query)
    return items, next_cursor


async def cancel_payment(
    db: Db, payment_id: Any, *, now: datetime, actor: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Cancel now (pending/failed/abandoned) or at the call's next step (in_call)."""
    aware(now)
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        row = await lock_existing(conn, pid)
        status = row["status"]
        if status in CLAIMABLE_STATUSES:
            snap = await change(conn, pid, now=now, kind="canceled", to_status="canceled")
            outcome = "canceled"
        elif status == "in_call":
            if row["cancel_requested"]:
                snap = await get_snapshot(conn, pid)
            else:
                snap = await change(
                    conn,
                    pid,
                    now=now,
                    kind="cancel_requested",
                    from_statuses=["in_call"],
                    sets={"cancel_requested": True},
                )
            outcome = "requested"
        else:
            raise Conflict("not_cancelable", f"a {status} payment cannot be canceled")
        assert snap is not None
        await audit(conn, actor=actor or "api", action=f"cancel_{outcome}", now=now, payment_id=pid)
        return outcome, snap


def settlement_action(snapshot: Mapping[str, Any], action: str) -> str:
    """Whether ``action`` may run on this payment: "ok", "already" (done before) or "conflict"."""
    if action not in SETTLEMENT_RULES:
        raise ValueError(f"unknown settlement action {action!r}")
    sources, target = SETTLEMENT_RULES[action]
    current = snapshot.get("settlement")
    if snapshot.get("status") != "succeeded" or current is None:
        return "conflict"
    if current == target:
        return "already"
    return "ok" if current in sources else "conflict"


async def get_gateway_handle(db: Db, payment_id: Any) -> dict[str, Any] | None:
    """What AlterTran needs for a succeeded payment: its successful execution's access pair."""
    pid = parse_id(payment_id)
    if pid is None:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(
            """SELECT e.order_id, e.access_id, e.access_pass, p.job, p.amount, p.tax, p.settlement
               FROM payments p JOIN executions e ON e.payment_id = p.id
               WHERE p.id = $1 AND e.outcome = 'succeeded' ORDER BY e.n DESC LIMIT 1""",
            pid,
        )
    return None if row is None else dict(row)


async def record_settlement(
    db: Db,
    payment_id: Any,
    *,
    action: str,
    now: datetime,
    actor: str | None = None,
    result: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a capture/void/refund done at the gateway (idempotent for the same action)."""
    aware(now)
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        await lock_existing(conn, pid)
        snap = await get_snapshot(conn, pid)
        assert snap is not None
        decision = settlement_action(snap, action)
        if decision == "already":
            return snap
        if decision == "conflict":
            raise Conflict(
                "settlement",
                f"cannot {action} a {snap['status']} payment (settlement {snap['settlement']})",
            )
        target = SETTLEMENT_RULES[action][1]
        data: dict[str, Any] = {"action": action}
        if result:
            fields = result_fields(result)
            data["result"] = json.loads(dumps({k[7:]: v for k, v in fields.items()}))
        new = await change(
            conn,
            pid,
            now=now,
            kind="settlement",
            from_statuses=["succeeded"],
            sets={"settlement": target},
            data=data,
            webhook_type=WEBHOOK_TYPES[target],
        )
        assert new is not None
        await audit(conn, actor=actor or "api", action=action, now=now, payment_id=pid, data=data)
        return new


async def record_registration(
    db: Db, payment_id: Any, *, registration: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The card storage result of a ``charge_and_register`` (``{status, card_seq, error}``);
    ``pending`` schedules a retry by the registration retrier."""
    aware(now)
    pid = payment_pk(payment_id)
    value = registration_value(registration)
    async with transaction(db) as conn:
        return await change_or_explain(
            conn,
            pid,
            now=now,
            kind="registration",
            sets=registration_sets(value, now),
            data=value,
        )


async def list_events(db: Db, payment_id: Any, *, after_seq: int = 0) -> list[dict[str, Any]]:
    """The payment's progress events after ``after_seq``, oldest first."""
    pid = parse_id(payment_id)
    if pid is None:
        return []
    async with connection(db) as conn:
        rows = await conn.fetch(
            """SELECT seq, created_at, kind, status, step, data FROM payment_events
               WHERE payment_id = $1 AND seq > $2 ORDER BY seq""",
            pid,
            after_seq,
        )
    return [dict(r) for r in rows]


async def resolve_review(
    db: Db,
    payment_id: Any,
    *,
    status: str,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> dict[str, Any]:
    """An admin's decision on a ``needs_review`` payment (``unknown`` → succeeded | failed)."""
    aware(now)
    if status not in ("succeeded", "failed"):
        raise ValueError("a review resolves to succeeded or failed")
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        row = await lock_existing(conn, pid)
        if not row["needs_review"]:
            raise Conflict("not_in_review", "the payment is not waiting for a review")
        sets: dict[str, Any] = {
            "needs_review": False,
            "review_reason": None,
            "reconcile_next_at": None,
        }
        if status == "succeeded":
            sets["settlement"] = settlement_for(row["job"], row["operation"])
            sets["error"] = None
            # The attempt whose outcome was unknown is the one that charged: capture, void and
            # refund go through its AccessID (get_gateway_handle).
            await finish_execution(conn, pid, row["current_order_id"], "succeeded", None, now)
        else:
            sets["error"] = {
                "code": "review_failed",
                "category": "unknown",
                "message": "an administrator resolved the payment as failed",
            }
        data = {"decision": status, "note": note}
        if row["status"] == status:
            snap = await change(conn, pid, now=now, kind="review", sets=sets, data=data)
        else:
            snap = await change(
                conn, pid, now=now, kind="review", to_status=status, sets=sets, data=data
            )
        if snap is None:
            await explain(conn, pid, to_status=status)
        assert snap is not None
        await audit(conn, actor=actor, action="review_resolved", now=now, payment_id=pid, data=data)
        return snap
