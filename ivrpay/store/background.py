"""Work every ``serve`` process shares through PostgreSQL.

Each function handles a batch: it picks rows with ``FOR UPDATE SKIP LOCKED`` (so processes running
the same loop split the work and never wait on each other) and changes them in the same
transaction. Time comes from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ivrpay.store._core import (
    LEASE_CLEARED,
    Db,
    aware,
    backoff_delay,
    card_fields,
    change,
    change_or_explain,
    close_unsent_executions,
    connection,
    error_value,
    finish_execution,
    lock_existing,
    lock_payment,
    payment_pk,
    registration_sets,
    registration_value,
    seconds,
    snapshots,
    transaction,
)
from ivrpay.store.errors import Conflict, InvalidTransition
from ivrpay.store.payments import succeeded_sets
from ivrpay.store.states import CLAIMABLE_STATUSES

_CALL_LOST = "the call's process stopped renewing its lease"


async def resolve_lapsed_leases(
    db: Db, *, now: datetime, limit: int = 100
) -> list[tuple[str, str]]:
    """Resolve claims whose lease lapsed (a crashed process): in_call → abandoned (canceled if a
    cancel was requested), processing → unknown (due for reconciliation at once); a payment
    already past the call just has its call closed. Returns ``(payment_id, status)`` pairs."""
    aware(now)
    done: list[tuple[str, str]] = []
    async with transaction(db) as conn:
        rows = await conn.fetch(
            """SELECT id, status, cancel_requested, current_order_id FROM payments
               WHERE lease_token IS NOT NULL AND call_ended_at IS NULL AND lease_expires_at < $1
               ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        for row in rows:
            sets: dict[str, Any] = {"call_ended_at": now, **LEASE_CLEARED}
            to_status: str | None = None
            if row["status"] == "in_call":
                to_status = "canceled" if row["cancel_requested"] else "abandoned"
                err = {"code": "call_lost", "category": "system", "message": _CALL_LOST}
                sets["error"] = err
                await close_unsent_executions(conn, row["id"], "system", err, now)
            elif row["status"] == "processing":
                to_status = "unknown"
                err = {"code": "call_lost", "category": "unknown", "message": _CALL_LOST}
                sets.update(
                    error=err, unknown_since=now, reconcile_next_at=now, reconcile_attempts=0
                )
                await finish_execution(
                    conn, row["id"], row["current_order_id"], "unknown", err, now
                )
            snap = await change(
                conn, row["id"], now=now, kind="lease_lapsed", to_status=to_status, sets=sets
            )
            if snap is not None:
                done.append((snap["id"], snap["status"]))
    return done


async def expire_payments(db: Db, *, now: datetime, limit: int = 500) -> list[str]:
    """Unclaimed payments (pending/failed/abandoned) past ``expires_at`` → expired."""
    aware(now)
    expired: list[str] = []
    async with transaction(db) as conn:
        rows = await conn.fetch(
            """SELECT id FROM payments WHERE status = ANY($1::text[]) AND expires_at <= $2
               ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED""",
            sorted(CLAIMABLE_STATUSES),
            now,
            limit,
        )
        for row in rows:
            snap = await change(conn, row["id"], now=now, kind="expired", to_status="expired")
            if snap is not None:
                expired.append(snap["id"])
    return expired


async def _claim_due(
    conn: Any, column: str, where: str, now: datetime, lease_s: float, limit: int
) -> list[Any]:
    """Payments due by ``column`` (and ``where``), pushed ``lease_s`` ahead so no other process
    claims them meanwhile: the rows. ``column`` and ``where`` are this module's constants."""
    return list(
        await conn.fetch(
            f"""WITH due AS (
                    SELECT id FROM payments WHERE {column} <= $1 AND {where}
                    ORDER BY {column} LIMIT $2 FOR UPDATE SKIP LOCKED)
                UPDATE payments p SET {column} = $3 FROM due WHERE p.id = due.id
                RETURNING p.*""",
            now,
            limit,
            now + seconds(lease_s),
        )
    )


