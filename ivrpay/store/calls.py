"""The call flow's side of a payment: find, claim, lease, progress, executions, results.

A call claims a payment with one conditional UPDATE and receives a lease *token*; every later
change it makes is conditioned on that token and on the call not having ended, so a call whose
lease lapsed (and was resolved by another process) gets :class:`LeaseLost` instead of writing.
Card data never comes here: a card is ``{brand, last4}``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivrpay.store._core import (
    EXECUTION_ROWS,
    LEASE_CLEARED,
    Db,
    Fragment,
    Raw,
    _Args,
    aware,
    card_fields,
    change,
    change_or_explain,
    close_unsent_executions,
    connection,
    error_value,
    finish_execution,
    get_snapshot,
    lock_existing,
    mask,
    parse_id,
    payment_pk,
    registration_sets,
    registration_value,
    row_snapshot,
    seconds,
    snapshots,
    transaction,
    with_executions,
)
from ivrpay.store.errors import (
    Conflict,
    InvalidTransition,
    LeaseLost,
    PaymentCanceled,
    TakenBack,
    TooManyAttempts,
)
from ivrpay.store.payments import SETTLEMENT_SQL, succeeded_sets
from ivrpay.store.states import CLAIMABLE_STATUSES, STEPS, device_of


@dataclass(frozen=True)
class Claim:
    """The answer to a claim: ``ok`` with a ``token``, or the ``reason`` it was refused."""

    ok: bool
    reason: str | None
    payment: dict[str, Any] | None
    token: str | None = None


def _token(token: Any) -> uuid.UUID:
    tok = parse_id(token)
    if tok is None:
        raise LeaseLost("not a lease token")
    return tok


async def find_by_code(db: Db, code: str, *, now: datetime) -> dict[str, Any] | None:
    """The payment a caller's code points at, whatever its status (while the code is reserved)."""
    aware(now)
    if not isinstance(code, str) or not re.fullmatch(r"\d{6}", code):
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"""SELECT p.*, ex.* FROM payment_codes c JOIN payments p ON p.id = c.payment_id
                {with_executions()} WHERE c.code = $1 AND c.reserved_until > $2""",
            code,
            now,
        )
        return None if row is None else row_snapshot(row)


async def find_pending_by_device(
    db: Db, device: str, *, now: datetime, statuses: tuple[str, ...] = ("pending",)
) -> list[dict[str, Any]]:
    """Unexpired payments registered with a callback on ``device`` (channel suffix stripped)."""
    aware(now)
    dev = device_of(device or "")
    if not dev:
        return []
    async with connection(db) as conn:
        rows = await conn.fetch(
            """SELECT * FROM payments
               WHERE operator_device = $1 AND status = ANY($2::text[]) AND expires_at > $3
               ORDER BY created_at DESC LIMIT 20""",
            dev,
            list(statuses),
            now,
        )
        return await snapshots(conn, rows)


async def claim_payment(
    db: Db,
    payment_id: Any,
    *,
    owner: str,
    now: datetime,
    lease_s: float,
    uniqueid: str | None = None,
    channel: str | None = None,
    max_executions: int | None = None,
) -> Claim:
    """Atomically take a payment for a call (pending/failed/abandoned → in_call, unexpired)."""
    aware(now)
    pid = parse_id(payment_id)
    if pid is None:
        return Claim(False, "not_found", None)
    token = uuid.uuid4()

    def where(a: _Args) -> str:
        cond = f"expires_at > {a(now)}"
        if max_executions is not None:
            cond += (
                " AND (SELECT count(*) FROM executions e WHERE e.payment_id = payments.id)"
                f" < {a(int(max_executions))}"
            )
        return cond

    # One statement (update, event, notify): it commits on its own.
    async with connection(db) as conn:
        snap = await change(
            conn,
            pid,
            now=now,
            kind="claimed",
            to_status="in_call",
            from_statuses=sorted(CLAIMABLE_STATUSES),
            where=where,
            sets={
                "lease_owner": owner,
                "lease_token": token,
                "lease_expires_at": now + seconds(lease_s),
                "call_uniqueid": uniqueid,
                "call_channel": channel,
                "call_started_at": now,
                "call_ended_at": None,
                "call_executions": 0,
                "cancel_requested": False,
                "taken_back": None,
                "current_order_id": None,
                "error": None,
                "card_brand": None,
                "card_last4": None,
                "progress_step": "amount",
                "progress_attempts": {},
            },
            data={"uniqueid": uniqueid},
        )
        if snap is not None:
            return Claim(True, None, snap, str(token))
        current = await get_snapshot(conn, pid)
        if current is None:
            return Claim(False, "not_found", None)
        status = current["status"]
        if status in ("in_call", "processing"):
            reason = "in_use"
        elif status in CLAIMABLE_STATUSES and current["expires_at"] <= now:
            reason = "expired"
        elif status in CLAIMABLE_STATUSES:
            reason = "too_many_attempts"
        else:
            reason = status  # succeeded, canceled, expired, unknown
        return Claim(False, reason, current)


