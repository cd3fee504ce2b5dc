"""The payment process: the one place that sends a payment to the gateway, logs each gateway call
and decides the payment's status. It knows nothing of calls or HTTP.

:class:`PaymentProcess` is shared by the process (the flow, the API and the workers);
:class:`CallPayment` is one claimed payment, bound to its lease token and the clock: every
change a call makes to its payment goes through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import structlog

from ivrpay import store
from ivrpay.card.holder import CardData
from ivrpay.config import Settings
from ivrpay.gateway.results import Outcome
from ivrpay.payments import background, settle
from ivrpay.payments.journal import gateway_call_fields, log_gateway_call
from ivrpay.payments.rules import (
    TOO_MANY_ATTEMPTS,
    Decision,
    Next,
    Operation,
    PaymentStatus,
    decide,
    error_of,
    registration_of,
    result_of,
    unknown_decision,
)
from ivrpay.store.settlement import DueSettlement

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

# A database that is away (stopped, restarted, a connection killed): worth writing again.
DB_FAULTS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # shut down, restarting, connection killed
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # not accepting connections
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    OSError,
    TimeoutError,
)
# Everything a call may meet from the store besides a bug of ours.
FAULTS: tuple[type[BaseException], ...] = (store.StoreError, asyncpg.PostgresError, *DB_FAULTS)


class CancelRequested(Exception):
    """A cancel was recorded while the caller is in the IVR: the payment is now canceled."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ClaimOutcome:
    """A claim: ``call`` when this call holds the payment, else the ``reason`` it was refused."""

    call: CallPayment | None
    reason: str | None = None
    payment: dict[str, Any] | None = None


