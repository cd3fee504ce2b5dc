"""The card-entry conversation (product.md, "The call"), one readable sequence of steps.

    identify → claim → greet and say the amount → card number → expiry → security code → confirm
    → process (the payment process sends it) → result → back to the operator

Each step has its own prompts, attempt counter and error prompts. A step ends the call by raising
:class:`~ivrpay.flow.ends.End` with the ``IVRPAY_STATUS`` for the dialplan, what the caller hears,
and how the claim on the payment ends. Everything the call records of its payment goes through the
:class:`~ivrpay.flow.deps.HeldPayment` the payment process hands out; what a gateway answer means
is decided there. Card data lives in one :class:`~ivrpay.card.holder.CardData` for the call
(:mod:`ivrpay.flow.fields` keys it in) and is wiped when the gateway has answered and when the call
ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from ivrpay import payments
from ivrpay.card.holder import CardData
from ivrpay.flow.channel import CallerGone, Channel, CommandFailed
from ivrpay.flow.deps import FlowDeps, HeldPayment, KeypadGuard
from ivrpay.flow.ends import (
    APOLOGY,
    CANCELED,
    IVRPAY_STATUSES,
    REFUSED,
    UNKNOWN,
    CallStatus,
    End,
    to_operator,
)
from ivrpay.flow.fields import ERROR_CODES, GATEWAY_INPUT_PROMPT, CardEntry, Field
from ivrpay.flow.numbers import amount_prompts, digits_prompts
from ivrpay.flow.prompts import P
from ivrpay.flow.voice import EntryKind, Voice
from ivrpay.metrics import CALL_OUTCOMES, CALLS_IN_FLIGHT
from ivrpay.payments import TOO_MANY_ATTEMPTS, Decision, Next, Operation, PaymentStatus, Step

__all__ = [
    "IVRPAY_STATUSES",
    "Call",
    "CallStatus",
    "End",
    "FlowDeps",
    "busy_handler",
    "pay_handler",
]

log = structlog.get_logger(__name__)

CODE_LENGTH = 6
_CODE = re.compile(r"\d{6}")


class Call:
    """One caller in the IVR, from the FastAGI request to the variables the dialplan reads."""

    def __init__(self, channel: Channel, deps: FlowDeps) -> None:
        self.channel = channel
        self.deps = deps
        self.settings = deps.settings
        self.voice = Voice(channel, deps.settings.digit_timeout_ms)
        self.card = CardData()
        self.entry = CardEntry(self.card, deps.settings, deps.clock)
        self.found: Mapping[str, Any] | None = None  # the payment identified, before the claim
        self.pay: HeldPayment | None = None  # the payment this call holds
        self.guard: KeypadGuard | None = None  # listen-in: keys only while the operator is safe
        self.attempts: dict[str, int] = {}
        self.step: str = Step.WAITING
        self.gateway_task: asyncio.Task[Decision] | None = None
        args = [*channel.env.args, "", ""]
        self.code_arg, self.transferrer = args[0].strip(), args[1].strip()
        self.log = log.bind(uniqueid=channel.env.uniqueid)

    # -- the whole call ----------------------------------------------------------------------------
    async def run(self) -> str | None:
        """Run the conversation; the ``IVRPAY_STATUS`` set (None when the caller hung up)."""
        try:
            end = await self._converse_safely()
        except asyncio.CancelledError:
            # The server is stopping and gave up waiting: the claim must not stay held.
            with contextlib.suppress(Exception):
                await self._release(None)
            raise
        end = await self._release(end)
        if end is None or self.channel.hung_up:
            self.log.info("call.hung_up", step=self.step)
            return None
        await self._tell(end)
        return end.status.value

    async def _converse_safely(self) -> End | None:
        """The conversation, and how it ended: an :class:`End`, or None when the caller left."""
        try:
            await self.channel.answer()
            await self.channel.set_variable("CHANNEL(language)", self.settings.default_language)
            return await self._converse()
        except End as e:
            return e
        except (CallerGone, payments.TakenBack):
            # Taken back: the AMI Redirect hangs up this AGI; the call ends as after a hang-up.
            return None
        except payments.LeaseLost:
            self.log.warning("call.lease_lost")
            return End(CallStatus.ERROR, APOLOGY)
        except (CommandFailed, *payments.FAULTS) as exc:  # type: ignore[misc]  # mypy: no * here
            return self._fault(exc, bug=False)
        except Exception as exc:
            # A bug of ours: the caller still hears an apology and goes back, and the claim is
            # released rather than renewed for a call that is over. (Traceback without locals.)
            return self._fault(exc, bug=True)
        finally:
            await self._finish_gateway_task()
            self.card.wipe()
            if self.guard is not None:
                await self.guard.finish()

    def _fault(self, exc: Exception, *, bug: bool) -> End | None:
        if self.channel.hung_up:  # e.g. AGIEXITONHANGUP closed the socket
            return None
        event = "call.bug" if bug else "call.fault"
        self.log.error(event, error=type(exc).__name__, step=self.step, exc_info=bug)
        if self.pay is not None and self.pay.status is PaymentStatus.PROCESSING:
            # The gateway may have been asked: "nothing was charged" would not be true.
            return End(CallStatus.UNKNOWN, UNKNOWN)
        return End(CallStatus.ERROR, APOLOGY, payment_status=PaymentStatus.ABANDONED)

    async def _converse(self) -> End:
        found = self.found = await self._identify()
        await self.channel.set_variable("CHANNEL(language)", found["language"])
        await self._claim(found)
        return await self._collect_and_pay()

    # -- identification ----------------------------------------------------------------------------
    async def _identify(self) -> Mapping[str, Any]:
        self.step = Step.IDENTIFY
        process = self.deps.payments
        if _CODE.fullmatch(self.code_arg):
            found = await process.find_by_code(self.code_arg, now=self.deps.clock())
            if found is not None:
                return found
        if self.transferrer:
            found = await process.find_for_transferrer(self.transferrer, now=self.deps.clock())
            if found is not None:
                return found
        lead: list[str] = []
        tries = 0
        while tries < 3:
            entry = await self.voice.read([*lead, P.enter_code], CODE_LENGTH)
            if entry.kind is EntryKind.AGAIN:
                lead = []
                continue
            if entry.kind is EntryKind.OPERATOR:
                raise to_operator()
            tries += 1
            if entry.kind is EntryKind.DIGITS and _CODE.fullmatch(entry.digits):
                found = await process.find_by_code(entry.digits, now=self.deps.clock())
                if found is not None:
                    return found
            lead = [P.no_input] if entry.kind is EntryKind.SILENCE else [P.code_not_found]
        raise End(CallStatus.NOT_FOUND, [P.payment_not_found])

    async def _claim(self, found: Mapping[str, Any]) -> None:
        env = self.channel.env
        claim = await self.deps.payments.claim(
            found,
            owner=self.deps.owner,
            uniqueid=env.uniqueid,
            channel=env.channel,
            clock=self.deps.clock,
        )
        if claim.call is None:
            status, prompts = REFUSED.get(claim.reason or "", (CallStatus.ERROR, [P.apology]))
            self.log.info("call.claim_refused", reason=claim.reason, payment_id=str(found["id"]))
            raise End(status, [*prompts, P.connecting_back])
        self.pay = claim.call
        self.log = self.log.bind(payment_id=self.pay.id)
        self.log.info("call.claimed")
        if self.deps.guards is not None:
            self.guard = self.deps.guards(found)

    # -- card entry and payment --------------------------------------------------------------------
    @property
    def _pay(self) -> HeldPayment:
        assert self.pay is not None
        return self.pay

    async def _collect_and_pay(self) -> End:
        try:
            return await self._collect_and_pay_guarded()
        finally:
            if self.guard is not None:
                await self.guard.close()

    async def _open(self, f: Field) -> None:
        """Listen-in: the field may be keyed only once the guard says so; else the card entry
        stops and the caller goes back to the operator."""
        if self.guard is not None and not await self.guard.open(f.name):
            self.log.warning("call.keypad_refused", field=f.name)
            raise End(CallStatus.OPERATOR, [P.connecting_operator], PaymentStatus.ABANDONED)

    async def _collect_and_pay_guarded(self) -> End:
        fields = self.entry.fields(register_only=self._pay.register_only)
        # A key pressed during the greeting is the card number's first digit: guarded too.
        await self._open(fields[0])
        first = await self._greet()
        lead: list[str] = []
        while True:
            # Every field the card holder lacks: all of them at first, after "2" at the
            # confirmation and after a decline; only the rejected one after a gateway input error.
            for f in fields:
                if not self.entry.held(f):
                    await self._open(f)
                    await self._collect(f, lead, first)
                    if self.guard is not None:
                        await self.guard.close()
                    lead, first = [], None
            if self.settings.confirm and not await self._confirm():
                self.card.wipe()
                continue
            decision = await self._process()
            if decision.next is Next.SUCCEEDED:
                return self._success_end()
            if decision.next is Next.UNKNOWN:
                raise End(CallStatus.UNKNOWN, UNKNOWN)
            if decision.next is Next.ERROR:
                raise End(CallStatus.ERROR, [P.system_error, P.connecting_back])
            if decision.next is Next.REENTER:
                assert decision.field is not None
                await self._use_attempt(decision.field, error=decision.error)
            if not self._pay.executions_left():
                # No point keying the card again: no gateway execution would be allowed.
                told = [] if decision.next is Next.REENTER else [P.declined]
                raise End(
                    CallStatus.FAILED,
                    [*told, P.too_many_attempts, P.input_failed, P.connecting_back],
                    payment_status=PaymentStatus.FAILED,
                    error=dict(TOO_MANY_ATTEMPTS),
                )
            if decision.next is Next.REENTER:
                lead = [GATEWAY_INPUT_PROMPT[decision.field or ""]]
            else:
                await self._after_decline(decision)

    async def _greet(self) -> str | None:
        """Step 1: welcome and the amount. A key pressed meanwhile begins the card number."""
        await self._progress(Step.AMOUNT)
        prompts: list[str] = [P.welcome]
        if not self._pay.register_only:
            total, lang = self._pay.total, self._pay.language
            prompts += [P.amount_is, *amount_prompts(total, lang), P.amount_is_tail]
        return await self.voice.play(prompts)

    async def _collect(self, f: Field, lead: list[str], first: str | None = None) -> None:
        """Ask for one field until it validates; attempts used up end the call."""
        await self._progress(f.name)
        while True:
            prompt, max_digits = self.entry.ask(f)
            entry = await self.voice.read([*lead, prompt], max_digits, first=first)
            lead, first = [], None
            if entry.kind is EntryKind.AGAIN:
                continue
            if entry.kind is EntryKind.OPERATOR:
                raise to_operator()
            # Only an empty (timeout) is silence; a lone '#' is an entry, and not a valid one.
            error = (
                P.no_input if entry.kind is EntryKind.SILENCE else self.entry.keep(f, entry.digits)
            )
            if error is None:
                return
            await self._use_attempt(f.name)
            lead = [error]

    async def _use_attempt(self, name: str, error: Mapping[str, Any] | None = None) -> None:
        self.attempts[name] = self.attempts.get(name, 0) + 1
        await self._progress(name)
        if self.attempts[name] >= self.settings.attempts:
            code = ERROR_CODES[name]
            raise End(
                CallStatus.FAILED,
                [P.input_failed, P.connecting_back],
                payment_status=PaymentStatus.FAILED,
                error=error or {"code": code, "category": "input", "message": None},
            )

    async def _confirm(self) -> bool:
        """ "Card ending 1 2 3 4, 12,800 yen — press 1 to pay, 2 to re-enter"."""
        await self._progress(Step.CONFIRM)
        lang = self._pay.language
        last4 = self.card.last4 or ""
        prompts = [P.confirm_card_ending, *digits_prompts(last4, lang), P.confirm_card_ending_tail]
        if self._pay.register_only:
            prompts.append(P.confirm_register_press)
        else:
            total = self._pay.total
            prompts += [*amount_prompts(total, lang), P.amount_is_tail, P.confirm_pay_press]
        choice = await self._choice(prompts, Step.CONFIRM)
        if choice is None:
            raise to_operator()
        return choice == "1"

    async def _choice(
        self, prompts: list[str], name: str, lead: list[str] | None = None
    ) -> str | None:
        """A one-key choice of 1 or 2 (None once its attempts are used up), after ``lead`` the
        first time; ``0`` is the operator; silence and other keys use attempts."""
        lead = lead or []
        used = 0
        while True:
            entry = await self.voice.read([*lead, *prompts], 1)
            lead = []
            if entry.kind is EntryKind.AGAIN:
                continue
            if entry.kind is EntryKind.OPERATOR:
                raise to_operator()
            if entry.kind is EntryKind.DIGITS and entry.digits in ("1", "2"):
                return entry.digits
            used += 1
            self.attempts[name] = used
            await self._progress(name)
            if used >= self.settings.attempts:
                return None
            lead = [P.no_input] if entry.kind is EntryKind.SILENCE else []

    async def _after_decline(self, decision: Decision) -> None:
        """ "This card cannot be used" (a key may stop it), then another card (1) or the
        operator (2, or no choice made): then the payment ends failed with the gateway's code."""
        self.card.wipe()
        if await self._choice([P.declined_options], Step.RESULT, lead=[P.declined]) != "1":
            error = decision.error
            raise End(
                CallStatus.FAILED,
                [P.connecting_back],
                payment_status=PaymentStatus.FAILED,
                error=error,
            )

    # -- the gateway -------------------------------------------------------------------------------
    async def _process(self) -> Decision:
        """Send the card while the caller hears hold music.

        The payment process runs as its own task: it completes and is recorded even if the caller
        hangs up or the call is cancelled, and it wipes the card data when the gateway answers.
        """
        await self._progress(Step.PROCESSING)
        # Said before the attempt is stored: a caller who hangs up now has used no execution.
        await self.voice.say([P.please_wait])
        try:
            order_id = await self._pay.start_attempt()
        except payments.TooManyAttempts:
            raise End(
                CallStatus.FAILED, [P.too_many_attempts, P.input_failed, P.connecting_back]
            ) from None
        except payments.PaymentCanceled:
            raise End(CallStatus.CANCELED, CANCELED) from None
        fields = [f.name for f in self.entry.fields(register_only=self._pay.register_only)]
        work = self._pay.execute(order_id, self.card, dict(self.attempts), fields)
        task = self.gateway_task = asyncio.create_task(work)
        self.deps.tasks.add(task)
        task.add_done_callback(self.deps.tasks.discard)
        await self.channel.set_music(True)
        try:
            decision = await asyncio.shield(task)
        except payments.PaymentCanceled:
            raise End(CallStatus.CANCELED, CANCELED) from None
        self.step = Step.RESULT
        await self.channel.set_music(False)
        return decision

    def _success_end(self) -> End:
        op = self._pay.operation
        if op is Operation.REGISTER:
            said = P.registered
        elif op is Operation.CHARGE_AND_REGISTER:
            said = P.paid_and_registered if self._pay.registered else P.paid_not_registered
        else:
            said = P.paid
        return End(CallStatus.SUCCEEDED, [said, P.connecting_back])

    async def _finish_gateway_task(self) -> None:
        task = self.gateway_task
        if task is not None and not task.done():
            # The caller went away, or the call was cancelled: the gateway answer still counts.
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)

    # -- progress and the end ----------------------------------------------------------------------
    async def _progress(self, step: str) -> None:
        self.step = step
        if self.pay is None:
            return
        try:
            await self.pay.progress(step, self.attempts)
        except payments.CancelRequested:
            raise End(
                CallStatus.CANCELED, CANCELED, payment_status=PaymentStatus.CANCELED
            ) from None

    async def _release(self, end: End | None) -> End | None:
        """End the claim: an ``in_call`` payment ends abandoned/failed/canceled as ``end`` says;
        how the call ends, which a cancel requested meanwhile turns into ``CANCELED``.

        After a hang-up the step the caller left at stays on the payment; otherwise it is done.
        """
        pay = self.pay
        if pay is None or not pay.held:
            return end
        if end is None:
            # The caller left: the payment process decides how the payment ends.
            await pay.end(None, None, self.step)
        else:
            await pay.end(end.payment_status or PaymentStatus.ABANDONED, end.error, Step.DONE)
        if end is not None and end.status is not CallStatus.CANCELED:
            if pay.status is PaymentStatus.CANCELED:
                # The store let the recorded cancel win over the operator or a failure: say so.
                return End(CallStatus.CANCELED, CANCELED)
        return end

    async def _tell(self, end: End) -> None:
        """Set the variables the dialplan reads, then say the last words."""
        callback = self.pay.callback if self.pay is not None else ""
        if not callback and self.found is not None:
            callback = str((self.found.get("operator") or {}).get("callback") or "")
        if not callback and self.transferrer:
            callback = payments.device_of(self.transferrer)
        try:
            await self.channel.set_variable("IVRPAY_STATUS", end.status.value)
            if self.found is not None:
                await self.channel.set_variable("IVRPAY_PAYMENT_ID", str(self.found["id"]))
            await self.channel.set_variable("IVRPAY_CALLBACK", callback)
            await self.voice.say(end.prompts)
        except (CallerGone, CommandFailed) as exc:
            self.log.info("call.goodbye_cut", error=type(exc).__name__)
        self.log.info("call.ended", status=end.status.value)


