"""Webhook outbox: claiming due deliveries, signing, recording every attempt, listing.

Outbox rows are written by :func:`ivrpay.store._core.change` in the transaction that changes the
payment; the body is fixed then (the exact bytes that are signed and sent on every attempt).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ivrpay.store._core import (
    Db,
    _Args,
    aware,
    backoff_delay,
    connection,
    mask,
    parse_id,
    seconds,
    transaction,
)
from ivrpay.store.errors import NotFound

SIGNATURE_HEADER = "X-Ivrpay-Signature"


def sign(secret: str, body: bytes, t: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` (product.md)."""
    mac = hmac.new(secret.encode(), f"{int(t)}.".encode() + body, hashlib.sha256)
    return f"t={int(t)},v1={mac.hexdigest()}"


async def claim_deliveries(
    db: Db, *, now: datetime, lease_s: float, limit: int = 20
) -> list[dict[str, Any]]:
    """Due deliveries, pushed ``lease_s`` ahead so that no other process sends them meanwhile."""
    aware(now)
    async with transaction(db) as conn:
        rows = await conn.fetch(
            """WITH due AS (
                   SELECT id FROM webhook_deliveries
                   WHERE state = 'pending' AND next_attempt_at <= $1
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE webhook_deliveries d SET next_attempt_at = $3
               FROM due, api_clients c
               WHERE d.id = due.id AND c.id = d.client_id
               RETURNING d.id, d.payment_id, d.type, d.sequence, d.body, d.attempts,
                         d.created_at, c.webhook_url AS url, c.webhook_secret AS secret""",
            now,
            limit,
            now + seconds(lease_s),
        )
    return [{**dict(r), "id": str(r["id"]), "payment_id": str(r["payment_id"])} for r in rows]


async def record_delivery_attempt(
    db: Db,
    delivery_id: Any,
    *,
    now: datetime,
    ok: bool,
    status_code: int | None = None,
    error: str | None = None,
    duration_ms: int | None = None,
    backoff_s: Sequence[float],
    horizon_s: float,
    url: str | None = None,
) -> None:
    """One attempt: delivered, or the next try after the back-off, or given up past the horizon."""
    aware(now)
    did = parse_id(delivery_id)
    if did is None:
        raise NotFound("delivery not found")
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            """SELECT d.attempts, d.created_at, c.webhook_url FROM webhook_deliveries d
               JOIN api_clients c ON c.id = d.client_id WHERE d.id = $1 FOR UPDATE OF d""",
            did,
        )
        if row is None:
            raise NotFound(f"delivery {did} not found")
        error = mask(error)
        await conn.execute(
            """INSERT INTO webhook_attempts (delivery_id, attempted_at, url, status_code, error,
                   duration_ms) VALUES ($1, $2, $3, $4, $5, $6)""",
            did,
            now,
            url or row["webhook_url"],
            status_code,
            error,
            duration_ms,
        )
        attempts = row["attempts"] + 1
        if ok:
            state, next_at, delivered_at = "delivered", None, now
        else:
            next_at = now + seconds(backoff_delay(backoff_s, attempts))
            delivered_at = None
            give_up = next_at > row["created_at"] + seconds(horizon_s)
            state = "failed" if give_up else "pending"
            if give_up:
                next_at = None
        await conn.execute(
            """UPDATE webhook_deliveries SET attempts = $2, state = $3, next_attempt_at = $4,
                   delivered_at = $5, last_status = $6, last_error = $7 WHERE id = $1""",
            did,
            attempts,
            state,
            next_at,
            delivered_at,
            status_code,
            error,
        )


async def list_deliveries(
    db: Db, *, payment_id: Any = None, client_id: Any = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Deliveries (oldest first) with every attempt made, for a payment and/or a client."""
    a = _Args()
    conds = ["TRUE"]
    for column, value in (("payment_id", payment_id), ("client_id", client_id)):
        if value is not None:
            parsed = parse_id(value)
            if parsed is None:
                return []
            conds.append(f"d.{column} = {a(parsed)}")
    limit = max(1, min(int(limit), 1000))
    async with connection(db) as conn:
        rows = await conn.fetch(
            f"""SELECT d.id, d.payment_id, d.client_id, d.type, d.sequence, d.state, d.attempts,
                       d.next_attempt_at, d.created_at, d.delivered_at, d.last_status,
                       d.last_error, c.webhook_url AS url
                FROM webhook_deliveries d JOIN api_clients c ON c.id = d.client_id
                WHERE {" AND ".join(conds)} ORDER BY d.created_at, d.sequence, d.id
                LIMIT {a(limit)}""",
            *a.values,
        )
        history = await conn.fetch(
            """SELECT delivery_id, attempted_at, url, status_code, error, duration_ms
               FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY id""",
            [r["id"] for r in rows],
        )
    by_delivery: dict[Any, list[dict[str, Any]]] = {}
    for h in history:
        item = dict(h)
        by_delivery.setdefault(item.pop("delivery_id"), []).append(item)
    return [
        {
            **dict(r),
            "id": str(r["id"]),
            "payment_id": str(r["payment_id"]),
            "client_id": str(r["client_id"]),
            "history": by_delivery.get(r["id"], []),
        }
        for r in rows
    ]


async def count_webhook_backlog(db: Db) -> int:
    """Deliveries still waiting to be delivered (for the metrics)."""
    async with connection(db) as conn:
        return int(
            await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")
        )
