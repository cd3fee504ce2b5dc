"""The card-entry conversation (product.md, "The call"), one readable sequence of steps.

    identify → claim → greet and say the amount → card number → expiry → security code → confirm
    → process (gateway) → result → back to the operator

Each step has its own prompts, attempt counter and error prompts. A step ends the call by raising
:class:`End` with the ``IVRPAY_STATUS`` for the dialplan, what the caller hears, and how the claim
on the payment ends. Every change of the payment goes through the store, so the screen and the API
see each step live. Card data lives in one :class:`~ivrpay.card.holder.CardData` for the call and
is wiped when the gateway has answered and when the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from ivrpay import store
from ivrpay.agi.errors import AGIError, AGIHangup
from ivrpay.card.holder import CardData
from ivrpay.card.rules import (
    CardNumberCheck,
    ExpiryCheck,
    SecurityCodeCheck,
    check_card_number,
    check_expiry,
    check_security_code,
    security_code_length,
)
from ivrpay.config import Settings
from ivrpay.flow.channel import Channel
from ivrpay.flow.numbers import amount_prompts, digits_prompts
from ivrpay.flow.prompts import P
from ivrpay.flow.voice import CallerGone, Entry, EntryKind, PromptFailed, Voice
from ivrpay.gateway.client import GatewayClient
from ivrpay.gateway.results import Outcome
from ivrpay.metrics import CALL_OUTCOMES, CALLS_IN_FLIGHT

log = structlog.get_logger(__name__)

# Every IVRPAY_STATUS the call may leave for the dialplan (product.md, "End states").
IVRPAY_STATUSES = (
    "SUCCEEDED",
    "FAILED",
    "OPERATOR",
    "ERROR",
    "UNKNOWN",
    "CANCELED",
    "EXPIRED",
    "IN_USE",
    "NOT_FOUND",
    "BUSY",
)

CODE_LENGTH = 6
CARD_MAX_DIGITS = 19
_CODE = re.compile(r"\d{6}")


@dataclass
class FlowDeps:
    """What a call needs from the process: settings, the database, the gateway, a lease owner."""

    settings: Settings
    pool: asyncpg.Pool
    gateway: GatewayClient
    owner: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # gateway work in flight
    # Lease tokens of the calls in progress: the only claims the lease renewer keeps alive.
    live_tokens: set[str] = field(default_factory=set)


class End(Exception):
    """The call is over: ``status`` for the dialplan, ``prompts`` for the caller, and how an
    ``in_call`` payment ends (``payment_status`` None = leave it as the store has it)."""

    def __init__(
        self,
        status: str,
        prompts: list[str],
        payment_status: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        if status not in IVRPAY_STATUSES:
            raise ValueError(f"not an IVRPAY_STATUS the dialplan knows: {status}")
        super().__init__(status)
        self.status = status
        self.prompts = prompts
        self.payment_status = payment_status
        self.error = error


@dataclass(frozen=True)
class _Field:
    name: str  # progress step and attempts key
    error_code: str  # the payment's error.code when its attempts are used up


CARD_NUMBER = _Field("card_number", "invalid_card_number")
EXPIRY = _Field("expiry", "invalid_expiry")
SECURITY_CODE = _Field("security_code", "invalid_security_code")
_BY_NAME = {f.name: f for f in (CARD_NUMBER, EXPIRY, SECURITY_CODE)}
TOO_MANY_ATTEMPTS = {
    "code": "too_many_attempts",
    "category": "declined",
    "message": "the gateway execution limit was reached",
}

# How the claim refusal reasons of the store are told to the caller.
_REFUSED = {
    "in_use": ("IN_USE", [P.in_use]),
    "canceled": ("CANCELED", [P.canceled]),
    "expired": ("EXPIRED", [P.expired]),
    "succeeded": ("SUCCEEDED", [P.already_paid]),
    "unknown": ("UNKNOWN", [P.unknown_outcome]),
    "too_many_attempts": ("FAILED", [P.too_many_attempts, P.input_failed]),
    "not_found": ("NOT_FOUND", [P.payment_not_found]),
}


class Call:
    """One caller in the IVR, from the FastAGI request to the variables the dialplan reads."""

    def __init__(self, channel: Channel, deps: FlowDeps) -> None:
        self.channel = channel
        self.deps = deps
        self.settings = deps.settings
        self.voice = Voice(channel, deps.settings.digit_timeout_ms)
        self.card = CardData()
        self.payment: dict[str, Any] | None = None
        self.token: str | None = None
        self.attempts: dict[str, int] = {}
        self.gateway_task: asyncio.Task[None] | None = None
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
            self.log.info("call.hung_up", step=self._step)
            return None
        await self._tell(end)
        return end.status

    async def _converse_safely(self) -> End | None:
        """The conversation, and how it ended: an :class:`End`, or None when the caller left."""
        try:
            await self.channel.answer()
            await self.channel.set_variable("CHANNEL(language)", self.settings.default_language)
            return await self._converse()
        except End as e:
            return e
        except (AGIHangup, CallerGone, store.TakenBack):
            # Taken back: the AMI Redirect hangs up this AGI; the call ends as after a hang-up.
            return None
        except store.LeaseLost:
            self.log.warning("call.lease_lost")
            return End("ERROR", [P.apology, P.connecting_back])
        except (PromptFailed, AGIError, store.StoreError, asyncpg.PostgresError, OSError) as exc:
            if self.channel.hung_up:  # e.g. AGIEXITONHANGUP closed the socket
                return None
            self.log.error("call.fault", error=type(exc).__name__, step=self._step)
            return End("ERROR", [P.apology, P.connecting_back], payment_status="abandoned")
        except Exception as exc:
            # A bug of ours: the caller still hears an apology and goes back, and the claim is
            # released rather than renewed for a call that is over. (Traceback without locals.)
            if self.channel.hung_up:
                return None
            self.log.error("call.bug", error=type(exc).__name__, step=self._step, exc_info=True)
            return End("ERROR", [P.apology, P.connecting_back], payment_status="abandoned")
        finally:
            await self._finish_gateway_task()
            self.card.wipe()

    async def _converse(self) -> End:
        payment = await self._identify()
        self.payment = payment
        await self.channel.set_variable("CHANNEL(language)", payment["language"])
        await self._claim(payment)
        return await self._collect_and_pay()

    # -- identification ----------------------------------------------------------------------------
    async def _identify(self) -> dict[str, Any]:
        self._step = "identify"
        now = self.deps.clock()
        if _CODE.fullmatch(self.code_arg):
            found = await store.find_by_code(self.deps.pool, self.code_arg, now=now)
            if found is not None:
                return found
        device = store.device_of(self.transferrer) if self.transferrer else ""
        if device:
            pending = await store.find_pending_by_device(self.deps.pool, device, now=now)
            if len(pending) == 1:
                age = (now - pending[0]["created_at"]).total_seconds()
                if age <= self.settings.transferrer_max_age_s:
                    return pending[0]
        lead: list[str] = []
        tries = 0
        while tries < 3:
            entry = await self.voice.read([*lead, P.enter_code], CODE_LENGTH)
            lead = []
            if entry.kind is EntryKind.AGAIN:
                continue
            if entry.kind is EntryKind.OPERATOR:
                raise End("OPERATOR", [P.connecting_operator])
            tries += 1
            if entry.kind is EntryKind.DIGITS and _CODE.fullmatch(entry.digits):
                found = await store.find_by_code(
                    self.deps.pool, entry.digits, now=self.deps.clock()
                )
                if found is not None:
                    return found
                lead = [P.code_not_found]
            else:
                lead = [P.no_input] if entry.kind is EntryKind.SILENCE else [P.code_not_found]
        raise End("NOT_FOUND", [P.payment_not_found])

    async def _claim(self, payment: dict[str, Any]) -> None:
        env = self.channel.env
        claim = await store.claim_payment(
            self.deps.pool,
            payment["id"],
            owner=self.deps.owner,
            now=self.deps.clock(),
            lease_s=self.settings.lease_s,
            uniqueid=env.uniqueid,
            channel=env.channel,
            max_executions=self.settings.max_executions_per_payment,
        )
        if not claim.ok:
            status, prompts = _REFUSED.get(claim.reason or "", ("ERROR", [P.apology]))
            self.log.info("call.claim_refused", reason=claim.reason, payment_id=payment["id"])
            raise End(status, [*prompts, P.connecting_back])
        self.token = claim.token
        self.deps.live_tokens.add(claim.token)
        self.payment = claim.payment or payment
        self.log = self.log.bind(payment_id=payment["id"])
        self.log.info("call.claimed")

    # -- card entry and payment --------------------------------------------------------------------
    @property
    def _register_only(self) -> bool:
        return self._p["operation"] == "register"

    @property
    def _p(self) -> dict[str, Any]:
        assert self.payment is not None
        return self.payment

    def _fields(self) -> list[_Field]:
        fields = [CARD_NUMBER, EXPIRY]
        if self.settings.security_code and not self._register_only:
            fields.append(SECURITY_CODE)
        return fields

    def _total(self) -> int:
        return int(self._p["amount"] or 0) + int(self._p["tax"] or 0)

    async def _collect_and_pay(self) -> End:
        first = await self._greet()
        lead: list[str] = []
        while True:
            # Every field the card holder lacks: all of them at first, after "2" at the
            # confirmation and after a decline; only the rejected one after a gateway input error.
            for f in self._fields():
                if not self._held(f):
                    await self._collect(f, lead, first)
                    lead, first = [], None
            if self.settings.confirm and not await self._confirm():
                self.card.wipe()
                continue
            outcome = await self._process()
            if outcome.ok:
                return self._success_end()
            # Left here: an input error, or a card that cannot be used (_process ends the others).
            rejected = self._correctable(outcome)
            if not self._executions_left():
                # No point keying the card again: no gateway execution would be allowed.
                told = [] if rejected is not None else [P.declined]
                raise End(
                    "FAILED",
                    [*told, P.too_many_attempts, P.input_failed, P.connecting_back],
                    payment_status="failed",
                    error=dict(TOO_MANY_ATTEMPTS),
                )
            if rejected is not None:
                lead = [_GATEWAY_INPUT_PROMPT[rejected.name]]
            else:
                await self._after_decline()

    async def _greet(self) -> str | None:
        """Step 1: welcome and the amount. A key pressed meanwhile begins the card number."""
        await self._progress("amount")
        prompts: list[str] = [P.welcome]
        if not self._register_only:
            lang = self._p["language"]
            prompts += [P.amount_is, *amount_prompts(self._total(), lang), P.amount_is_tail]
        return await self.voice.play(prompts)

    def _held(self, f: _Field) -> bool:
        """Whether the card holder has a usable value for the field."""
        if f is CARD_NUMBER:
            return self.card.has_number
        if f is EXPIRY:
            return self.card.has_expiry
        # A code keyed for another brand (AMEX: 4 digits) must be asked again.
        return self.card.has_security_code and self._code_length == security_code_length(
            self.card.brand
        )

    async def _collect(self, f: _Field, lead: list[str], first: str | None = None) -> None:
        """Ask for one field until it validates; attempts used up end the call."""
        await self._progress(f.name)
        while True:
            prompt, max_digits = self._ask(f)
            entry = await self.voice.read([*lead, prompt], max_digits, first=first)
            lead, first = [], None
            if entry.kind is EntryKind.AGAIN:
                continue
            if entry.kind is EntryKind.OPERATOR:
                raise End("OPERATOR", [P.connecting_operator], payment_status="abandoned")
            # Only an empty (timeout) is silence; a lone '#' is an entry, and not a valid one.
            error = P.no_input if entry.kind is EntryKind.SILENCE else self._store_entry(f, entry)
            if error is None:
                return
            await self._use_attempt(f)
            lead = [error]

    def _ask(self, f: _Field) -> tuple[str, int]:
        if f is CARD_NUMBER:
            return P.enter_card, CARD_MAX_DIGITS
        if f is EXPIRY:
            return P.enter_expiry, 4
        length = security_code_length(self.card.brand)
        return (P.enter_security_code_amex if length == 4 else P.enter_security_code), length

    def _store_entry(self, f: _Field, entry: Entry) -> str | None:
        """Validate and keep an entry; the error prompt when it is not valid."""
        digits = entry.digits
        if f is CARD_NUMBER:
            checked = check_card_number(
                digits, self.settings.card_brands, self.settings.gateway_max_card_digits
            )
            if checked.check is CardNumberCheck.brand_not_accepted:
                return P.brand_not_accepted
            if not checked.ok:
                return P.card_invalid
            self.card.set_number(digits, brand=str(checked.brand))
        elif f is EXPIRY:
            expiry = check_expiry(digits, self.deps.clock(), self.settings.tz)
            if expiry is ExpiryCheck.past:
                return P.expiry_past
            if expiry is not ExpiryCheck.ok:
                return P.expiry_invalid
            self.card.set_expiry(digits)
        else:
            if check_security_code(digits, self.card.brand) is not SecurityCodeCheck.ok:
                return P.security_code_invalid
            self.card.set_security_code(digits)
            self._code_length = len(digits)
        return None

    async def _use_attempt(self, f: _Field, error: dict[str, Any] | None = None) -> None:
        self.attempts[f.name] = self.attempts.get(f.name, 0) + 1
        await self._progress(f.name)
        if self.attempts[f.name] >= self.settings.attempts:
            raise End(
                "FAILED",
                [P.input_failed, P.connecting_back],
                payment_status="failed",
                error=error or {"code": f.error_code, "category": "input", "message": None},
            )

    async def _confirm(self) -> bool:
        """ "Card ending 1 2 3 4, 12,800 yen — press 1 to pay, 2 to re-enter"."""
        await self._progress("confirm")
        lang = self._p["language"]
        last4 = self.card.last4 or ""
        prompts = [P.confirm_card_ending, *digits_prompts(last4, lang), P.confirm_card_ending_tail]
        if self._register_only:
            prompts.append(P.confirm_register_press)
        else:
            prompts += [*amount_prompts(self._total(), lang), P.amount_is_tail, P.confirm_pay_press]
        choice = await self._choice(prompts, "confirm")
        if choice is None:
            raise End("OPERATOR", [P.connecting_operator], payment_status="abandoned")
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
                raise End("OPERATOR", [P.connecting_operator], payment_status="abandoned")
            if entry.kind is EntryKind.DIGITS and entry.digits in ("1", "2"):
                return entry.digits
            used += 1
            self.attempts[name] = used
            await self._progress(name)
            if used >= self.settings.attempts:
                return None
            lead = [P.no_input] if entry.kind is EntryKind.SILENCE else []

    def _executions_left(self) -> bool:
        """Whether another gateway execution is allowed, per payment and per call (Limits)."""
        per_call = self._call_executions < self.settings.max_executions_per_call
        return per_call and self._payment_executions_left()

    def _payment_executions_left(self) -> bool:
        executions = len(self._p.get("executions") or [])
        return executions < self.settings.max_executions_per_payment

    async def _after_decline(self) -> None:
        """ "This card cannot be used" (a key may stop it), then another card (1) or the
        operator (2, or no choice made): then the payment ends failed with the gateway's code."""
        self.card.wipe()
        if await self._choice([P.declined_options], "result", lead=[P.declined]) != "1":
            raise End(
                "FAILED",
                [P.connecting_back],
                payment_status="failed",
                error=self._last_error,
            )

    # -- the gateway -------------------------------------------------------------------------------
    async def _process(self) -> Outcome:
        """Send the card to the gateway while the caller hears hold music.

        The gateway work runs as its own task: it completes and is recorded even if the caller
        hangs up or the call is cancelled, and it wipes the card data when the gateway answers.
        """
        await self._progress("processing")
        # Said before the attempt is stored: a caller who hangs up now has used no execution.
        await self.voice.say([P.please_wait])
        try:
            order_id = await store.start_execution(
                self.deps.pool,
                self._p["id"],
                self.token,
                now=self.deps.clock(),
                max_per_payment=self.settings.max_executions_per_payment,
                max_per_call=self.settings.max_executions_per_call,
            )
        except store.TooManyAttempts:
            raise End("FAILED", [P.too_many_attempts, P.input_failed, P.connecting_back]) from None
        except store.PaymentCanceled:
            raise End("CANCELED", [P.canceled, P.connecting_back]) from None
        self._call_executions += 1
        result: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.gateway_task = asyncio.create_task(self._gateway_work(order_id, result))
        self.deps.tasks.add(self.gateway_task)
        self.gateway_task.add_done_callback(self.deps.tasks.discard)
        await self.channel.set_music(True)
        await asyncio.shield(self.gateway_task)
        outcome = result.result()
        await self.channel.set_music(False)
        return await self._tell_outcome(outcome)

    async def _gateway_work(self, order_id: str, result: asyncio.Future[Outcome]) -> None:
        try:
            outcome = await self._send(order_id)
        except store.PaymentCanceled:
            self.card.wipe()
            result.set_exception(End("CANCELED", [P.canceled, P.connecting_back]))
            return
        except BaseException as exc:
            self.card.wipe()
            result.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        result.set_result(outcome)

    async def _send(self, order_id: str) -> Outcome:
        p, gw, pool = self._p, self.deps.gateway, self.deps.pool
        pid, token = p["id"], self.token
        if p["operation"] == "register":
            await store.move_to_processing(
                pool, pid, token, order_id=order_id, now=self.deps.clock()
            )
            outcome = await gw.register(p["member_id"], self.card)
            card = self._wipe_after(outcome)
            await self._record_call(outcome, order_id)
            return await self._record_result(order_id, outcome, card, registration=outcome)
        amount = None if p["job"] == "CHECK" else p["amount"]
        entry = await gw.open_transaction(order_id, p["job"], amount, p["tax"] or None)
        await self._record_call(entry, order_id)
        if not entry.ok:
            # ExecTran was never sent: nothing can have been charged.
            self.card.wipe()
            return await self._record_system_error(entry)
        await store.record_entry(
            pool,
            pid,
            token,
            order_id=order_id,
            access_id=entry.access_id,
            access_pass=entry.access_pass,
            now=self.deps.clock(),
        )
        await store.move_to_processing(pool, pid, token, order_id=order_id, now=self.deps.clock())
        executed = await gw.exec_tran(
            order_id,
            entry.access_id or "",
            entry.access_pass or "",
            self.card,
            method=int(p["method"] or 1),
            pay_times=p["pay_times"],
        )
        await self._record_call(executed, order_id)
        outcome = await gw.settle_exec(executed)
        card = self._wipe_after(outcome)  # storing a charged card (TradedCard) needs no digits
        registration = None
        if outcome.ok and p["operation"] == "charge_and_register":
            registration = await gw.store_traded_card(order_id, p["member_id"])
            await self._record_call(registration, order_id)
        return await self._record_result(order_id, outcome, card, registration=registration)

    async def _record_result(
        self,
        order_id: str,
        outcome: Outcome,
        card: dict[str, Any],
        registration: Outcome | None = None,
    ) -> Outcome:
        """Write the gateway's answer to the payment (``card``: brand and last 4 only)."""
        kind = outcome.kind
        error = None if outcome.ok else _error_of(outcome)
        if outcome.ok:
            status = "succeeded"
        elif (f := self._correctable(outcome)) is not None:
            used = self.attempts.get(f.name, 0) + 1
            status = "failed" if used >= self.settings.attempts else "in_call"
        elif kind in ("declined", "input"):
            status = "in_call"  # the caller may try another card
        elif kind == "unknown":
            status = "unknown"
        else:
            status = "failed"
        self._step = "result"
        result = None
        if outcome.ok:
            result = {
                "approve": outcome.approve,
                "tran_id": outcome.tran_id,
                "tran_date": outcome.tran_date,
                "forward": outcome.forward,
                "card_seq": outcome.card_seq,
            }
        reg = None
        if registration is not None and self._p["operation"] != "charge":
            # The charge is done: a card storage that may still get through is retried later.
            retry = self._p["operation"] == "charge_and_register" and registration.retry_later
            reg = {
                "status": "succeeded" if registration.ok else ("pending" if retry else "failed"),
                "card_seq": registration.card_seq,
                "error": None if registration.ok else _error_of(registration),
            }
        self.payment = await store.record_gateway_result(
            self.deps.pool,
            self._p["id"],
            self.token,
            order_id=order_id,
            status=status,
            now=self.deps.clock(),
            error=error,
            result=result,
            card=card if card["last4"] else None,
            registration=reg,
        )
        self._last_error = error
        return outcome

    async def _record_system_error(self, outcome: Outcome) -> Outcome:
        error = _error_of(outcome)
        error["category"] = "system"
        self._last_error = error
        self.payment = await store.end_call(
            self.deps.pool,
            self._p["id"],
            self.token,
            now=self.deps.clock(),
            status="failed",
            error=error,
            step="done",
        )
        self.deps.live_tokens.discard(self.token)
        self.token = None  # the claim is over
        return _as_system(outcome)

    def _wipe_after(self, outcome: Outcome) -> dict[str, Any]:
        """The gateway has answered: only a rejected field is kept out of the holder, to be
        keyed again; any other answer ends the use of this card. The card as it may be stored
        (brand, last 4), taken before the wipe."""
        card = {"brand": self.card.brand, "last4": self.card.last4 or outcome.card_last4}
        rejected = self._correctable(outcome)
        if rejected is CARD_NUMBER:
            self.card.wipe_number()
        elif rejected is EXPIRY:
            self.card.wipe_expiry()
        elif rejected is SECURITY_CODE:
            self.card.wipe_security_code()
        else:
            self.card.wipe()
        return card

    def _correctable(self, outcome: Outcome) -> _Field | None:
        """The field a gateway input error sends the caller back to: one this call asks for.
        The others (a security code switched off or not asked) make the card unusable here."""
        f = _BY_NAME.get(outcome.field or "") if outcome.kind == "input" else None
        return f if f in self._fields() else None

    async def _record_call(self, outcome: Outcome, order_id: str) -> None:
        await store.record_gateway_call(
            self.deps.pool,
            endpoint=outcome.endpoint,
            started_at=outcome.sent_at or self.deps.clock(),
            duration_ms=outcome.elapsed_ms,
            payment_id=self._p["id"],
            order_id=order_id,
            err_code=outcome.err_info[0][0] if outcome.err_info else None,
            err_info=outcome.err_code,
            outcome=outcome.kind,
        )

    async def _tell_outcome(self, outcome: Outcome) -> Outcome:
        """What the caller hears for each kind of answer; ends the call where it must."""
        kind = outcome.kind
        if outcome.ok:
            return outcome
        rejected = self._correctable(outcome)
        if rejected is not None:
            await self._use_attempt(rejected, error=self._last_error)
            return outcome
        if kind in ("declined", "input"):
            return outcome  # "this card cannot be used" leads the choice that follows
        if kind == "unknown":
            raise End("UNKNOWN", [P.unknown_outcome, P.connecting_back])
        raise End("ERROR", [P.system_error, P.connecting_back])

    def _success_end(self) -> End:
        op = self._p["operation"]
        if op == "register":
            said = P.registered
        elif op == "charge_and_register":
            reg = self._p.get("registration") or {}
            said = (
                P.paid_and_registered
                if reg.get("status") == "succeeded"
                else (P.paid_not_registered)
            )
        else:
            said = P.paid
        return End("SUCCEEDED", [said, P.connecting_back])

    async def _finish_gateway_task(self) -> None:
        task = self.gateway_task
        if task is not None and not task.done():
            # The caller went away, or the call was cancelled: the gateway answer still counts.
            try:
                await asyncio.shield(task)
            except BaseException:
                pass

    # -- progress and the end ----------------------------------------------------------------------
    _step = "waiting"
    _last_error: dict[str, Any] | None = None
    _code_length = 0  # digits of the security code held
    _call_executions = 0  # gateway executions started by this call

    async def _progress(self, step: str) -> None:
        self._step = step
        if self.token is None:
            return
        snapshot = await store.record_progress(
            self.deps.pool,
            self._p["id"],
            self.token,
            now=self.deps.clock(),
            step=step,
            attempts=dict(self.attempts),
        )
        self.payment = snapshot
        if snapshot.get("cancel_requested") and snapshot.get("status") == "in_call":
            raise End("CANCELED", [P.canceled, P.connecting_back], payment_status="canceled")

    async def _release(self, end: End | None) -> End | None:
        """End the claim: an ``in_call`` payment ends abandoned/failed/canceled as ``end`` says;
        how the call ends, which a cancel requested meanwhile turns into ``CANCELED``.

        After a hang-up the step the caller left at stays on the payment; otherwise it is done.
        """
        if self.token is None or self.payment is None:
            return end
        status = "abandoned" if end is None or end.payment_status is None else end.payment_status
        error = None if end is None else end.error
        if end is None and not self._payment_executions_left():
            # The caller left after the last execution allowed: no call can take it up again.
            status, error = "failed", dict(TOO_MANY_ATTEMPTS)
        token = self.token
        try:
            self.payment = await store.end_call(
                self.deps.pool,
                self._p["id"],
                self.token,
                now=self.deps.clock(),
                status=status,
                error=error,
                step=self._step if end is None else "done",
            )
        except (store.LeaseLost, store.InvalidTransition) as exc:
            self.log.warning("call.release_refused", error=type(exc).__name__)
        except (store.StoreError, asyncpg.PostgresError, OSError) as exc:
            # The database is unreachable: the caller still goes back to the operator.
            self.log.error("call.release_failed", error=type(exc).__name__)
        finally:
            # No longer renewed: a claim not released lapses and the sweep resolves it.
            self.deps.live_tokens.discard(token)
        self.token = None
        if end is not None and end.status != "CANCELED" and self._p["status"] == "canceled":
            # The store let the recorded cancel win over the operator or a failure: say so.
            return End("CANCELED", [P.canceled, P.connecting_back])
        return end

    async def _tell(self, end: End) -> None:
        """Set the variables the dialplan reads, then say the last words."""
        callback = ""
        if self.payment is not None:
            operator = self.payment.get("operator") or {}
            callback = operator.get("callback") or ""
        if not callback and self.transferrer:
            callback = store.device_of(self.transferrer)
        try:
            await self.channel.set_variable("IVRPAY_STATUS", end.status)
            if self.payment is not None:
                await self.channel.set_variable("IVRPAY_PAYMENT_ID", str(self.payment["id"]))
            await self.channel.set_variable("IVRPAY_CALLBACK", callback)
            await self.voice.say(end.prompts)
        except (AGIError, PromptFailed) as exc:
            self.log.info("call.goodbye_cut", error=type(exc).__name__)
        self.log.info("call.ended", status=end.status)


