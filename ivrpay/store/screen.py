"""What the operator/admin screen needs of the database: sessions, sign-in lockout, per-user
preferences, and the screen's own lists (today's payments, the audit log, payments to review).

A session is a random token the browser keeps (signed, in a cookie); only its SHA-256 is stored.
Lockout counts failed sign-ins per key (``user:<name>``, ``addr:<ip>``) in a sliding window.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from typing import Any

from ivrpay.store._core import Db, aware, connection, parse_id, seconds, snapshots
from ivrpay.store.errors import NotFound

_LANGUAGE_COLUMNS = "u.id, u.name, u.role, u.enabled, u.language, u.callback"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _prefix(text: str) -> str:
    """A LIKE pattern matching ``text`` as a prefix (its own % and _ taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def _page(
    conn: Any, table: str, where: str, args: list[Any], limit: int, offset: int
) -> tuple[int, list[Any]]:
    """How many rows match, and one page of them, newest first."""
    total = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *args)
    rows = await conn.fetch(
        f"""SELECT * FROM {table} WHERE {where} ORDER BY created_at DESC, id DESC
            LIMIT {max(1, min(int(limit), 10000))} OFFSET {max(0, int(offset))}""",
        *args,
    )
    return int(total), rows


def _user(row: Any) -> dict[str, Any]:
    return {**dict(row), "id": str(row["id"])}


# -- sessions ---------------------------------------------------------------------------------


async def create_session(db: Db, user_id: Any, *, now: datetime, max_s: float) -> tuple[str, str]:
    """A new session for the user: ``(token, csrf_token)``; it ends ``max_s`` after ``now``."""
    aware(now)
    uid = parse_id(user_id)
    if uid is None:
        raise NotFound("user not found")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    async with connection(db) as conn:
        await conn.execute(
            """INSERT INTO screen_sessions (id_hash, user_id, csrf, created_at, last_seen_at,
                   expires_at) VALUES ($1, $2, $3, $4, $4, $5)""",
            _hash(token),
            uid,
            csrf,
            now,
            now + seconds(max_s),
        )
        # Ended sessions are of no use to anyone: sweep them as new ones are made.
        await conn.execute("DELETE FROM screen_sessions WHERE expires_at <= $1", now)
    return token, csrf


async def get_session(db: Db, token: str, *, now: datetime, idle_s: float) -> dict[str, Any] | None:
    """The live session of this token, its idle clock restarted: ``{user: {id, name, role,
    language, callback}, csrf}``; None when unknown, idle too long, past its end, or the user is
    disabled."""
    aware(now)
    if not token:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"""WITH s AS (
                   UPDATE screen_sessions SET last_seen_at = $2
                   WHERE id_hash = $1 AND expires_at > $2 AND last_seen_at > $3
                   RETURNING user_id, csrf)
                SELECT {_LANGUAGE_COLUMNS}, s.csrf FROM s JOIN users u ON u.id = s.user_id
                WHERE u.enabled""",
            _hash(token),
            now,
            now - seconds(idle_s),
        )
        if row is None:
            # An ended session stays ended, whatever clock reads it next.
            await conn.execute("DELETE FROM screen_sessions WHERE id_hash = $1", _hash(token))
            return None
    user = _user(row)
    csrf = user.pop("csrf")
    return {"user": user, "csrf": csrf}


async def delete_session(db: Db, token: str) -> None:
    async with connection(db) as conn:
        await conn.execute("DELETE FROM screen_sessions WHERE id_hash = $1", _hash(token))


async def delete_user_sessions(db: Db, user_id: Any) -> int:
    """Sign the user out everywhere (disabled, password reset, role changed)."""
    uid = parse_id(user_id)
    if uid is None:
        return 0
    async with connection(db) as conn:
        status = await conn.execute("DELETE FROM screen_sessions WHERE user_id = $1", uid)
    return int(status.split()[-1])


# -- sign-in lockout --------------------------------------------------------------------------


async def signin_locked(
    db: Db, keys: list[str], *, now: datetime, window_s: float, max_failures: int
) -> bool:
    """True when any key has ``max_failures`` failed sign-ins within the last ``window_s``."""
    aware(now)
    async with connection(db) as conn:
        worst = await conn.fetchval(
            """SELECT coalesce(max(n), 0) FROM (
                   SELECT count(*) AS n FROM signin_failures
                   WHERE key = ANY($1::text[]) AND at > $2 GROUP BY key) c""",
            keys,
            now - seconds(window_s),
        )
    return int(worst) >= max_failures


async def record_signin_failure(db: Db, keys: list[str], *, now: datetime) -> None:
    aware(now)
    async with connection(db) as conn:
        await conn.executemany(
            "INSERT INTO signin_failures (key, at) VALUES ($1, $2)", [(k, now) for k in keys]
        )


