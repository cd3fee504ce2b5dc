"""Capture, void and refund (AlterTran) of a succeeded payment, safe across processes.

Each action is an intent in PostgreSQL (:mod:`ivrpay.store.settlement`), recorded and claimed
before anything is sent, so two processes, two screens or a retried request never send two
AlterTrans for one action. The holder looks the order up first (SearchTrade), sends one AlterTran
when the order still needs it, and records the answer; a lost answer is looked up again at once,
and failing that the intent stays ``unknown`` until SearchTrade settles it (the request's retry,
or the background checker: :func:`check`). Every SearchTrade and AlterTran is in the gateway-call
log.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from ivrpay import store
from ivrpay.gateway.results import Outcome
from ivrpay.payments.journal import log_gateway_call
from ivrpay.payments.rules import error_of
from ivrpay.store import settlement as intents

log = structlog.get_logger(__name__)

SETTLEMENT_ACTIONS = {"capture": "captured", "void": "voided", "refund": "refunded"}


class SettleRefused(Exception):
    """A settlement that did not happen. ``reason``: "not_found" | "not_settleable" |
    "no_gateway" | "in_progress" | "gateway_unknown" | "gateway_busy" | "gateway_refused";
    ``gateway_errors``: the gateway's ErrInfo codes."""

    def __init__(self, reason: str, message: str, gateway_errors: list[str] | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.gateway_errors = gateway_errors or []


@dataclass(frozen=True)
class Settler:
    """The settlement side of the payment process. ``lease_s``: how long a claim of an intent
    holds (longer than two lookups and two AlterTrans can take); ``backoff_s``: the checker's
    pauses between looks at a lost answer; ``reconcile_after_s``: how old a send must be before
    an order found unchanged is trusted as "not done"."""

    db: Any
    gateway: Any
    clock: Callable[[], datetime]
    lease_s: float
    backoff_s: Sequence[float]
    reconcile_after_s: float

    async def settle(self, payment_id: str, action: str, *, actor: str) -> dict[str, Any]:
        """Capture (SALES of an AUTH), void or refund: the new snapshot, or SettleRefused."""
        if action not in SETTLEMENT_ACTIONS:
            raise ValueError(f"unknown settlement action {action!r}")
        snapshot = await store.get_payment(self.db, payment_id)
        if snapshot is None:
            raise SettleRefused("not_found", "No such payment.")
        verdict = store.settlement_action(snapshot, action)
        if verdict == "already":
            return snapshot
        if verdict != "ok":
            raise _not_settleable(snapshot, action)
        if self.gateway is None:
            raise SettleRefused("no_gateway", "No payment gateway is configured.")
        token = secrets.token_hex(16)
        claim = await intents.claim_settlement(
            self.db,
            payment_id,
            action,
            token=token,
            actor=actor,
            now=self.clock(),
            lease_s=self.lease_s,
        )
        if claim.outcome == "already":
            return claim.snapshot
        if claim.outcome == "busy":
            raise SettleRefused(
                "in_progress",
                "Another capture, void or refund of this payment is in progress; retry shortly.",
            )
        if claim.outcome != "claimed":
            raise _not_settleable(claim.snapshot, action)
        assert claim.intent is not None and claim.handle is not None
        run = _Run(self, claim.intent, claim.handle, token)
        return await run.carry_out()

    async def check(self, due: intents.DueSettlement) -> str:
        """An intent whose AlterTran answer nobody has (claimed by
        :func:`ivrpay.store.settlement.claim_due_settlements`): SearchTrade decides, nothing is
        sent. "settled" (recorded), "open" (certainly not done: a retried request may send
        again) or "unknown" (looked at again after the back-off)."""
        run = _Run(self, due.intent, due.handle or {}, due.token)
        if due.handle is None or self.gateway is None:
            await run.release(unknown=True)
            return "unknown"
        return await run.look_only()


class _Run:
    """One claim of one intent: everything sent and recorded under its token."""

    def __init__(
        self,
        settler: Settler,
        intent: intents.SettlementIntent,
        handle: Mapping[str, Any],
        token: str,
    ) -> None:
        self.s = settler
        self.gw = settler.gateway
        self.payment_id = intent.payment_id
        self.action = intent.action
        self.order_id = intent.order_id
        self.handle = handle
        self.token = token
        self.sent = intent.sends > 0
        self.sent_at = intent.sent_at
        self.log = log.bind(payment_id=self.payment_id, action=self.action)

    async def carry_out(self) -> dict[str, Any]:
        try:
            return await self._carry_out()
        except SettleRefused:
            raise
        except store.LeaseLost:
            # Held longer than the lease (a very slow gateway): another holder looks it up.
            raise SettleRefused(
                "in_progress", "The settlement is being confirmed elsewhere; retry shortly."
            ) from None
        except BaseException:
            # A fault of ours: give the claim up (an unreleased one lapses and is looked up).
            with contextlib.suppress(Exception):
                await self.release(unknown=self.sent)
            raise

    async def _carry_out(self) -> dict[str, Any]:
        trade = await self._search()
        if not trade.ok:
            await self.release(unknown=self.sent, error=error_of(trade))
            raise _refused(trade, "look the order up")
        step = self.gw.alter_step(trade, self.action)
        if step.kind == "done":
            return await self.complete(trade)
        if step.kind == "refuse":
            await self.release(unknown=False, error={"code": "status", "message": step.message})
            raise SettleRefused(
                "gateway_refused",
                f"The gateway cannot {self.action} the payment ({step.message}); "
                "nothing was changed.",
            )
        altered = await self._alter(step.job)
        if altered.kind == "unknown":
            # The answer was lost: look before anything is sent again.
            again = await self._search()
            if again.ok and self.gw.alter_step(again, self.action).kind == "done":
                return await self.complete(again)
            if again.ok and again.status == trade.status:
                altered = await self._alter(step.job)
        if altered.ok:
            return await self.complete(altered)
        await self.release(unknown=altered.kind == "unknown", error=error_of(altered))
        raise _refused(altered, f"{self.action} the payment")

    async def look_only(self) -> str:
        trade = await self._search()
        if not trade.ok:
            await self.release(unknown=True, error=error_of(trade))
            return "unknown"
        step = self.gw.alter_step(trade, self.action)
        if step.kind == "done":
            await self.complete(trade)
            return "settled"
        now = self.s.clock()
        trusted = (
            self.sent_at is not None
            and (now - self.sent_at).total_seconds() >= self.s.reconcile_after_s
        )
        if step.kind == "refuse" or trusted:
            why = step.message or "the gateway did not change the order"
            await self.release(unknown=False, error={"code": "not_done", "message": why})
            self.log.warning("payment.settlement_not_done", reason=why)
            return "open"
        await self.release(unknown=True)
        return "unknown"

    # -- the gateway, each request logged ----------------------------------------------------------
    async def _search(self) -> Outcome:
        trade: Outcome = await self.gw.search_trade(self.order_id)
        await self._log(trade)
        return trade

    async def _alter(self, job: Any) -> Outcome:
        h = self.handle
        await intents.mark_sent(
            self.s.db, self.payment_id, self.action, self.token, now=self.s.clock()
        )
        self.sent = True
        amount = int(h["amount"]) if job == "SALES" else None
        altered: Outcome = await self.gw.alter_tran(
            h["access_id"], h["access_pass"], job, amount, order_id=self.order_id
        )
        await self._log(altered)
        self.log.info("payment.settlement_sent", job=job, outcome=altered.kind)
        return altered

    async def _log(self, outcome: Outcome) -> None:
        await log_gateway_call(
            self.s.db,
            outcome,
            payment_id=self.payment_id,
            order_id=self.order_id,
            clock=self.s.clock,
        )

    # -- the intent --------------------------------------------------------------------------------
    async def complete(self, answer: Outcome) -> dict[str, Any]:
        result = {
            "approve": answer.approve,
            "tran_id": answer.tran_id,
            "tran_date": answer.tran_date or answer.process_date,
            "forward": answer.forward,
        }
        try:
            return await intents.complete_settlement(
                self.s.db,
                self.payment_id,
                self.action,
                self.token,
                now=self.s.clock(),
                result=result,
            )
        except store.Conflict:
            await self.release(unknown=False)
            raise SettleRefused(
                "not_settleable",
                f"The payment changed meanwhile and cannot be {SETTLEMENT_ACTIONS[self.action]}.",
            ) from None

    async def release(self, *, unknown: bool, error: Mapping[str, Any] | None = None) -> None:
        await intents.release_settlement(
            self.s.db,
            self.payment_id,
            self.action,
            self.token,
            now=self.s.clock(),
            unknown=unknown,
            error=error,
            backoff_s=self.s.backoff_s,
        )


def _not_settleable(snapshot: Mapping[str, Any], action: str) -> SettleRefused:
    return SettleRefused(
        "not_settleable",
        f"A {snapshot['status']} payment (settlement {snapshot.get('settlement')}) "
        f"cannot be {SETTLEMENT_ACTIONS[action]}.",
    )


def _refused(outcome: Outcome, doing: str) -> SettleRefused:
    """A gateway answer that is no success, as the API's refusal."""
    # (ErrCode, ErrInfo) pairs: the ErrInfo detail is what a merchant looks up.
    codes = [info for _code, info in outcome.err_info]
    if outcome.kind == "unknown":
        return SettleRefused(
            "gateway_unknown",
            "The gateway's answer was lost; the order is looked up before anything is sent "
            "again, so retrying is safe.",
            codes,
        )
    if outcome.kind == "busy":
        return SettleRefused("gateway_busy", "The gateway is busy; retry later.", codes)
    return SettleRefused(
        "gateway_refused",
        f"The gateway refused to {doing}; nothing was changed.",
        codes,
    )