@dataclass
class PaymentProcess:
    """Charge / register / charge_and_register, settle, reconcile, retry a card storage.

    ``live_tokens``: the lease tokens of the calls in progress here (the lease renewer renews
    those only); ``tasks``: gateway work in flight (the service waits for it when stopping).
    """

    pool: Any
    gateway: Any
    settings: Settings
    clock: Callable[[], datetime] = _utcnow
    live_tokens: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # Writes retried after the database came back: the first is quick, then slower.
    write_backoff_s: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0, 2.0)

    # -- finding and claiming (the call) -----------------------------------------------------------
    async def find_by_code(
        self, code: str, *, now: datetime | None = None
    ) -> dict[str, Any] | None:
        return await store.find_by_code(self.pool, code, now=now or self.clock())

    async def find_for_transferrer(
        self, transferrer: str, *, now: datetime | None = None
    ) -> dict[str, Any] | None:
        """The one pending payment of the transferring device, if it is recent (else None)."""
        device = store.device_of(transferrer) if transferrer else ""
        if not device:
            return None
        now = now or self.clock()
        pending = await store.find_pending_by_device(self.pool, device, now=now)
        if len(pending) != 1:
            return None
        age = (now - pending[0]["created_at"]).total_seconds()
        return pending[0] if age <= self.settings.transferrer_max_age_s else None

    async def claim(
        self,
        payment: Mapping[str, Any],
        *,
        owner: str,
        uniqueid: str,
        channel: str,
        clock: Callable[[], datetime] | None = None,
    ) -> ClaimOutcome:
        """Claim the payment for a call; ``clock``: the call's "now" (else the process's)."""
        clock = clock or self.clock
        claim = await store.claim_payment(
            self.pool,
            payment["id"],
            owner=owner,
            now=clock(),
            lease_s=self.settings.lease_s,
            uniqueid=uniqueid,
            channel=channel,
            max_executions=self.settings.max_executions_per_payment,
        )
        if not claim.ok or claim.token is None:
            return ClaimOutcome(None, claim.reason, claim.payment)
        self.live_tokens.add(claim.token)
        call = CallPayment(self, dict(claim.payment or payment), claim.token, clock)
        return ClaimOutcome(call)

    # -- the API and the screen --------------------------------------------------------------------
    @property
    def settler(self) -> settle.Settler:
        s = self.settings
        return settle.Settler(
            self.pool,
            self.gateway,
            self.clock,
            # Two SearchTrades and two AlterTrans, each up to the gateway timeout.
            lease_s=s.gateway_timeout_s * 4 + 30,
            backoff_s=s.reconcile_backoff_s,
            reconcile_after_s=s.reconcile_after_s,
        )

    async def settle(self, payment_id: str, action: str, *, actor: str) -> dict[str, Any]:
        """Capture, void or refund a succeeded payment: the new snapshot, or SettleRefused."""
        return await self.settler.settle(payment_id, action, actor=actor)

    async def check_settlement(self, due: DueSettlement) -> str:
        """A settlement intent whose answer was lost, claimed by the checker: SearchTrade."""
        return await self.settler.check(due)

    # -- the workers -------------------------------------------------------------------------------
    async def reconcile(self, item: dict[str, Any]) -> background.ReconcileOutcome:
        """An unknown payment claimed by the reconciler: SearchTrade (SearchCard) decides."""
        return await background.reconcile(self.pool, self.gateway, item, self.clock)

    async def retry_registration(self, item: dict[str, Any]) -> background.RegistrationOutcome:
        """A pending card storage claimed by the retrier: TradedCard again."""
        return await background.retry_registration(self.pool, self.gateway, item, self.clock)

    # -- shared ------------------------------------------------------------------------------------
    async def log_call(self, outcome: Outcome, payment_id: Any, order_id: str | None) -> None:
        await log_gateway_call(
            self.pool, outcome, payment_id=payment_id, order_id=order_id, clock=self.clock
        )

    def call_log(self, outcome: Outcome, payment_id: Any, order_id: str | None) -> dict[str, Any]:
        """The log row of a gateway answer, to be written with the change it leads to."""
        return gateway_call_fields(
            outcome, payment_id=payment_id, order_id=order_id, clock=self.clock
        )

    async def write_durably(
        self, write: Callable[[], Awaitable[_T]], *, within_s: float
    ) -> tuple[bool, _T | None]:
        """``write()``, again with back-off while the database is away, for at most
        ``within_s``: ``(True, its result)``, or ``(False, None)`` when it never got through."""
        deadline = time.monotonic() + within_s
        tries = 0
        while True:
            try:
                return True, await write()
            except DB_FAULTS as exc:
                delay = self.write_backoff_s[min(tries, len(self.write_backoff_s) - 1)]
                tries += 1
                if time.monotonic() + delay > deadline:
                    log.warning("payment.write_deferred", error=type(exc).__name__, tries=tries)
                    return False, None
                log.info("payment.write_retry", error=type(exc).__name__, tries=tries)
                await asyncio.sleep(delay)