async def claim_reconciliations(
    db: Db, *, now: datetime, lease_s: float, limit: int = 10
) -> list[dict[str, Any]]:
    """Due ``unknown`` payments, held for ``lease_s`` so no other process takes them meanwhile.

    Each item: ``{payment: snapshot, executions: [{order_id, started_at, entered_at, sent_at,
    access_id, access_pass, outcome}], unknown_since, attempts}``.
    """
    aware(now)
    async with transaction(db) as conn:
        rows = await _claim_due(
            conn,
            "reconcile_next_at",
            "status = 'unknown' AND NOT needs_review",
            now,
            lease_s,
            limit,
        )
        snaps = await snapshots(conn, rows)
        ex = await conn.fetch(
            """SELECT payment_id, order_id, started_at, entered_at, sent_at, access_id,
                      access_pass, outcome
               FROM executions WHERE payment_id = ANY($1::uuid[]) ORDER BY payment_id, n""",
            [r["id"] for r in rows],
        )
    by_payment: dict[Any, list[dict[str, Any]]] = {}
    for e in ex:
        item = dict(e)
        by_payment.setdefault(item.pop("payment_id"), []).append(item)
    return [
        {
            "payment": snap,
            "executions": by_payment.get(row["id"], []),
            "unknown_since": row["unknown_since"],
            "attempts": row["reconcile_attempts"],
        }
        for row, snap in zip(rows, snaps, strict=True)
    ]


