"""What takes more than one request: an EntryTran whose answer was lost, an ExecTran whose
outcome is unknown (SearchTrade), a card storage settled by SearchCard, what an AlterTran must do.

The payment process (flow, workers, API) calls these and the step endpoints; nothing here knows a
call or a payment row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from ivrpay.card.holder import CardData
from ivrpay.gateway import errors
from ivrpay.gateway.endpoints import GatewayEndpoints, JobCd
from ivrpay.gateway.results import Outcome, Reconciliation, StoredCard

ENTRY_JOBS = frozenset({"CHECK", "CAPTURE", "AUTH", "SAUTH"})
EXECUTED_STATUSES = frozenset({"CAPTURE", "AUTH", "SAUTH", "CHECK", "SALES"})
NOT_EXECUTED_STATUSES = frozenset({"UNPROCESSED", "AUTHENTICATED"})


def _differs(trade: Outcome, job_cd: str, amount: int | None, tax: int | None) -> str | None:
    """Which of JobCd / amount / tax of a SearchTrade answer is not what EntryTran asked for
    (a value the answer leaves out, or a JobCd that is no entry job, is not held against it:
    the gateway's exact answer for an unexecuted order is not published)."""
    if not trade.ok:
        return None
    if trade.job_cd in ENTRY_JOBS and trade.job_cd != job_cd:
        return "job"
    if trade.amount is not None and trade.amount != (amount or 0):
        return "amount"
    if trade.tax is not None and trade.tax != (tax or 0):
        return "tax"
    return None


AlterAction = Literal["capture", "void", "refund"]
AlterJob = Literal["VOID", "RETURN", "RETURNX", "SALES"]
# action -> (the order statuses AlterTran may start from, the statuses that mean it is done)
ALTER_RULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "capture": (frozenset({"AUTH"}), frozenset({"SALES"})),
    "void": (frozenset({"AUTH", "CAPTURE", "SALES", "SAUTH"}), frozenset({"VOID"})),
    "refund": (frozenset({"CAPTURE", "SALES"}), frozenset({"RETURN", "RETURNX"})),
}