async def clear_signin_failures(db: Db, key: str, *, before: datetime) -> None:
    """Forget a key's failures (a user who signed in); older rows of every key are swept."""
    async with connection(db) as conn:
        await conn.execute("DELETE FROM signin_failures WHERE key = $1 OR at < $2", key, before)


# -- per-user preferences and admin changes ---------------------------------------------------


async def set_user_fields(
    db: Db,
    user_id: Any,
    *,
    language: str | None = None,
    callback: str | None = None,
    role: str | None = None,
) -> None:
    """Change what is given (None keeps it): the screen language, last callback, role."""
    uid = parse_id(user_id)
    if uid is None:
        raise NotFound("user not found")
    if role is not None and role not in ("operator", "admin"):
        raise ValueError("role must be operator or admin")
    async with connection(db) as conn:
        status = await conn.execute(
            """UPDATE users SET language = coalesce($2, language),
                   callback = coalesce($3, callback), role = coalesce($4, role)
               WHERE id = $1""",
            uid,
            language,
            callback,
            role,
        )
    if status.endswith(" 0"):
        raise NotFound("user not found")


# -- the screen's lists -----------------------------------------------------------------------


async def list_screen_payments(
    db: Db,
    *,
    since: datetime,
    until: datetime,
    status: str | None = None,
    operator: str | None = None,
    order_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Payments created in ``[since, until)``, newest first, a page at a time, and how many
    match in all. ``operator`` is the operator id (the screen user's name); ``order_id`` matches
    as a prefix."""
    aware(since, "since")
    aware(until, "until")
    conds = ["created_at >= $1", "created_at < $2"]
    args: list[Any] = [since, until]
    if status:
        args.append(status)
        conds.append(f"status = ${len(args)}")
    if operator:
        args.append(operator)
        conds.append(f"operator->>'id' = ${len(args)}")
    if order_id:
        args.append(_prefix(order_id))
        conds.append(f"order_id LIKE ${len(args)}")
    where = " AND ".join(conds)
    async with connection(db) as conn:
        total, rows = await _page(conn, "payments", where, args, limit, offset)
        items = await snapshots(conn, rows)
    return items, total


async def list_review_payments(db: Db, *, limit: int = 200) -> list[dict[str, Any]]:
    """Payments flagged ``needs_review``, oldest first, with the gateway calls as evidence
    (``gateway_calls``: endpoint, times, codes — never card data)."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT * FROM payments WHERE needs_review ORDER BY updated_at, id LIMIT $1",
            max(1, min(int(limit), 1000)),
        )
        items = await snapshots(conn, rows)
        calls = await conn.fetch(
            """SELECT payment_id, order_id, endpoint, started_at, duration_ms, http_status,
                      err_code, err_info, outcome, error
               FROM gateway_calls WHERE payment_id = ANY($1::uuid[]) ORDER BY id""",
            [r["id"] for r in rows],
        )
        reasons = {str(r["id"]): r["review_reason"] for r in rows}
    by_payment: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        by_payment.setdefault(str(c["payment_id"]), []).append(dict(c))
    for item in items:
        item["gateway_calls"] = by_payment.get(item["id"], [])
        item["review_reason"] = reasons.get(item["id"])
    return items


async def search_audit(
    db: Db,
    *,
    actor: str | None = None,
    action: str | None = None,
    payment_id: Any = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Audit rows, newest first, filtered (``actor`` as a prefix, ``action`` exactly), and how
    many match in all."""
    conds = ["TRUE"]
    args: list[Any] = []
    if actor:
        args.append(_prefix(actor))
        conds.append(f"actor LIKE ${len(args)}")
    if action:
        args.append(action)
        conds.append(f"action = ${len(args)}")
    if payment_id is not None:
        pid = parse_id(payment_id)
        args.append(pid if pid is not None else uuid.UUID(int=0))
        conds.append(f"payment_id = ${len(args)}")
    if since is not None:
        args.append(aware(since, "since"))
        conds.append(f"created_at >= ${len(args)}")
    if until is not None:
        args.append(aware(until, "until"))
        conds.append(f"created_at < ${len(args)}")
    where = " AND ".join(conds)
    async with connection(db) as conn:
        total, rows = await _page(conn, "audit", where, args, min(limit, 1000), offset)
    return [
        {**dict(r), "payment_id": None if r["payment_id"] is None else str(r["payment_id"])}
        for r in rows
    ], total


async def audit_actions(db: Db) -> list[str]:
    """The actions the audit log holds, for the filter's choices."""
    async with connection(db) as conn:
        rows = await conn.fetch("SELECT DISTINCT action FROM audit ORDER BY action")
    return [r["action"] for r in rows]