async def renew_leases(
    db: Db, owner: str, *, now: datetime, lease_s: float, tokens: Iterable[Any]
) -> int:
    """Extend the leases of ``tokens``, the claims of ``owner`` (this process) whose calls are in
    progress right now; how many. Only those: a claim whose release failed (the database was
    briefly down) must lapse, so that the sweep resolves it."""
    aware(now)
    live = [t for t in (parse_id(tok) for tok in tokens) if t is not None]
    if not live:
        return 0
    async with connection(db) as conn:
        status = await conn.execute(
            """UPDATE payments SET lease_expires_at = $2
               WHERE lease_owner = $1 AND lease_token = ANY($3::uuid[])
                 AND call_ended_at IS NULL""",
            owner,
            now + seconds(lease_s),
            live,
        )
    return int(status.split()[-1])


def _attempts_value(attempts: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in attempts.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z_]{1,32}", key):
            raise ValueError("attempt counters are keyed by field name")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
            raise ValueError("attempt counters are small non-negative integers")
        out[key] = value
    return out


def _check_step(step: str | None) -> None:
    if step is not None and step not in STEPS:
        raise ValueError(f"unknown progress step {step!r}")


async def record_progress(
    db: Db,
    payment_id: Any,
    token: Any,
    *,
    now: datetime,
    step: str | None = None,
    attempts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The caller's step and attempt counters (merged per field); returns the snapshot."""
    aware(now)
    _check_step(step)
    pid, tok = payment_pk(payment_id), _token(token)
    sets: dict[str, Any] = {}
    if step is not None:
        sets["progress_step"] = step
    if attempts:
        value = _attempts_value(attempts)
        sets["progress_attempts"] = lambda a: f"progress_attempts || {a(value)}::jsonb"
    data = {"step": step, "attempts": dict(attempts or {})}
    async with connection(db) as conn:  # one statement
        return await change_or_explain(
            conn, pid, now=now, kind="progress", sets=sets, token=tok, data=data
        )


async def _held(conn: Any, pid: uuid.UUID, tok: uuid.UUID) -> Any:
    """The payment row, locked, if this call still holds it (LeaseLost / NotFound otherwise)."""
    row = await lock_existing(conn, pid)
    if row["lease_token"] != tok or row["call_ended_at"] is not None:
        raise LeaseLost(f"payment {pid} is no longer held by this call")
    return row


async def _cancel_now(conn: Any, pid: uuid.UUID, tok: uuid.UUID, now: datetime) -> dict[str, Any]:
    await close_unsent_executions(conn, pid, "canceled", None, now)
    snap = await change(
        conn, pid, now=now, kind="canceled", to_status="canceled", token=tok, data={"by": "api"}
    )
    assert snap is not None
    return snap


_NEXT_N = "(SELECT coalesce(max(n), 0) FROM executions WHERE payment_id = payments.id) + 1"


async def _start_at_once(
    conn: Any,
    pid: uuid.UUID,
    tok: uuid.UUID,
    now: datetime,
    limit: int,
    max_per_call: int,
) -> str | None:
    """The next attempt in one statement when nothing stands in its way (else None, no write)."""

    def where(a: _Args) -> str:
        return (
            f"taken_back IS NULL AND NOT cancel_requested AND call_executions < {a(max_per_call)}"
            f" AND {_NEXT_N} <= {a(limit)}"
        )

    def insert(a: _Args) -> str:
        return (
            "INSERT INTO executions (payment_id, n, order_id, started_at, call_uniqueid) "
            f"SELECT p.id, right(p.current_order_id, 2)::smallint, p.current_order_id, "
            f"{a(now)}::timestamptz, p.call_uniqueid FROM p "
            "RETURNING n, order_id, started_at, outcome, error"
        )

    sets: dict[str, Any] = {
        "call_executions": Raw("call_executions + 1"),
        "current_order_id": Raw(f"order_id || '-' || lpad(({_NEXT_N})::text, 2, '0')"),
    }
    snap = await change(
        conn,
        pid,
        now=now,
        kind="execution_started",
        from_statuses=["in_call"],
        token=tok,
        where=where,
        sets=sets,
        also=[insert],
        executions=lambda a: f"{EXECUTION_ROWS} UNION ALL SELECT * FROM a0",
        events=[
            ("execution_started", Raw("jsonb_build_object('order_id', p.current_order_id)"), None)
        ],
    )
    return None if snap is None else str(snap["executions"][-1]["order_id"])


def _gateway_call_insert(call: Mapping[str, Any]) -> Fragment:
    """The gateway-call log row (:func:`record_gateway_call`'s fields) as a statement of a
    change: it is written whether or not the change matched."""
    values = _gateway_call_values(**call)

    def insert(a: _Args) -> str:
        binds = ", ".join(a(v) for v in values)
        return f"INSERT INTO gateway_calls ({_GATEWAY_CALL_COLUMNS}) VALUES ({binds})"

    return insert


async def start_execution(
    db: Db,
    payment_id: Any,
    token: Any,
    *,
    now: datetime,
    max_per_payment: int,
    max_per_call: int,
) -> str:
    """Allocate and store the next attempt OrderID ``<order_id>-NN`` (before EntryTran).

    Raises TooManyAttempts (payment now ``failed``) when a limit is reached, PaymentCanceled
    (payment now ``canceled``) when a cancel was requested, TakenBack (nothing changed) once the
    operator took the caller back.
    """
    aware(now)
    pid, tok = payment_pk(payment_id), _token(token)
    limit = min(max_per_payment, 99)
    async with connection(db) as conn:
        # The usual case in one statement; anything else (a limit, a cancel, a take-back, a lost
        # lease) is sorted out below, where nothing was written.
        started = await _start_at_once(conn, pid, tok, now, limit, max_per_call)
    if started is not None:
        return started
    failure: Exception | None = None
    order_id = ""
    async with transaction(db) as conn:
        row = await _held(conn, pid, tok)
        if row["status"] != "in_call":
            raise InvalidTransition(row["status"], "processing")
        if row["taken_back"] is not None:
            raise TakenBack(f"payment {pid} was taken back by the operator")
        if row["cancel_requested"]:
            failure = PaymentCanceled(await _cancel_now(conn, pid, tok, now))
        else:
            done = await conn.fetchval(
                "SELECT coalesce(max(n), 0) FROM executions WHERE payment_id = $1", pid
            )
            if done >= min(max_per_payment, 99) or row["call_executions"] >= max_per_call:
                snap = await change(
                    conn,
                    pid,
                    now=now,
                    kind="failed",
                    to_status="failed",
                    token=tok,
                    sets={
                        "error": {
                            "code": "too_many_attempts",
                            "category": "declined",
                            "message": "the gateway execution limit was reached",
                        },
                    },
                )
                assert snap is not None
                failure = TooManyAttempts(snap)
            else:
                n = done + 1
                order_id = f"{row['order_id']}-{n:02d}"
                await conn.execute(
                    """INSERT INTO executions (payment_id, n, order_id, started_at, call_uniqueid)
                       VALUES ($1, $2, $3, $4, $5)""",
                    pid,
                    n,
                    order_id,
                    now,
                    row["call_uniqueid"],
                )
                await change(
                    conn,
                    pid,
                    now=now,
                    kind="execution_started",
                    token=tok,
                    sets={
                        "call_executions": row["call_executions"] + 1,
                        "current_order_id": order_id,
                    },
                    data={"order_id": order_id},
                )
    # Raised after the commit: the payment's new status must stick.
    if failure is not None:
        raise failure
    return order_id


async def record_entry(
    db: Db,
    payment_id: Any,
    token: Any,
    *,
    order_id: str,
    access_id: str,
    access_pass: str,
    now: datetime,
) -> None:
    """EntryTran answered: keep the attempt's AccessID/AccessPass (for ExecTran and AlterTran)."""
    aware(now)
    pid, tok = payment_pk(payment_id), _token(token)
    async with transaction(db) as conn:
        await _held(conn, pid, tok)
        status = await conn.execute(
            """UPDATE executions SET access_id = $3, access_pass = $4, entered_at = $5
               WHERE payment_id = $1 AND order_id = $2""",
            pid,
            order_id,
            access_id,
            access_pass,
            now,
        )
        if status.endswith(" 0"):
            raise Conflict("unknown_execution", f"no execution {order_id} for this payment")


async def move_to_processing(
    db: Db,
    payment_id: Any,
    token: Any,
    *,
    order_id: str,
    now: datetime,
    entry: Mapping[str, str] | None = None,
    gateway_call: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """in_call → processing: from here ExecTran may be sent. PaymentCanceled if cancel requested;
    TakenBack (nothing changed) once the operator took the caller back.

    ``entry`` ``{access_id, access_pass}``: EntryTran's answer, kept first as
    :func:`record_entry` does; ``gateway_call``: its log row (:func:`record_gateway_call`'s
    fields), written in any case. The usual case is one statement.
    """
    aware(now)
    pid, tok = payment_pk(payment_id), _token(token)

    def mark_sent(a: _Args) -> str:
        kept = ""
        if entry is not None:
            kept = (
                f", access_id = {a(entry['access_id'])}, access_pass = {a(entry['access_pass'])},"
                f" entered_at = {a(now)}"
            )
        return (
            f"UPDATE executions SET sent_at = {a(now)}{kept}"
            f" WHERE payment_id = (SELECT id FROM p) AND order_id = {a(order_id)}"
        )

    def open_attempt(a: _Args) -> str:
        return (
            "taken_back IS NULL AND NOT cancel_requested AND EXISTS (SELECT 1 FROM executions e"
            f" WHERE e.payment_id = payments.id AND e.order_id = {a(order_id)}"
            " AND e.outcome IS NULL)"
        )

    also: list[Fragment] = [mark_sent]
    if gateway_call is not None:
        also.append(_gateway_call_insert(gateway_call))
    async with connection(db) as conn:
        snap = await change(
            conn,
            pid,
            now=now,
            kind="processing",
            to_status="processing",
            from_statuses=["in_call"],
            token=tok,
            where=open_attempt,
            sets={"progress_step": "processing", "current_order_id": order_id},
            data={"order_id": order_id},
            also=also,
        )
    if snap is not None:
        return snap
    # Something stands in the way (a cancel, a take-back, a lost lease): the checks one by one.
    if entry is not None:
        await record_entry(
            db,
            pid,
            tok,
            order_id=order_id,
            access_id=entry["access_id"],
            access_pass=entry["access_pass"],
            now=now,
        )
    canceled: dict[str, Any] | None = None
    async with transaction(db) as conn:
        row = await _held(conn, pid, tok)
        if row["status"] != "in_call":
            raise InvalidTransition(row["status"], "processing")
        if row["taken_back"] is not None:
            raise TakenBack(f"payment {pid} was taken back by the operator")
        if row["cancel_requested"]:
            canceled = await _cancel_now(conn, pid, tok, now)
        else:
            status = await conn.execute(
                """UPDATE executions SET sent_at = $3
                   WHERE payment_id = $1 AND order_id = $2 AND outcome IS NULL""",
                pid,
                order_id,
                now,
            )
            if status.endswith(" 0"):
                raise Conflict("unknown_execution", f"no open execution {order_id}")
            snap = await change(
                conn,
                pid,
                now=now,
                kind="processing",
                to_status="processing",
                token=tok,
                sets={"progress_step": "processing", "current_order_id": order_id},
                data={"order_id": order_id},
            )
            assert snap is not None
            return snap
    raise PaymentCanceled(canceled)


_RESULT_STATUSES = ("succeeded", "in_call", "failed", "unknown")


def _outcome_sets(
    status: str,
    row: Mapping[str, Any] | Raw,
    now: datetime,
    error: Mapping[str, Any] | None,
    result: Mapping[str, Any] | None,
    card: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Columns to set for a gateway outcome, and the error value (None on success)."""
    sets: dict[str, Any] = {**card_fields(card)}
    if status == "succeeded":
        sets.update(succeeded_sets(row, result))
        return sets, None
    if status == "unknown" and error is None:
        error = {"code": "unknown", "category": "unknown", "message": "outcome not confirmed"}
    if error is None:
        raise ValueError(f"an error is required for status {status}")
    err = error_value(error)
    sets["error"] = err
    if status == "unknown":
        sets.update(unknown_since=now, reconcile_next_at=now, reconcile_attempts=0)
    return sets, err


async def record_gateway_result(
    db: Db,
    payment_id: Any,
    token: Any,
    *,
    order_id: str,
    status: str,
    now: datetime,
    error: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
    registration: Mapping[str, Any] | None = None,
    gateway_call: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The gateway's answer to this attempt: processing → succeeded | in_call | failed | unknown.
    ``gateway_call``: the answer's log row (:func:`record_gateway_call`'s fields), written in any
    case. The usual case is one statement (in a transaction when a webhook row may follow)."""
    aware(now)
    if status not in _RESULT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(_RESULT_STATUSES)}")
    if registration is not None and registration.get("status") == "pending":
        if status != "succeeded":
            raise ValueError("only a succeeded payment has a registration to retry")
    pid, tok = payment_pk(payment_id), _token(token)
    sets, err = _outcome_sets(status, SETTLEMENT_SQL, now, error, result, card)
    if registration is not None:
        sets.update(registration_sets(registration_value(registration), now))
    sets["progress_step"] = "result"
    outcome = "succeeded" if err is None else err["category"]

    def finish(a: _Args) -> str:
        return (
            f"UPDATE executions SET outcome = {a(outcome)}, error = {a(err)}::jsonb,"
            f" finished_at = {a(now)} WHERE payment_id = (SELECT id FROM p)"
            f" AND order_id = {a(order_id)}"
        )

    def executions(a: _Args) -> str:
        mine = f"order_id = {a(order_id)}"
        return (
            f"SELECT n, order_id, started_at, CASE WHEN {mine} THEN {a(outcome)} ELSE outcome END"
            f" AS outcome, CASE WHEN {mine} THEN {a(err)}::jsonb ELSE error END AS error"
            " FROM executions WHERE payment_id = p.id"
        )

    also: list[Fragment] = [finish]
    if gateway_call is not None:
        also.append(_gateway_call_insert(gateway_call))
    async with connection(db) as conn:
        snap = await change(
            conn,
            pid,
            now=now,
            kind="gateway_result",
            to_status=status,
            from_statuses=["processing"],
            token=tok,
            sets=sets,
            data={"order_id": order_id, "outcome": outcome, "error": err},
            also=also,
            executions=executions,
        )
    if snap is not None:
        return snap
    async with transaction(db) as conn:
        row = await _held(conn, pid, tok)
        if row["status"] != "processing":
            raise InvalidTransition(row["status"], status)
        sets, err = _outcome_sets(status, row, now, error, result, card)
        if registration is not None:
            sets.update(registration_sets(registration_value(registration), now))
        sets["progress_step"] = "result"
        outcome = "succeeded" if err is None else err["category"]
        await finish_execution(conn, pid, order_id, outcome, err, now)
        return await change_or_explain(
            conn,
            pid,
            now=now,
            kind="gateway_result",
            to_status=status,
            from_statuses=["processing"],
            token=tok,
            sets=sets,
            data={"order_id": order_id, "outcome": outcome, "error": err},
        )


_CALL_END_STATUSES = ("abandoned", "failed", "canceled")
_PAST_THE_CALL = "status NOT IN ('in_call', 'processing')"


async def end_call(
    db: Db,
    payment_id: Any,
    token: Any,
    *,
    now: datetime,
    status: str | None = None,
    error: Mapping[str, Any] | None = None,
    step: str | None = None,
) -> dict[str, Any]:
    """The call is over: release the claim; an ``in_call`` payment ends ``status``.

    ``status`` defaults to ``abandoned``; a cancel requested during the call wins over abandoned
    or failed. A payment already past the call (succeeded, failed, unknown, canceled) keeps its
    status whatever ``status`` says, and the claim is released. ``processing`` refuses
    (InvalidTransition): the gateway's answer must be recorded first.
    """
    aware(now)
    _check_step(step)
    if status is not None and status not in (*_CALL_END_STATUSES, "succeeded", "unknown"):
        raise ValueError(f"a call cannot end a payment {status}")
    pid, tok = payment_pk(payment_id), _token(token)
    sets: dict[str, Any] = {"call_ended_at": now, **LEASE_CLEARED}
    if step is not None:
        sets["progress_step"] = step
    async with connection(db) as conn:
        # Already past the call (succeeded, failed, unknown, canceled): only the claim to release,
        # in one statement.
        snap = await change(
            conn, pid, now=now, kind="call_ended", token=tok, sets=sets, where=_PAST_THE_CALL
        )
    if snap is not None:
        return snap
    async with transaction(db) as conn:
        row = await _held(conn, pid, tok)
        current = row["status"]
        if current == "in_call":
            target = status or "abandoned"
            if target not in _CALL_END_STATUSES:
                raise InvalidTransition(current, target)
            if row["cancel_requested"]:
                target = "canceled"
            err = error_value(error)
            if err is not None:
                sets["error"] = err
            await close_unsent_executions(conn, pid, err["category"] if err else target, err, now)
            snap = await change(
                conn, pid, now=now, kind="call_ended", to_status=target, token=tok, sets=sets
            )
        elif current == "processing":
            raise InvalidTransition(current, status or "abandoned")
        else:
            # Already past the call (succeeded, failed, unknown, canceled): the requested status
            # is moot, but the claim must still be released.
            snap = await change(conn, pid, now=now, kind="call_ended", token=tok, sets=sets)
        assert snap is not None
        return snap


async def mark_needs_review(
    db: Db, payment_id: Any, *, now: datetime, reason: str
) -> dict[str, Any]:
    """Flag a payment for an administrator (stops automatic reconciliation)."""
    aware(now)
    pid = payment_pk(payment_id)
    async with transaction(db) as conn:
        return await change_or_explain(
            conn,
            pid,
            now=now,
            kind="needs_review",
            sets={"needs_review": True, "review_reason": mask(reason), "reconcile_next_at": None},
            data={"reason": mask(reason)},
        )


_GATEWAY_CALL_COLUMNS = (
    "payment_id, order_id, endpoint, started_at, duration_ms, http_status, err_code, err_info,"
    " outcome, error"
)


def _gateway_call_values(
    *,
    endpoint: str,
    started_at: datetime,
    duration_ms: int,
    payment_id: Any = None,
    order_id: str | None = None,
    http_status: int | None = None,
    err_code: str | None = None,
    err_info: str | None = None,
    outcome: str | None = None,
    error: str | None = None,
) -> list[Any]:
    aware(started_at, "started_at")
    return [
        parse_id(payment_id) if payment_id is not None else None,
        mask(order_id, 40),
        mask(endpoint, 60),
        started_at,
        int(duration_ms),
        http_status,
        mask(err_code, 200),
        mask(err_info, 200),
        mask(outcome, 40),
        mask(error),
    ]


async def record_gateway_call(
    db: Db,
    *,
    endpoint: str,
    started_at: datetime,
    duration_ms: int,
    payment_id: Any = None,
    order_id: str | None = None,
    http_status: int | None = None,
    err_code: str | None = None,
    err_info: str | None = None,
    outcome: str | None = None,
    error: str | None = None,
) -> None:
    """One request to the gateway (never its body): endpoint, codes, timing; text masked."""
    values = _gateway_call_values(
        endpoint=endpoint,
        started_at=started_at,
        duration_ms=duration_ms,
        payment_id=payment_id,
        order_id=order_id,
        http_status=http_status,
        err_code=err_code,
        err_info=err_info,
        outcome=outcome,
        error=error,
    )
    async with connection(db) as conn:
        await conn.execute(
            f"INSERT INTO gateway_calls ({_GATEWAY_CALL_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            *values,
        )


async def list_gateway_calls(db: Db, payment_id: Any) -> list[dict[str, Any]]:
    pid = parse_id(payment_id)
    if pid is None:
        return []
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT * FROM gateway_calls WHERE payment_id = $1 ORDER BY id", pid
        )
    return [{**dict(r), "payment_id": str(r["payment_id"])} for r in rows]