@dataclasses.dataclass(frozen=True)
class AlterStep:
    """``kind``: "done" | "send" (``job``) | "refuse" (``message``)."""

    kind: Literal["done", "send", "refuse"]
    job: AlterJob | None = None
    message: str = ""


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class GatewayRecovery(GatewayEndpoints):
    """``reconcile_after_s``: how old a send must be before SearchTrade's ``UNPROCESSED`` is
    trusted as "not executed"."""

    reconcile_after_s: float  # set by the assembled client

    async def open_transaction(
        self, order_id: str, job_cd: JobCd, amount: int | None, tax: int | None = None
    ) -> Outcome:
        """EntryTran as the call needs it: an answer lost after sending is recovered by resending
        the same OrderID and, on ``E01040010``, reading AccessID/AccessPass back by SearchTrade
        (``reconciled``) when that order is ``UNPROCESSED`` with the JobCd, amount and tax asked
        for. Anything but ``ok`` means ExecTran must not be sent; nothing was charged,
        so a twice-lost answer is reported as ``system``. ``E01040010`` on the first send stays a
        system error: that OrderID was never ours."""
        entry = await self.entry_tran(order_id, job_cd, amount, tax)
        if entry.kind != "unknown":
            return entry
        # We did send this EntryTran: resend the same OrderID; E01040010 means it had arrived.
        again = await self.entry_tran(order_id, job_cd, amount, tax)
        if again.kind == "system" and again.err_code == errors.ORDER_ID_USED:
            trade = await self.search_trade(order_id)
            differs = _differs(trade, job_cd, amount, tax)
            if differs:
                # Not the transaction we asked for: ExecTran on it would charge something else.
                return dataclasses.replace(
                    again, message=f"EntryTran not recoverable: the order's {differs} differs"
                )
            if trade.ok and trade.status == "UNPROCESSED" and trade.access_id and trade.access_pass:
                return dataclasses.replace(
                    again,
                    kind="ok",
                    err_code=None,
                    err_info=(),
                    message="recovered through SearchTrade",
                    reconciled=True,
                    access_id=trade.access_id,
                    access_pass=trade.access_pass,
                )
            why = trade.message if not trade.ok else f"order is {trade.status}"
            return dataclasses.replace(again, message=f"EntryTran not recoverable: {why}")
        if again.kind == "unknown":
            # Two lost EntryTran answers: ExecTran was never sent, so nothing can have been charged.
            return dataclasses.replace(again, kind="system", message="EntryTran outcome unknown")
        return again

    async def settle_exec(self, executed: Outcome) -> Outcome:
        """An ExecTran outcome, with one immediate reconcile when it is ``unknown``: a lost answer
        of a success comes back as ``ok`` (``reconciled``); a fresh ``UNPROCESSED`` is not
        trusted, so that stays ``unknown`` for the background reconciliation."""
        if executed.kind != "unknown" or executed.order_id is None:
            return executed
        rec = await self.reconcile(
            executed.order_id, sent_at=executed.sent_at or self._clock(), reconcile_after_s=None
        )
        if rec.executed:
            return self.executed_outcome(rec, last4=executed.card_last4)
        return executed

    @staticmethod
    def executed_outcome(rec: Reconciliation, *, last4: str | None = None) -> Outcome:
        """An ExecTran success rebuilt from a reconciliation that found the execution."""
        t = rec.trade
        return dataclasses.replace(
            t,
            endpoint="ExecTran",
            kind="ok",
            reconciled=True,
            message="recovered through SearchTrade",
            # SearchTrade has no TranDate: its ProcessDate is the execution's time.
            tran_date=t.tran_date or t.process_date,
            card_last4=t.card_last4 or last4,
        )

    async def reconcile(
        self,
        order_id: str,
        *,
        sent_at: datetime,
        reconcile_after_s: float | None = None,
        now: datetime | None = None,
    ) -> Reconciliation:
        """Settle an execution whose outcome was unknown, by SearchTrade (gmo-pg.md).

        ``sent_at``: when the ExecTran was sent (aware). ``UNPROCESSED``/``AUTHENTICATED`` (or no
        such order) count as "not executed" only once the send is older than
        ``reconcile_after_s`` (default: the client's) at ``now`` (default: the client's clock);
        before that a request still in flight looks the same.
        """
        wait = self.reconcile_after_s if reconcile_after_s is None else reconcile_after_s
        moment = self._clock() if now is None else _aware(now)
        age = (moment - _aware(sent_at)).total_seconds()
        old_enough = age >= wait
        trade = await self.search_trade(order_id)
        if not trade.ok:
            if trade.err_code == errors.TRADE_NOT_FOUND and trade.sent:
                if old_enough:
                    return Reconciliation("not_executed", trade, "no such order at the gateway")
                return Reconciliation("unknown", trade, "no such order yet; too recent to trust")
            return Reconciliation("unknown", trade, trade.message or "SearchTrade failed")
        status = trade.status or ""
        if status in EXECUTED_STATUSES:
            if trade.tran_id and trade.approve:
                return Reconciliation("executed", trade, f"order is {status}")
            return Reconciliation("unknown", trade, f"order is {status} without TranID/Approve")
        if status in NOT_EXECUTED_STATUSES:
            if old_enough:
                return Reconciliation("not_executed", trade, f"order is {status}")
            return Reconciliation("unknown", trade, f"order is {status}; too recent to trust")
        return Reconciliation("unknown", trade, f"order is {status}: needs review")

    async def register(
        self,
        member_id: str,
        card: CardData,
        *,
        member_name: str | None = None,
        default: bool = True,
        holder_name: str | None = None,
    ) -> Outcome:
        """Store a card: SaveMember when missing, SearchCard (the list before), SaveCard.
        A SaveCard whose outcome is unknown is settled by SearchCard against the list before;
        if the card is not there, SaveCard is sent once more (a stored card moves no money)."""
        return await self._store_card(
            member_id,
            member_name,
            card.last4,
            lambda: self.save_card(member_id, card, default=default, holder_name=holder_name),
        )

    async def store_traded_card(
        self,
        order_id: str,
        member_id: str,
        *,
        member_name: str | None = None,
        default: bool = True,
    ) -> Outcome:
        """Store the card charged on ``order_id`` (SaveMember when missing, TradedCard), settling a
        TradedCard whose outcome is unknown by SearchCard and retrying it once."""
        return await self._store_card(
            member_id,
            member_name,
            None,
            lambda: self.traded_card(order_id, member_id, default=default),
        )

    async def _store_card(
        self,
        member_id: str,
        member_name: str | None,
        last4: str | None,
        send: Callable[[], Awaitable[Outcome]],
    ) -> Outcome:
        """SaveMember when missing, SearchCard (the list before), then ``send`` (SaveCard or
        TradedCard) at most twice: an unknown outcome is settled by SearchCard against the list
        before (a new card, ending in ``last4`` when given), and only sent again when SearchCard
        shows none is there (a stored card moves no money); when SearchCard cannot be read the
        outcome stays ``unknown`` rather than risk storing the card twice."""
        member = await self._ensure_member(member_id, member_name)
        if not member.ok:
            return member
        before = await self._card_seqs(member_id)
        if before is None:
            return Outcome("SearchCard", "system", message="cannot read the member's cards")
        sent: Outcome | None = None
        for _ in range(2):
            sent = await send()
            if sent.kind != "unknown":
                return sent
            looked, found = await self._new_card(member_id, before, last4)
            if found is not None:
                return dataclasses.replace(
                    sent,
                    kind="ok",
                    message="recovered through SearchCard",
                    reconciled=True,
                    card_seq=found.card_seq,
                    card_last4=found.last4,
                )
            if not looked:
                # Stored or not, nobody can tell: sending again could store the card twice.
                return sent
        assert sent is not None
        return sent

    async def _ensure_member(self, member_id: str, member_name: str | None) -> Outcome:
        found = await self.search_member(member_id)
        if found.ok or found.err_code != errors.MEMBER_NOT_FOUND:
            return found
        saved = await self.save_member(member_id, member_name)
        if saved.ok:
            return saved
        if saved.err_code == errors.MEMBER_EXISTS:
            return dataclasses.replace(saved, kind="ok", err_code=None, err_info=(), message="")
        if saved.kind == "unknown":
            # A lost SaveMember answer: look again rather than guess.
            return await self.search_member(member_id)
        return saved

    async def _card_seqs(self, member_id: str) -> set[int] | None:
        listed = await self.search_card(member_id)
        if listed.ok:
            return {c.card_seq for c in listed.cards}
        if listed.err_code == errors.CARD_NOT_FOUND:
            return set()
        return None

    async def _new_card(
        self, member_id: str, before: set[int], last4: str | None
    ) -> tuple[bool, StoredCard | None]:
        """``(looked, card)``: whether SearchCard could be read, and the new card if any."""
        listed = await self.search_card(member_id)
        if not listed.ok:
            return listed.err_code == errors.CARD_NOT_FOUND, None
        fresh = [
            c
            for c in listed.cards
            if c.card_seq not in before and not c.deleted and (last4 is None or c.last4 == last4)
        ]
        return True, max(fresh, key=lambda c: c.card_seq) if fresh else None

    def alter_step(self, trade: Outcome, action: AlterAction) -> AlterStep:
        """What a SearchTrade answer of the order means for ``action`` (capture = SALES of an
        AUTH, void, refund = RETURN, or RETURNX when the sale was in an earlier month): done
        already, one AlterTran to send, or impossible from the order's status. The caller sends
        (and logs) the AlterTran: a lost answer is looked up again before any second send."""
        from_states, done_states = ALTER_RULES[action]
        if trade.status in done_states:
            return AlterStep("done")
        if trade.status not in from_states or not (trade.access_id and trade.access_pass):
            return AlterStep("refuse", message=f"cannot change an order in status {trade.status}")
        job: AlterJob = "SALES" if action == "capture" else "VOID"
        if action == "refund":
            job = self._refund_job(trade)
        return AlterStep("send", job)

    def _refund_job(self, trade: Outcome) -> Literal["RETURN", "RETURNX"]:
        sold = trade.process_date or trade.tran_date
        if sold is None:
            return "RETURN"
        now = self._clock().astimezone(sold.tzinfo)
        return "RETURN" if (sold.year, sold.month) == (now.year, now.month) else "RETURNX"