async def record_reconciliation(
    db: Db,
    payment_id: Any,
    *,
    now: datetime,
    status: str,
    backoff_s: Sequence[float],
    horizon_s: float,
    error: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
    order_id: str | None = None,
    registration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a reconciliation found: unknown → succeeded | failed, or "retry" later.

    ``registration``: for a ``register`` payment, what SearchCard showed of the card.

    A retry is due after ``backoff_s`` (by attempt, the last entry repeating); once the payment has
    been unknown for ``horizon_s`` it is flagged ``needs_review`` instead.
    """
    aware(now)
    if status not in ("succeeded", "failed", "retry"):
        raise ValueError("status must be succeeded, failed or retry")
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        row = await lock_existing(conn, pid)
        if row["status"] != "unknown":
            raise InvalidTransition(row["status"], "unknown" if status == "retry" else status)
        order = order_id or row["current_order_id"]
        if status == "retry":
            attempts = row["reconcile_attempts"] + 1
            since = row["unknown_since"] or now
            if (now - since).total_seconds() >= horizon_s:
                snap = await change(
                    conn,
                    pid,
                    now=now,
                    kind="needs_review",
                    sets={
                        "needs_review": True,
                        "review_reason": "reconciliation did not settle the outcome in time",
                        "reconcile_next_at": None,
                        "reconcile_attempts": attempts,
                    },
                    data={"reason": "reconciliation_exhausted"},
                )
                assert snap is not None
                return snap
            # Scheduling only: not a change anyone watches, so no event and no new updated_at.
            await conn.execute(
                """UPDATE payments SET reconcile_attempts = $2, reconcile_next_at = $3
                   WHERE id = $1""",
                pid,
                attempts,
                now + seconds(backoff_delay(backoff_s, attempts)),
            )
            snap = (await snapshots(conn, [await lock_payment(conn, pid)]))[0]  # type: ignore[list-item]
            return snap
        # Settled: the call's last step (``processing``) is over too.
        sets: dict[str, Any] = {
            **card_fields(card),
            "reconcile_next_at": None,
            "progress_step": "done",
        }
        if registration is not None:
            sets.update(registration_sets(registration_value(registration), now))
        if status == "succeeded":
            sets.update(succeeded_sets(row, result))
            err = None
            if row["operation"] == "charge_and_register" and row["registration"] is None:
                # The call never got to store the card: TradedCard is retried in the background.
                pending = {"status": "pending", "card_seq": None, "error": None}
                sets.update(registration_sets(registration_value(pending), now))
        else:
            if error is None:
                raise ValueError("a failed reconciliation needs an error")
            err = error_value(error)
            sets["error"] = err
        outcome = "succeeded" if err is None else err["category"]
        await finish_execution(conn, pid, order, outcome, err, now)
        return await change_or_explain(
            conn,
            pid,
            now=now,
            kind="reconciled",
            to_status=status,
            from_statuses=["unknown"],
            sets=sets,
            data={"order_id": order, "outcome": outcome},
        )


async def claim_registrations(
    db: Db, *, now: datetime, lease_s: float, limit: int = 10
) -> list[dict[str, Any]]:
    """Succeeded payments whose card registration is ``pending`` and due, held for ``lease_s``.

    Each item: ``{payment: snapshot, order_id (the succeeded execution's, for TradedCard),
    member_id, attempts, pending_since}``.
    """
    aware(now)
    async with transaction(db) as conn:
        rows = await _claim_due(
            conn, "registration_next_at", "status = 'succeeded'", now, lease_s, limit
        )
        snaps = await snapshots(conn, rows)
        charged = {
            r["payment_id"]: r["order_id"]
            for r in await conn.fetch(
                """SELECT DISTINCT ON (payment_id) payment_id, order_id FROM executions
                   WHERE payment_id = ANY($1::uuid[]) AND outcome = 'succeeded'
                   ORDER BY payment_id, n DESC""",
                [r["id"] for r in rows],
            )
        }
    return [
        {
            "payment": snap,
            "order_id": charged.get(row["id"]),
            "member_id": row["member_id"],
            "attempts": row["registration_attempts"],
            "pending_since": row["registration_since"],
        }
        for row, snap in zip(rows, snaps, strict=True)
    ]


_REGISTRATION_GAVE_UP = {
    "code": "registration_not_done",
    "category": "system",
    "message": "the card could not be stored in time",
}


async def record_registration_attempt(
    db: Db,
    payment_id: Any,
    *,
    now: datetime,
    status: str,
    backoff_s: Sequence[float],
    horizon_s: float,
    card_seq: int | None = None,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a retry of a ``pending`` registration found: "succeeded" (``card_seq``), "failed"
    (``error``: the gateway will not store the card) or "retry" later.

    A retry is due after ``backoff_s`` (by attempt, the last entry repeating); once the
    registration has been pending for ``horizon_s`` it is ``failed`` instead (with ``error``, else
    the one it had). The outcome is a payment event (SSE sees it); registration has no webhook.
    Conflict("registration_not_pending") when there is nothing pending to record.
    """
    aware(now)
    if status not in ("succeeded", "failed", "retry"):
        raise ValueError("status must be succeeded, failed or retry")
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        row = await lock_existing(conn, pid)
        current = row["registration"] or {}
        if row["status"] != "succeeded" or current.get("status") != "pending":
            raise Conflict("registration_not_pending", "no card registration is pending")
        attempts = row["registration_attempts"] + 1
        if status == "retry":
            since = row["registration_since"] or now
            if (now - since).total_seconds() < horizon_s:
                # Scheduling only: not a change anyone watches, so no event.
                await conn.execute(
                    """UPDATE payments SET registration_attempts = $2, registration_next_at = $3
                       WHERE id = $1""",
                    pid,
                    attempts,
                    now + seconds(backoff_delay(backoff_s, attempts)),
                )
                return (await snapshots(conn, [await lock_payment(conn, pid)]))[0]  # type: ignore[list-item]
            status = "failed"
            error = error or current.get("error") or _REGISTRATION_GAVE_UP
        if status == "succeeded":
            value = registration_value({"status": "succeeded", "card_seq": card_seq})
        else:
            if error is None:
                raise ValueError("a failed registration needs an error")
            value = registration_value({"status": "failed", "card_seq": None, "error": error})
        return await change_or_explain(
            conn,
            pid,
            now=now,
            kind="registration",
            from_statuses=["succeeded"],
            sets={**registration_sets(value, now), "registration_attempts": attempts},
            data={**(value or {}), "attempts": attempts},
        )


async def purge_idempotency_keys(db: Db, *, now: datetime) -> int:
    """Forget idempotency keys past their 24 h (and code reservations long over)."""
    aware(now)
    async with connection(db) as conn:
        status = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= $1", now)
        await conn.execute("DELETE FROM payment_codes WHERE reserved_until <= $1", now)
    return int(status.split()[-1])
