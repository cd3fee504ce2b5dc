"""Take-back: the operator pulls the caller out of the IVR (the AMI Redirect is the API's part).

The payment records ``taken_back {by, at, process}`` with one conditional update while its call is
in the IVR and no gateway execution is in flight (``in_call``); from then on the call cannot move
to ``processing`` (:func:`ivrpay.store.move_to_processing` raises :class:`TakenBack`), and when the
redirected call's AGI hangs up the call ends ``abandoned`` as after any hang-up. A redirect that
failed clears the record again. ``process`` is the ``serve`` process whose AMI link sent it.

A process without a working AMI link queues the redirect in ``ami_redirects``; any process with a
link claims it (``FOR UPDATE SKIP LOCKED``), sends it and writes the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ivrpay.store._core import (
    Db,
    aware,
    change,
    connection,
    lock_existing,
    mask,
    parse_id,
    payment_pk,
    seconds,
    transaction,
)
from ivrpay.store.errors import Conflict, NotFound

REDIRECT_OUTCOMES = ("ok", "refused", "unknown", "expired")
REDIRECT_KINDS = ("redirect", "listen_in")


def _instant(now: datetime) -> str:
    return now.astimezone(UTC).isoformat()


def take_back_conflict(snapshot: Mapping[str, Any]) -> str | None:
    """Why this payment's caller cannot be taken back now (a Conflict code), or None; pure, on a
    snapshot: :func:`mark_taken_back` checks the same on the locked row."""
    if snapshot["status"] == "processing":
        return "execution_in_flight"
    call = snapshot.get("call") or {}
    if snapshot["status"] != "in_call" or call.get("ended_at") or not call.get("channel"):
        return "not_in_ivr"
    if snapshot.get("taken_back") is not None:
        return "already_taken_back"
    return None


async def mark_taken_back(
    db: Db, payment_id: Any, *, by: str, now: datetime
) -> tuple[dict[str, Any], str]:
    """Record the take-back of the payment's call: (snapshot, the call's channel).

    Conflict ``execution_in_flight`` (processing: the gateway call was sent),
    ``already_taken_back``, ``not_in_ivr`` (no call, or it ended); NotFound.
    """
    aware(now)
    pid = payment_pk(payment_id)
    value = {"by": mask(by, 200), "at": _instant(now), "process": None}
    async with transaction(db) as conn:
        row = await lock_existing(conn, pid)
        if row["status"] == "processing":
            raise Conflict("execution_in_flight", "the gateway call was sent; wait for its outcome")
        in_ivr = (
            row["status"] == "in_call"
            and row["call_ended_at"] is None
            and row["lease_token"] is not None
            and row["call_channel"]
        )
        if not in_ivr:
            raise Conflict("not_in_ivr", "the caller is not in the IVR")
        if row["taken_back"] is not None:
            raise Conflict("already_taken_back", "the caller is being taken back already")
        snap = await change(
            conn,
            pid,
            now=now,
            kind="taken_back",
            from_statuses=["in_call"],
            where="taken_back IS NULL AND call_ended_at IS NULL",
            sets={"taken_back": value},
            data={"by": value["by"]},
        )
        assert snap is not None  # the row is locked and was checked above
        return snap, str(row["call_channel"])


async def confirm_taken_back(
    db: Db, payment_id: Any, *, at: str, process: str, now: datetime
) -> dict[str, Any] | None:
    """The Redirect was sent by ``process``: say so on the record (None: the record is gone)."""
    aware(now)
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        return await change(
            conn,
            pid,
            now=now,
            kind="taken_back_sent",
            where=lambda a: f"taken_back->>'at' = {a(at)}",
            sets={"taken_back": lambda a: f"taken_back || {a({'process': mask(process, 200)})}"},
            data={"process": mask(process, 200)},
        )


async def clear_taken_back(
    db: Db, payment_id: Any, *, at: str, now: datetime, reason: str
) -> dict[str, Any] | None:
    """The Redirect failed: the call goes on as before (None: the record changed meanwhile)."""
    aware(now)
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        return await change(
            conn,
            pid,
            now=now,
            kind="take_back_failed",
            where=lambda a: f"taken_back->>'at' = {a(at)} AND status = 'in_call'",
            sets={"taken_back": None},
            data={"reason": mask(reason, 200)},
        )


# -- redirects relayed to a process with a working AMI link ------------------------------------


async def queue_redirect(
    db: Db,
    *,
    payment_id: Any,
    channel: str,
    context: str,
    variables: Mapping[str, str],
    now: datetime,
    wait_s: float,
    kind: str = "redirect",
) -> str:
    """A redirect (or other AMI work of ``kind``: ``listen_in``) for any process with an AMI
    link; its id. Unclaimed after ``wait_s``: expired."""
    aware(now)
    if kind not in REDIRECT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(REDIRECT_KINDS)}")
    rid = uuid.uuid4()
    async with connection(db) as conn:
        await conn.execute(
            """INSERT INTO ami_redirects
                   (id, payment_id, kind, channel, context, variables, created_at, wait_until)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            rid,
            payment_pk(payment_id),
            kind,
            channel,
            context,
            dict(variables),
            now,
            now + seconds(wait_s),
        )
    return str(rid)