class CallPayment:
    """The payment a call holds: its snapshot, lease token and clock, and everything the call
    records of it (progress, executions, the gateway's answers, the end of the call)."""

    def __init__(
        self,
        process: PaymentProcess,
        payment: dict[str, Any],
        token: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.process = process
        self.clock = clock or process.clock
        self.payment = payment
        self.token: str | None = token
        self.call_executions = 0
        self.last_error: dict[str, Any] | None = None
        self.log = log.bind(payment_id=str(payment["id"]))

    # -- what the call reads -----------------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self.payment["id"])

    @property
    def operation(self) -> Operation:
        return Operation(self.payment["operation"])

    @property
    def register_only(self) -> bool:
        return self.operation is Operation.REGISTER

    @property
    def language(self) -> str:
        return str(self.payment["language"])

    @property
    def total(self) -> int:
        return int(self.payment["amount"] or 0) + int(self.payment["tax"] or 0)

    @property
    def status(self) -> PaymentStatus:
        return PaymentStatus(self.payment["status"])

    @property
    def registered(self) -> bool:
        return (self.payment.get("registration") or {}).get("status") == "succeeded"

    @property
    def callback(self) -> str:
        return str((self.payment.get("operator") or {}).get("callback") or "")

    @property
    def held(self) -> bool:
        """Whether the claim is still this call's to release."""
        return self.token is not None

    def executions_left(self) -> bool:
        """Another gateway execution allowed, per payment and per call (product.md, Limits)."""
        s = self.process.settings
        return self.call_executions < s.max_executions_per_call and self.payment_executions_left()

    def payment_executions_left(self) -> bool:
        done = len(self.payment.get("executions") or [])
        return done < self.process.settings.max_executions_per_payment

    # -- bookkeeping -------------------------------------------------------------------------------
    async def progress(self, step: str, attempts: Mapping[str, int]) -> None:
        """The step the caller is on (the screen shows it live). CancelRequested when a cancel
        was recorded meanwhile."""
        if self.token is None:
            return
        stored = self.payment.get("progress") or {}
        known = stored.get("attempts") or {}
        if step == stored.get("step") and all(known.get(k) == v for k, v in attempts.items()):
            return  # already written: the claim writes "amount"
        snap = await store.record_progress(
            self.process.pool,
            self.payment["id"],
            self.token,
            now=self.clock(),
            step=step,
            attempts=dict(attempts),
        )
        self.payment = snap
        if snap.get("cancel_requested") and snap.get("status") == PaymentStatus.IN_CALL:
            raise CancelRequested()

    async def start_attempt(self) -> str:
        """The attempt's OrderID, stored before EntryTran. TooManyAttempts / PaymentCanceled
        (the payment is now failed / canceled)."""
        assert self.token is not None
        p = self.process
        order_id = await store.start_execution(
            p.pool,
            self.payment["id"],
            self.token,
            now=self.clock(),
            max_per_payment=p.settings.max_executions_per_payment,
            max_per_call=p.settings.max_executions_per_call,
        )
        self.call_executions += 1
        return order_id

    async def end(
        self, status: PaymentStatus | None, error: Mapping[str, Any] | None, step: str | None
    ) -> None:
        """Release the claim: an ``in_call`` payment ends ``status``; None (the caller left) is
        abandoned, or failed with ``too_many_attempts`` once no execution is left (no call could
        take it up again). A database that is away is logged: the claim lapses and the sweep
        resolves it."""
        if self.token is None:
            return
        if status is None:
            status = PaymentStatus.ABANDONED
            if not self.payment_executions_left():
                status, error = PaymentStatus.FAILED, dict(TOO_MANY_ATTEMPTS)
        token, self.token = self.token, None
        p = self.process
        try:
            self.payment = await store.end_call(
                p.pool,
                self.payment["id"],
                token,
                now=self.clock(),
                status=PaymentStatus(status).value,
                error=error,
                step=step,
            )
        except (store.LeaseLost, store.InvalidTransition) as exc:
            self.log.warning("call.release_refused", error=type(exc).__name__)
        except FAULTS as exc:
            self.log.error("call.release_failed", error=type(exc).__name__)
        finally:
            # No longer renewed: a claim not released lapses and the sweep resolves it.
            p.live_tokens.discard(token)

    # -- the gateway -------------------------------------------------------------------------------
    async def execute(
        self,
        order_id: str,
        card: CardData,
        attempts: Mapping[str, int],
        fields: Collection[str],
    ) -> Decision:
        """Send the card: EntryTran, ``processing``, ExecTran (or SaveCard for ``register``),
        TradedCard for ``charge_and_register``; the card is wiped when the gateway has answered
        (only a rejected field is kept out, to be keyed again). PaymentCanceled when a cancel
        was recorded before ExecTran.

        Once ExecTran may have been sent, no fault of ours is an error: the gateway's answer is
        written with back-off while the database is away, and if it cannot be written within the
        call's lease the decision is UNKNOWN (the answer is still written in the background when
        the database is back; failing that the reconciler settles the payment by SearchTrade).
        """
        p, pay = self.process, self.payment
        gw = p.gateway
        register = self.operation is Operation.REGISTER
        try:
            entry = None
            kept: dict[str, str] | None = None
            logged: dict[str, Any] | None = None
            if not register:
                amount = None if pay["job"] == "CHECK" else pay["amount"]
                entry = await gw.open_transaction(order_id, pay["job"], amount, pay["tax"] or None)
                if not entry.ok:
                    await p.log_call(entry, pay["id"], order_id)
                    # ExecTran was never sent: nothing can have been charged.
                    card.wipe()
                    return await self._system_error(entry)
                # The AccessID/AccessPass and the log row go with the move to processing.
                kept = {"access_id": entry.access_id or "", "access_pass": entry.access_pass or ""}
                logged = p.call_log(entry, pay["id"], order_id)
            await self._to_processing(order_id, kept, logged)
        except BaseException:
            card.wipe()
            raise
        # From here ExecTran (SaveCard) may have been sent: any fault is an unknown outcome.
        try:
            registration: Outcome | None = None
            exec_log: dict[str, Any] | None = None  # written with the answer
            if entry is None:
                outcome = registration = await gw.register(pay["member_id"], card)
            else:
                executed = await gw.exec_tran(
                    order_id,
                    entry.access_id or "",
                    entry.access_pass or "",
                    card,
                    method=int(pay["method"] or 1),
                    pay_times=pay["pay_times"],
                )
                exec_log = p.call_log(executed, pay["id"], order_id)
                outcome = await gw.settle_exec(executed)
            stored = {"brand": card.brand, "last4": card.last4 or outcome.card_last4}
            decision = decide(outcome, attempts, fields, max_attempts=p.settings.attempts)
            wipe_after(card, decision)  # storing a charged card (TradedCard) needs no digits
            if outcome.ok and self.operation is Operation.CHARGE_AND_REGISTER:
                registration = await gw.store_traded_card(order_id, pay["member_id"])
            if registration is not None:
                if exec_log is not None:  # the log keeps the order of the requests
                    await store.record_gateway_call(p.pool, **exec_log)
                    exec_log = None
                await p.log_call(registration, pay["id"], order_id)
            return await self._record(order_id, outcome, decision, stored, registration, exec_log)
        except Exception as exc:
            card.wipe()
            self.log.error("payment.fault_after_send", error=type(exc).__name__, exc_info=True)
            return unknown_decision("a fault after the gateway was asked")

    async def _to_processing(
        self,
        order_id: str,
        entry: dict[str, str] | None = None,
        logged: dict[str, Any] | None = None,
    ) -> None:
        self.payment = await store.move_to_processing(
            self.process.pool,
            self.payment["id"],
            self.token,
            order_id=order_id,
            now=self.clock(),
            entry=entry,
            gateway_call=logged,
        )

    async def _record(
        self,
        order_id: str,
        outcome: Outcome,
        decision: Decision,
        card: dict[str, Any],
        registration: Outcome | None,
        logged: dict[str, Any] | None = None,
    ) -> Decision:
        """Write the gateway's answer to the payment (``card``: brand and last 4 only), and
        ``logged``, the answer's log row."""
        p = self.process
        reg = None
        if registration is not None and self.operation is not Operation.CHARGE:
            # The charge is done: a card storage that may still get through is retried later.
            retry = self.operation is Operation.CHARGE_AND_REGISTER and registration.retry_later
            reg = registration_of(registration, retry=retry)
        result = result_of(outcome) if outcome.ok else None
        self.last_error = decision.error
        token, pid = self.token, self.payment["id"]

        async def write(status: PaymentStatus) -> dict[str, Any]:
            return await store.record_gateway_result(
                p.pool,
                pid,
                token,
                order_id=order_id,
                status=status.value,
                now=self.clock(),
                error=decision.error,
                result=result,
                card=card if card["last4"] else None,
                registration=reg,
                gateway_call=logged,
            )

        # Within the lease: the renewer renews it every lease_s / 3 while the database answers.
        ok, snap = await p.write_durably(
            lambda: write(decision.status), within_s=p.settings.lease_s * 2 / 3
        )
        if ok and snap is not None:
            self.payment = snap
            return decision
        # The caller cannot wait longer. The answer is kept (no card data: brand, last 4 and the
        # gateway's codes) and written when the database is back; the call ends UNKNOWN.
        final = (
            PaymentStatus.FAILED if decision.status is PaymentStatus.IN_CALL else decision.status
        )
        task = asyncio.create_task(
            self._write_later(write, token, final, order_id, decision, result)
        )
        p.tasks.add(task)
        task.add_done_callback(p.tasks.discard)
        return unknown_decision("the gateway's answer could not be recorded yet")

    async def _write_later(
        self,
        write: Callable[[PaymentStatus], Awaitable[dict[str, Any]]],
        token: str | None,
        status: PaymentStatus,
        order_id: str,
        decision: Decision,
        result: Mapping[str, Any] | None,
    ) -> None:
        """The database was away when the gateway answered: write the answer once it is back. The
        call is over by then: the claim is released; when the lease lapsed first and the sweep
        made the payment unknown, the answer is recorded as that payment's reconciliation."""
        p, pid = self.process, self.payment["id"]
        horizon = p.settings.retry_horizon_s
        try:
            ok, _ = await p.write_durably(lambda: write(status), within_s=horizon)
            if ok and token is not None:
                await p.write_durably(
                    lambda: store.end_call(p.pool, pid, token, now=self.clock(), step="done"),
                    within_s=horizon,
                )
        except (store.LeaseLost, store.InvalidTransition):
            if decision.status is PaymentStatus.UNKNOWN:
                return  # the reconciler asks SearchTrade
            try:
                await p.write_durably(
                    lambda: store.record_reconciliation(
                        p.pool,
                        pid,
                        now=self.clock(),
                        status="succeeded" if status is PaymentStatus.SUCCEEDED else "failed",
                        backoff_s=p.settings.reconcile_backoff_s,
                        horizon_s=horizon,
                        error=decision.error,
                        result=result,
                        order_id=order_id,
                    ),
                    within_s=horizon,
                )
            except store.InvalidTransition:
                # Final already: the first write got through though its answer was lost (the
                # connection died after COMMIT), or the reconciler settled it first.
                self.log.info("payment.deferred_write_already_final")
        except Exception:
            self.log.exception("payment.deferred_write_failed")
        finally:
            if token is not None:
                p.live_tokens.discard(token)

    async def _system_error(self, outcome: Outcome) -> Decision:
        """EntryTran refused or unreachable: nothing was charged; the payment ends failed."""
        error = {**error_of(outcome), "category": "system"}
        self.last_error = error
        await self._end_failed(error)
        return Decision(PaymentStatus.FAILED, Next.ERROR, error)

    async def _end_failed(self, error: Mapping[str, Any]) -> None:
        assert self.token is not None
        token, self.token = self.token, None
        try:
            self.payment = await store.end_call(
                self.process.pool,
                self.payment["id"],
                token,
                now=self.clock(),
                status=PaymentStatus.FAILED.value,
                error=error,
                step="done",
            )
        finally:
            self.process.live_tokens.discard(token)


def wipe_after(card: CardData, decision: Decision) -> None:
    """The gateway has answered: only a rejected field is kept out of the holder, to be keyed
    again; any other answer ends the use of this card."""
    if decision.field == "card_number":
        card.wipe_number()
    elif decision.field == "expiry":
        card.wipe_expiry()
    elif decision.field == "security_code":
        card.wipe_security_code()
    else:
        card.wipe()