_GATEWAY_INPUT_PROMPT = {
    "card_number": P.card_invalid,
    "expiry": P.expiry_invalid,
    "security_code": P.security_code_invalid,
}


def _error_of(outcome: Outcome) -> dict[str, Any]:
    category = outcome.kind if outcome.kind in ("input", "declined", "unknown") else "system"
    return {
        "code": outcome.err_code or outcome.kind,
        "category": category,
        "message": outcome.message or None,
    }


def _as_system(outcome: Outcome) -> Outcome:
    return dataclasses.replace(outcome, kind="system")


Handler = Callable[[Channel], Awaitable[None]]


def pay_handler(deps: FlowDeps) -> Handler:
    """The FastAGI ``pay`` script."""

    async def pay(channel: Channel) -> None:
        CALLS_IN_FLIGHT.inc()
        status: str | None = "ERROR"
        try:
            status = await Call(channel, deps).run()
        finally:
            CALLS_IN_FLIGHT.dec()
            CALL_OUTCOMES.labels(status=status or "HANGUP").inc()

    return pay


def busy_handler(deps: FlowDeps) -> Handler:
    """Turned away politely when the in-flight limit is reached: ``IVRPAY_STATUS=BUSY``."""

    async def busy(channel: Channel) -> None:
        CALL_OUTCOMES.labels(status="BUSY").inc()
        args = [*channel.env.args, "", ""]
        callback = store.device_of(args[1]) if args[1] else ""
        try:
            await channel.set_variable("CHANNEL(language)", deps.settings.default_language)
            await channel.set_variable("IVRPAY_STATUS", "BUSY")
            await channel.set_variable("IVRPAY_CALLBACK", callback)
            await Voice(channel, deps.settings.digit_timeout_ms).say([P.busy, P.connecting_back])
        except (AGIError, PromptFailed):
            pass

    return busy
