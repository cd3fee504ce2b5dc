"""Settlement intents: a capture / void / refund recorded before AlterTran is sent.

One row per payment and action (``sql/009_settlement_intents.sql``). A sender claims the row with a
conditional update while the payment row is locked, so at most one intent of a payment is being
sent at any time, across processes; the payment's settlement is recorded in the same transaction
that marks the intent done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivrpay.store._core import (
    Db,
    aware,
    connection,
    get_snapshot,
    lock_existing,
    parse_id,
    payment_pk,
    seconds,
    transaction,
)
from ivrpay.store.errors import LeaseLost, NotFound
from ivrpay.store.payments import get_gateway_handle, record_settlement, settlement_action

# A sender's intent still held by another (live lease), or one whose answer is being looked up.
_IN_FLIGHT = """(state = 'sending' AND lease_until > $2) OR state = 'unknown'"""


@dataclass(frozen=True)
class SettlementClaim:
    """A claim of one settlement intent.

    ``outcome``: "claimed" (``intent`` and ``handle`` are set: send), "already" (the settlement
    is recorded: ``snapshot``), "conflict" (the payment cannot take this action), "busy" (another
    sender holds an intent of this payment), "no_handle" (no gateway transaction to change).
    """

    outcome: str
    snapshot: dict[str, Any]
    intent: SettlementIntent | None = None
    handle: dict[str, Any] | None = None


@dataclass(frozen=True)
class SettlementIntent:
    """One row of ``settlement_intents`` (see the migration for the states). A frozen dataclass:
    the fields are the columns, nothing is computed, and it compares by value in tests."""

    payment_id: str
    action: str
    order_id: str
    state: str  # open | sending | unknown | done
    actor: str
    token: str | None
    lease_until: datetime | None
    sends: int  # AlterTrans sent under this intent
    sent_at: datetime | None
    checks: int  # look-ups of a lost answer
    next_check_at: datetime | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DueSettlement:
    """An intent claimed by the checker for ``token``, with what AlterTran needs (``handle``:
    :func:`~ivrpay.store.payments.get_gateway_handle`; None when the payment has none)."""

    intent: SettlementIntent
    handle: dict[str, Any] | None
    token: str


def _intent(row: Mapping[str, Any]) -> SettlementIntent:
    out = dict(row)
    if isinstance(out.get("error"), str):
        out["error"] = json.loads(out["error"])
    out["payment_id"] = str(out["payment_id"])
    return SettlementIntent(**out)


async def _locked_snapshot(conn: Any, pid: Any) -> dict[str, Any]:
    """The payment, its row locked: every writer of an intent takes the payment row first."""
    await lock_existing(conn, pid)
    snap = await get_snapshot(conn, pid)
    assert snap is not None
    return snap


async def claim_settlement(
    db: Db,
    payment_id: Any,
    action: str,
    *,
    token: str,
    actor: str,
    now: datetime,
    lease_s: float,
) -> SettlementClaim:
    """Record the intent (if new) and claim it for ``token`` until ``now + lease_s``.

    Refused ("busy") while any intent of the payment is held by a live lease or is ``unknown``
    (its lost answer must be looked up by whoever claims *that* one) — except this action's own
    ``unknown`` intent, which the claim takes over: the caller looks the order up first.
    """
    aware(now)
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        snap = await _locked_snapshot(conn, pid)
        verdict = settlement_action(snap, action)
        if verdict != "ok":
            return SettlementClaim(verdict, snap)
        handle = await get_gateway_handle(conn, pid)
        if handle is None:
            return SettlementClaim("no_handle", snap)
        others = await conn.fetchval(
            f"""SELECT count(*) FROM settlement_intents
                WHERE payment_id = $1 AND action <> $3 AND ({_IN_FLIGHT})""",
            pid,
            now,
            action,
        )
        if others:
            return SettlementClaim("busy", snap)
        row = await conn.fetchrow(
            """INSERT INTO settlement_intents AS i
                   (payment_id, action, order_id, state, actor, token, lease_until,
                    created_at, updated_at)
               VALUES ($1, $3, $4, 'sending', $5, $6, $2::timestamptz + $7::interval, $2, $2)
               ON CONFLICT (payment_id, action) DO UPDATE
                   SET state = 'sending', token = EXCLUDED.token, actor = EXCLUDED.actor,
                       lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at
                   WHERE i.state IN ('open', 'unknown')
                      OR (i.state = 'sending' AND i.lease_until <= $2)
               RETURNING i.*""",
            pid,
            now,
            action,
            handle["order_id"],
            actor,
            token,
            seconds(lease_s),
        )
        if row is None:
            return SettlementClaim("busy", snap)
        return SettlementClaim("claimed", snap, _intent(row), handle)


async def mark_sent(db: Db, payment_id: Any, action: str, token: str, *, now: datetime) -> None:
    """Just before an AlterTran: counted and timed, so a lost answer is looked up, never
    resent blindly. :class:`LeaseLost` when the claim is no longer ``token``'s."""
    aware(now)
    async with connection(db) as conn:
        done = await conn.fetchval(
            """UPDATE settlement_intents SET sends = sends + 1, sent_at = $4, updated_at = $4
               WHERE payment_id = $1 AND action = $2 AND token = $3 AND state = 'sending'
                 AND lease_until > $4
               RETURNING sends""",
            payment_pk(payment_id),
            action,
            token,
            now,
        )
    if done is None:
        raise LeaseLost("the settlement intent is no longer held")