Handler = Callable[[Channel], Awaitable[None]]


def pay_handler(deps: FlowDeps) -> Handler:
    """The FastAGI ``pay`` script."""

    async def pay(channel: Channel) -> None:
        CALLS_IN_FLIGHT.inc()
        status: str | None = CallStatus.ERROR.value
        try:
            status = await Call(channel, deps).run()
        finally:
            CALLS_IN_FLIGHT.dec()
            CALL_OUTCOMES.labels(status=status or "HANGUP").inc()

    return pay


def busy_handler(deps: FlowDeps) -> Handler:
    """Turned away politely when the in-flight limit is reached: ``IVRPAY_STATUS=BUSY``."""

    async def busy(channel: Channel) -> None:
        CALL_OUTCOMES.labels(status=CallStatus.BUSY.value).inc()
        args = [*channel.env.args, "", ""]
        callback = payments.device_of(args[1]) if args[1] else ""
        try:
            await channel.set_variable("CHANNEL(language)", deps.settings.default_language)
            await channel.set_variable("IVRPAY_STATUS", CallStatus.BUSY.value)
            await channel.set_variable("IVRPAY_CALLBACK", callback)
            await Voice(channel, deps.settings.digit_timeout_ms).say([P.busy, P.connecting_back])
        except (CallerGone, CommandFailed):
            pass

    return busy