def _redirect(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["id"] = str(row["id"])
    out["payment_id"] = str(row["payment_id"])
    return out


async def claim_redirects(
    db: Db, *, owner: str, now: datetime, limit: int = 10
) -> list[dict[str, Any]]:
    """Open redirects still waiting, for ``owner`` (a process whose AMI link is up)."""
    aware(now)
    async with transaction(db) as conn:
        rows = await conn.fetch(
            """UPDATE ami_redirects SET claimed_by = $1, claimed_at = $2
               WHERE id IN (SELECT id FROM ami_redirects
                            WHERE claimed_by IS NULL AND done_at IS NULL AND wait_until > $2
                            ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT $3)
               RETURNING *""",
            owner,
            now,
            int(limit),
        )
    return [_redirect(r) for r in rows]


async def finish_redirect(
    db: Db, redirect_id: Any, *, outcome: str, now: datetime, detail: str | None = None
) -> None:
    aware(now)
    if outcome not in REDIRECT_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(REDIRECT_OUTCOMES)}")
    rid = parse_id(redirect_id)
    if rid is None:
        raise NotFound("no such redirect")
    async with connection(db) as conn:
        await conn.execute(
            """UPDATE ami_redirects SET outcome = $2, detail = $3, done_at = $4
               WHERE id = $1 AND done_at IS NULL""",
            rid,
            outcome,
            mask(detail, 300),
            now,
        )


async def unclaim_redirect(db: Db, redirect_id: Any, *, owner: str) -> None:
    """``owner`` claimed it but lost its AMI link before sending: open again."""
    rid = parse_id(redirect_id)
    async with connection(db) as conn:
        await conn.execute(
            """UPDATE ami_redirects SET claimed_by = NULL, claimed_at = NULL
               WHERE id = $1 AND claimed_by = $2 AND done_at IS NULL""",
            rid,
            owner,
        )


async def expire_redirect(db: Db, redirect_id: Any, *, now: datetime) -> bool:
    """Nobody claimed it in time: True when it is now expired (False: claimed meanwhile)."""
    aware(now)
    rid = parse_id(redirect_id)
    async with connection(db) as conn:
        status = await conn.execute(
            """UPDATE ami_redirects SET outcome = 'expired', done_at = $2
               WHERE id = $1 AND claimed_by IS NULL AND done_at IS NULL""",
            rid,
            now,
        )
    return not status.endswith(" 0")


async def get_redirect(db: Db, redirect_id: Any) -> dict[str, Any] | None:
    rid = parse_id(redirect_id)
    if rid is None:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow("SELECT * FROM ami_redirects WHERE id = $1", rid)
    return None if row is None else _redirect(row)


async def purge_redirects(db: Db, *, before: datetime) -> int:
    """Relayed redirects made before ``before`` (their outcome is in the audit log); how many."""
    aware(before, "before")
    async with connection(db) as conn:
        status = await conn.execute("DELETE FROM ami_redirects WHERE created_at < $1", before)
    return int(status.split()[-1])