async def release_settlement(
    db: Db,
    payment_id: Any,
    action: str,
    token: str,
    *,
    now: datetime,
    unknown: bool,
    error: Mapping[str, Any] | None = None,
    backoff_s: Sequence[float] = (),
) -> SettlementIntent | None:
    """Give the claim up: ``unknown`` (an AlterTran may have gone through: SearchTrade must tell,
    the checker looks after the back-off) or ``open`` (certainly nothing changed). None when the
    claim was no longer ``token``'s."""
    aware(now)
    schedule = [float(x) for x in backoff_s] or [60.0]
    async with connection(db) as conn:
        row = await conn.fetchrow(
            """UPDATE settlement_intents
               SET state = $4::text, token = NULL, lease_until = NULL,
                   updated_at = $5::timestamptz, error = $6::jsonb,
                   checks = checks + (CASE WHEN $4::text = 'unknown' THEN 1 ELSE 0 END),
                   next_check_at = CASE WHEN $4::text = 'unknown'
                       THEN $5::timestamptz + make_interval(secs =>
                           ($7::float8[])[LEAST(checks + 1, cardinality($7::float8[]))]) END
               WHERE payment_id = $1 AND action = $2 AND token = $3 AND state = 'sending'
               RETURNING *""",
            payment_pk(payment_id),
            action,
            token,
            "unknown" if unknown else "open",
            now,
            None if error is None else json.dumps(dict(error)),
            schedule,
        )
    return None if row is None else _intent(row)


async def complete_settlement(
    db: Db,
    payment_id: Any,
    action: str,
    token: str,
    *,
    now: datetime,
    result: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The gateway did it: the intent is done and the payment's settlement recorded (webhook,
    audit by the intent's actor), in one transaction. :class:`LeaseLost` when the claim is no
    longer ``token``'s."""
    aware(now)
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        # The payment row first, as a claim takes it: never the intent row before it.
        await _locked_snapshot(conn, pid)
        actor = await conn.fetchval(
            """UPDATE settlement_intents
               SET state = 'done', token = NULL, lease_until = NULL, next_check_at = NULL,
                   error = NULL, updated_at = $4
               WHERE payment_id = $1 AND action = $2 AND token = $3 AND state = 'sending'
               RETURNING actor""",
            pid,
            action,
            token,
            now,
        )
        if actor is None:
            raise LeaseLost("the settlement intent is no longer held")
        return await record_settlement(
            conn, pid, action=action, now=now, actor=actor, result=result
        )


async def get_settlement_intents(db: Db, payment_id: Any) -> list[SettlementIntent]:
    """The payment's intents, by action (for people and tests)."""
    pid = parse_id(payment_id)
    if pid is None:
        raise NotFound("payment not found")
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT * FROM settlement_intents WHERE payment_id = $1 ORDER BY action", pid
        )
    return [_intent(r) for r in rows]


async def claim_due_settlements(
    db: Db, *, token: str, now: datetime, lease_s: float, limit: int = 10
) -> list[DueSettlement]:
    """Intents an AlterTran was sent for whose answer nobody has: ``unknown`` ones due for a
    look, and ``sending`` ones whose holder died after sending, claimed for ``token``."""
    aware(now)
    async with transaction(db) as conn:
        rows = await conn.fetch(
            """WITH due AS (
                   SELECT payment_id, action FROM settlement_intents
                   WHERE (state = 'unknown' AND next_check_at <= $1)
                      OR (state = 'sending' AND lease_until <= $1 AND sends > 0)
                   ORDER BY next_check_at NULLS FIRST
                   LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE settlement_intents i
               SET state = 'sending', token = $3, lease_until = $1 + $4::interval,
                   updated_at = $1
               FROM due WHERE i.payment_id = due.payment_id AND i.action = due.action
               RETURNING i.*""",
            now,
            limit,
            token,
            seconds(lease_s),
        )
        items = []
        for row in rows:
            handle = await get_gateway_handle(conn, row["payment_id"])
            items.append(DueSettlement(_intent(row), handle, token))
    return items
