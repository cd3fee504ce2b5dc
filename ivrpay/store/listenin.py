"""Listen-in: the operator starts the card entry and listens on a spy leg (issue 14).

The payment records ``listen_in {by, at, operator_channel, caller_channel, process}`` with one
conditional update while it is still ``pending`` (no call has claimed it: the caller is with the
operator); the AMI Redirect then moves the caller into the IVR, whose call claims the payment as
after a transfer. A Redirect that failed clears the record again, so the operator can retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ivrpay.store._core import Db, aware, change, lock_existing, mask, payment_pk, transaction
from ivrpay.store.errors import Conflict


def _instant(now: datetime) -> str:
    return now.astimezone(UTC).isoformat()


_CONFLICTS = {
    "not_listen_in": "the payment was not registered for listen-in",
    "not_pending": "the payment is not waiting for its caller",
    "already_listening": "the listen-in has started already",
}


def listen_in_conflict(snapshot: Mapping[str, Any]) -> str | None:
    """Why the payment's card entry cannot be started by listen-in now (a Conflict code), or
    None; pure, on a snapshot or the payment's row (the same three columns): :func:`mark_listen_in`
    asks it again of the locked row."""
    if not (snapshot.get("operator") or {}).get("listen_in"):
        return "not_listen_in"
    if snapshot["status"] != "pending":
        return "not_pending"
    if snapshot.get("listen_in") is not None:
        return "already_listening"
    return None


async def mark_listen_in(
    db: Db,
    payment_id: Any,
    *,
    by: str,
    operator_channel: str,
    caller_channel: str,
    now: datetime,
    dtmf_mode: str = "",
    mute: bool = False,
) -> dict[str, Any]:
    """Record the start of a listen-in: the new snapshot (``mute``: the caller's keys are
    tones, the operator's leg is muted while a card field is keyed). Conflict ``not_listen_in``,
    ``not_pending`` (a call has it, or it ended), ``already_listening``; NotFound."""
    aware(now)
    pid = payment_pk(payment_id)
    value = {
        "by": mask(by, 200),
        "at": _instant(now),
        "operator_channel": mask(operator_channel, 200),
        "caller_channel": mask(caller_channel, 200),
        "process": None,
        "dtmf_mode": mask(dtmf_mode, 20),
        "mute": mute,
        "muted": False,
    }
    async with transaction(db) as conn:
        row = await lock_existing(conn, pid)
        code = listen_in_conflict(row)
        if code is not None:
            raise Conflict(code, _CONFLICTS[code])
        snap = await change(
            conn,
            pid,
            now=now,
            kind="listen_in",
            from_statuses=["pending"],
            where="listen_in IS NULL",
            sets={"listen_in": value},
            data={"by": value["by"]},
        )
        assert snap is not None  # the row is locked and was checked above
        return snap


async def confirm_listen_in(
    db: Db, payment_id: Any, *, at: str, process: str, now: datetime
) -> dict[str, Any] | None:
    """The Redirect was sent by ``process`` (None: the record changed meanwhile)."""
    aware(now)
    async with transaction(db) as conn:
        return await change(
            conn,
            payment_pk(payment_id),
            now=now,
            kind="listen_in_sent",
            where=lambda a: f"listen_in->>'at' = {a(at)}",
            sets={"listen_in": lambda a: f"listen_in || {a({'process': mask(process, 200)})}"},
            data={"process": mask(process, 200)},
        )


async def clear_listen_in(
    db: Db, payment_id: Any, *, at: str, now: datetime, reason: str
) -> dict[str, Any] | None:
    """The Redirect failed: the payment waits as before (None: it changed meanwhile)."""
    aware(now)
    async with transaction(db) as conn:
        return await change(
            conn,
            payment_pk(payment_id),
            now=now,
            kind="listen_in_failed",
            where=lambda a: f"listen_in->>'at' = {a(at)} AND status = 'pending'",
            sets={"listen_in": None},
            data={"reason": mask(reason, 200)},
        )


async def set_listen_in_muted(
    db: Db, payment_id: Any, *, muted: bool, now: datetime
) -> dict[str, Any] | None:
    """The operator's leg was muted (a card field is being keyed) or the mute lifted: on the
    record, as an event (the screen's live view, the audit trail of every mute)."""
    aware(now)
    async with transaction(db) as conn:
        return await change(
            conn,
            payment_pk(payment_id),
            now=now,
            kind="listen_in_muted" if muted else "listen_in_unmuted",
            where="listen_in IS NOT NULL",
            sets={"listen_in": lambda a: f"listen_in || {a({'muted': muted})}"},
        )
