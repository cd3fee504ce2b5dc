"""Asyncio client of the GMO-PG protocol: single endpoints, composite operations, reconciliation.

The client knows nothing of payments, calls or the database. Every method returns a typed result
(:class:`~ivrpay.gateway.results.Outcome` and friends) and never raises for anything the gateway or
the network does; only cancellation propagates. Card data comes in a
:class:`~ivrpay.card.holder.CardData` and goes no further than the request body: logs show the last
four digits at most, exception messages never hold a body.

Outcome rules that matter for money:
- a timeout or lost connection after the request went out is ``unknown``, never a failure;
- an answer that cannot be read (HTML page, empty, wrong encoding, missing keys) of an endpoint that
  changes something is ``unknown``; of a lookup it is ``system``;
- ``busy`` (and a connection refused at once: nothing was sent) is retried along the back-off
  list, then reported as ``system``;
- an ExecTran answer whose CheckString does not match is ``unknown``; ``ACS`` ≠ 0 is ``system``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import structlog

from ivrpay.card.holder import CardData
from ivrpay.gateway import errors
from ivrpay.gateway.codec import (
    ENDPOINTS,
    Answer,
    EncodeError,
    Endpoint,
    MalformedAnswer,
    check_string,
    client_field_problem,
    decode_answer,
    encode_request,
    masked,
    missing_keys,
    parse_gateway_time,
    split_multi,
)
from ivrpay.gateway.errors import Field, Kind
from ivrpay.gateway.results import ChargeAndRegister, Outcome, Reconciliation, StoredCard

if TYPE_CHECKING:
    from ivrpay.config import Settings

log = structlog.get_logger(__name__)

JobCd = Literal["CHECK", "CAPTURE", "AUTH", "SAUTH"]
ENTRY_JOBS = frozenset({"CHECK", "CAPTURE", "AUTH", "SAUTH"})

EXECUTED_STATUSES = frozenset({"CAPTURE", "AUTH", "SAUTH", "CHECK", "SALES"})
NOT_EXECUTED_STATUSES = frozenset({"UNPROCESSED", "AUTHENTICATED"})
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Try:
    """One HTTP exchange, before the endpoint's own reading of the answer."""

    kind: Kind
    field: Field | None = None
    err_code: str | None = None
    err_info: tuple[tuple[str, str], ...] = ()
    message: str = ""
    sent: bool = True
    retry_unsent: bool = False  # the connection could not be made: safe to try again
    answer: Answer | None = None
    http_status: int | None = None


def _int(value: str | None) -> int | None:
    # ASCII only: ``str.isdigit`` also takes ``①``, which ``int`` rejects with an exception.
    return int(value) if value and value.isascii() and value.isdigit() else None


def _last4(card_no: str | None) -> str | None:
    digits = re.sub(r"\D", "", card_no or "")
    return digits[-4:] if len(digits) >= 4 else None


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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class GatewayClient:
    """One shared aiohttp session to one gateway. Use ``async with`` or call :meth:`close`.

    ``base_url`` is ``http[s]://host[:port]``; ``/payment/<Name>.idPass`` is appended. HTTPS is
    always certificate-verified (TLS 1.2+); pass ``ssl_context`` to trust another CA.
    ``retry_backoff_s``: pauses before each retry of a busy gateway (its length is the number of
    retries; ``E82010001`` is retried once only). ``reconcile_after_s``: how old a send must be
    before SearchTrade's ``UNPROCESSED`` is trusted as "not executed".
    """

    def __init__(
        self,
        base_url: str,
        shop_id: str,
        shop_pass: str,
        site_id: str = "",
        site_pass: str = "",
        *,
        timeout_s: float = 20.0,
        connect_timeout_s: float = 5.0,
        retry_backoff_s: Sequence[float] = (0.5, 1.0),
        reconcile_after_s: float = 300.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 200,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+", base):
            raise ValueError("gateway base URL must look like https://host[:port]")
        self.base_url = base
        self._shop_id = shop_id
        self._shop_pass = shop_pass
        self._site_id = site_id
        self._site_pass = site_pass
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self.retry_backoff_s = tuple(retry_backoff_s)
        self.reconcile_after_s = reconcile_after_s
        if base.startswith("https://"):
            ctx = ssl_context or ssl.create_default_context()
            ctx.minimum_version = max(ctx.minimum_version, ssl.TLSVersion.TLSv1_2)
            self._ssl: ssl.SSLContext | bool = ctx
        else:
            self._ssl = False
        self._max_connections = max_connections
        self._clock = clock or (lambda: datetime.now(UTC))
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, base_url: str | None = None, **overrides: Any
    ) -> GatewayClient:
        """A client from :class:`~ivrpay.config.Settings`; ``base_url`` wins over
        ``settings.gateway_url`` (None there means the local sandbox gateway)."""
        kwargs: dict[str, Any] = dict(
            timeout_s=settings.gateway_timeout_s,
            connect_timeout_s=settings.gateway_connect_timeout_s,
            reconcile_after_s=settings.reconcile_after_s,
        )
        kwargs.update(overrides)
        return cls(
            base_url or settings.gateway_url or "http://127.0.0.1:8081",
            settings.shop_id,
            settings.shop_pass,
            settings.site_id,
            settings.site_pass,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<GatewayClient {self.base_url} shop={self._shop_id}>"

    # -- session ----------------------------------------------------------------------------------
    async def __aenter__(self) -> GatewayClient:
        self._get_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_mark_sent)
            # No keep-alive: a pooled connection the gateway closed while idle would turn the
            # next payment into a false "unknown".
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, force_close=True, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout_s, sock_connect=self.connect_timeout_s
                ),
                trace_configs=[trace],
            )
        return self._session

    # -- the exchange -----------------------------------------------------------------------------
    async def _call(
        self, name: str, params: dict[str, Any], *, order_id: str | None = None
    ) -> tuple[Outcome, Answer | None]:
        """Send one request (retrying busy / unreachable), read and classify its answer."""
        ep = ENDPOINTS[name]
        started = time.monotonic()
        log.debug("gateway_request", endpoint=name, order_id=order_id, params=masked(params))
        try:
            body = encode_request(params)
        except EncodeError as exc:
            out = Outcome(name, "system", message=str(exc), order_id=order_id, refused_here=True)
            self._log(ep, out, None, order_id)
            return out, None
        del params  # the body is all that is needed from here on
        attempts = 0
        any_sent = False
        sent_at: datetime | None = None
        while True:
            attempts += 1
            sent_at = self._clock()
            t0 = time.monotonic()
            attempt = await self._exchange(ep, body)
            any_sent = any_sent or attempt.sent
            self._log(ep, attempt, int((time.monotonic() - t0) * 1000), order_id, attempts)
            retries = self._retries_for(attempt)
            if (attempt.kind == "busy" or attempt.retry_unsent) and attempts <= retries:
                await asyncio.sleep(self.retry_backoff_s[attempts - 1])
                continue
            break
        kind, message = attempt.kind, attempt.message
        if kind == "busy":
            kind, message = "system", f"gateway busy after {attempts} attempts"
        if kind == "unknown" and not ep.mutating:
            kind = "system"  # a lookup changes nothing: "unknown" would mean nothing more
        out = Outcome(
            name,
            kind,
            field=attempt.field,
            err_code=attempt.err_code,
            err_info=attempt.err_info,
            message=message,
            sent=any_sent,
            sent_at=sent_at,
            attempts=attempts,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            order_id=order_id,
        )
        return out, attempt.answer if kind == "ok" else None

    def _retries_for(self, attempt: _Try) -> int:
        if attempt.err_code == errors.CONCURRENT_SITE_CALL:
            return min(1, len(self.retry_backoff_s))
        return len(self.retry_backoff_s)

    async def _exchange(self, ep: Endpoint, body: bytes) -> _Try:
        marker = SimpleNamespace(sent=False)
        status: int | None = None
        try:
            session = self._get_session()
            async with session.post(
                self.base_url + ep.path,
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                allow_redirects=False,
                trace_request_ctx=marker,
            ) as resp:
                status = resp.status
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(16384):
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        return self._unreadable(ep, "answer too large", status)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            if not marker.sent:
                # Not retried: another wait as long would keep the caller on hold for nothing.
                return _Try("system", message="gateway connect timeout", sent=False)
            return _Try("unknown", message=f"no answer within {self.timeout_s:g}s")
        except aiohttp.ClientConnectorError as exc:
            # Refused at once (or no such host): nothing was sent, trying again costs little.
            # A certificate that fails verification will fail again: not retried.
            return _Try(
                "system",
                message=f"gateway unreachable ({type(exc).__name__})",
                sent=False,
                retry_unsent=not isinstance(exc, aiohttp.ClientSSLError),
            )
        except Exception as exc:  # any other failure of the exchange: was it received?
            if not marker.sent:
                return _Try(
                    "system", message=f"request not sent ({type(exc).__name__})", sent=False
                )
            return _Try("unknown", message=f"connection lost ({type(exc).__name__})")
        if status != 200:
            return self._unreadable(ep, f"HTTP {status}", status)
        try:
            answer = decode_answer(bytes(raw), ep)
        except MalformedAnswer as exc:
            return self._unreadable(ep, str(exc), status)
        if answer.is_error:
            pairs = answer.errors()
            verdict = errors.classify(pairs)
            return _Try(
                verdict.kind,
                verdict.field,
                verdict.code or None,
                pairs,
                verdict.message,
                answer=answer,
                http_status=status,
            )
        acs = answer.fields.get("ACS")
        if acs is not None and acs.strip() != "0":
            # 3-D Secure cannot be completed on a phone call: nothing was authorized.
            return _Try(
                "system",
                message="gateway asked for 3-D Secure (ACS≠0)",
                answer=answer,
                http_status=status,
            )
        absent = missing_keys(answer, ep)
        if absent:
            return self._unreadable(ep, f"answer lacks {', '.join(absent)}", status)
        return _Try("ok", answer=answer, http_status=status)

    @staticmethod
    def _unreadable(ep: Endpoint, why: str, status: int | None) -> _Try:
        kind: Kind = "unknown" if ep.mutating else "system"
        return _Try(kind, message=f"unreadable answer: {why}", http_status=status)

    @staticmethod
    def _log(
        ep: Endpoint,
        result: _Try | Outcome,
        elapsed_ms: int | None,
        order_id: str | None,
        attempt: int = 0,
    ) -> None:
        answer = getattr(result, "answer", None)
        if answer is not None:
            log.debug(
                "gateway_answer",
                endpoint=ep.name,
                order_id=order_id,
                fields=masked(answer.fields),
                extra=masked(answer.extra),
            )
        log.info(
            "gateway_call",
            endpoint=ep.name,
            order_id=order_id,
            attempt=attempt,
            elapsed_ms=elapsed_ms,
            kind=result.kind,
            err_code=result.err_code,
            err_info=[f"{c}:{i}" for c, i in result.err_info],
            http_status=getattr(result, "http_status", None),
            message=result.message or None,
        )

    # -- single endpoints -------------------------------------------------------------------------
    def _shop(self) -> dict[str, Any]:
        return {"ShopID": self._shop_id, "ShopPass": self._shop_pass}

    def _site(self) -> dict[str, Any]:
        return {"SiteID": self._site_id, "SitePass": self._site_pass}

    async def entry_tran(
        self, order_id: str, job_cd: JobCd, amount: int | None, tax: int | None = None
    ) -> Outcome:
        """Open a transaction. ``unknown`` here never means money moved (ExecTran was not sent):
        resend with the same OrderID; ``E01040010`` then means it had arrived (see :meth:`charge`).
        """
        params = {**self._shop(), "OrderID": order_id, "JobCd": job_cd}
        if job_cd != "CHECK" or amount is not None:
            params["Amount"] = amount
        params["Tax"] = tax
        out, ans = await self._call("EntryTran", params, order_id=order_id)
        if ans is None:
            return out
        f = ans.fields
        return dataclasses.replace(out, access_id=f["AccessID"], access_pass=f["AccessPass"])

    async def exec_tran(
        self,
        order_id: str,
        access_id: str,
        access_pass: str,
        card: CardData,
        *,
        method: int = 1,
        pay_times: int | None = None,
        client_fields: Sequence[str] = (),
    ) -> Outcome:
        """Charge a keyed card. The holder is read, never kept; the security code is optional."""
        if not (card.has_number and card.has_expiry):
            return Outcome(
                "ExecTran",
                "system",
                message="card data incomplete",
                order_id=order_id,
                refused_here=True,
            )
        params: dict[str, Any] = {
            "AccessID": access_id,
            "AccessPass": access_pass,
            "OrderID": order_id,
            "Method": method,
            "PayTimes": pay_times,
            "CardNo": card.reveal_number(),
            "Expire": card.reveal_expire_yymm(),
            "SecurityCode": card.reveal_security_code(),
        }
        for i, value in enumerate(client_fields[:3], start=1):
            problem = client_field_problem(value)
            if problem:
                out = Outcome(
                    "ExecTran",
                    "system",
                    message=f"ClientField{i}: {problem}",
                    order_id=order_id,
                    refused_here=True,
                )
                self._log(ENDPOINTS["ExecTran"], out, None, order_id)
                return out
            params[f"ClientField{i}"] = value
        out, ans = await self._call("ExecTran", params, order_id=order_id)
        return self._read_exec(out, ans, order_id, card.last4)

    async def exec_tran_member(
        self,
        order_id: str,
        access_id: str,
        access_pass: str,
        member_id: str,
        card_seq: int,
        *,
        security_code: CardData | None = None,
        method: int = 1,
        pay_times: int | None = None,
    ) -> Outcome:
        """Charge a stored card (``security_code``: a holder with only the code set, optional)."""
        params: dict[str, Any] = {
            "AccessID": access_id,
            "AccessPass": access_pass,
            "OrderID": order_id,
            "Method": method,
            "PayTimes": pay_times,
            **self._site(),
            "MemberID": member_id,
            "SeqMode": 0,
            "CardSeq": card_seq,
            "SecurityCode": security_code.reveal_security_code() if security_code else None,
        }
        out, ans = await self._call("ExecTran", params, order_id=order_id)
        return self._read_exec(out, ans, order_id, None)

    def _read_exec(
        self, out: Outcome, ans: Answer | None, order_id: str, last4: str | None
    ) -> Outcome:
        if ans is None:
            return dataclasses.replace(out, card_last4=last4)
        f = ans.fields
        method, pay_times = f.get("Method", ""), f.get("PayTimes", "")
        expected = check_string(
            f["OrderID"],
            f["Forward"],
            method,
            pay_times,
            f["Approve"],
            f["TranID"],
            f["TranDate"],
            self._shop_pass,
        )
        tran_date = parse_gateway_time(f["TranDate"])
        problem = None
        if f["OrderID"] != order_id:
            problem = "answer is for another OrderID"
        elif f["CheckString"].strip().lower() != expected:
            problem = "CheckString mismatch"
        elif tran_date is None:
            problem = "TranDate unreadable"
        if problem:
            # Maybe executed, maybe forged or garbled: never a success, reconcile it.
            log.warning("gateway_exec_unverified", order_id=order_id, reason=problem)
            return dataclasses.replace(out, kind="unknown", message=problem, card_last4=last4)
        return dataclasses.replace(
            out,
            forward=f["Forward"],
            approve=f["Approve"],
            tran_id=f["TranID"],
            tran_date=tran_date,
            method=method or None,
            pay_times=pay_times or None,
            card_last4=last4,
        )

    async def alter_tran(
        self,
        access_id: str,
        access_pass: str,
        job_cd: Literal["VOID", "RETURN", "RETURNX", "SALES"],
        amount: int | None = None,
        *,
        order_id: str | None = None,
    ) -> Outcome:
        """Change a transaction's state; ``amount`` only with SALES (must equal the authorized)."""
        params = {
            **self._shop(),
            "AccessID": access_id,
            "AccessPass": access_pass,
            "JobCd": job_cd,
            "Amount": amount if job_cd == "SALES" else None,
        }
        out, ans = await self._call("AlterTran", params, order_id=order_id)
        if ans is None:
            return out
        f = ans.fields
        tran_date = parse_gateway_time(f["TranDate"])
        return dataclasses.replace(
            out,
            access_id=f["AccessID"],
            access_pass=f["AccessPass"],
            forward=f["Forward"],
            approve=f["Approve"],
            tran_id=f["TranID"],
            tran_date=tran_date,
            status=job_cd,
        )

    async def search_trade(self, order_id: str) -> Outcome:
        """The transaction of one OrderID (``status``, ids, amounts, masked card: last 4)."""
        out, ans = await self._call(
            "SearchTrade", {**self._shop(), "OrderID": order_id}, order_id=order_id
        )
        if ans is None:
            return out
        f = ans.fields
        if f["OrderID"] != order_id:
            return dataclasses.replace(out, kind="system", message="answer for another OrderID")
        return dataclasses.replace(
            out,
            status=f["Status"].strip().upper(),
            job_cd=f.get("JobCd") or None,
            access_id=f.get("AccessID") or None,
            access_pass=f.get("AccessPass") or None,
            amount=_int(f.get("Amount")),
            tax=_int(f.get("Tax")),
            forward=f.get("Forward") or None,
            approve=f.get("Approve") or None,
            tran_id=f.get("TranID") or None,
            tran_date=parse_gateway_time(f.get("TranDate")),
            process_date=parse_gateway_time(f.get("ProcessDate")),
            method=f.get("Method") or None,
            pay_times=f.get("PayTimes") or None,
            card_last4=_last4(f.get("CardNo")),
            member_id=f.get("MemberID") or None,
        )

    async def save_member(self, member_id: str, member_name: str | None = None) -> Outcome:
        """``E01390010`` (``errors.MEMBER_EXISTS``) when the member exists already."""
        params = {**self._site(), "MemberID": member_id, "MemberName": member_name}
        out, ans = await self._call("SaveMember", params)
        return out if ans is None else dataclasses.replace(out, member_id=ans.fields["MemberID"])

    async def search_member(self, member_id: str) -> Outcome:
        """``E01390002`` (``errors.MEMBER_NOT_FOUND``) when there is no such member."""
        out, ans = await self._call("SearchMember", {**self._site(), "MemberID": member_id})
        if ans is None:
            return out
        f = ans.fields
        return dataclasses.replace(
            out, member_id=f["MemberID"], member_name=f.get("MemberName") or None
        )

    async def save_card(
        self,
        member_id: str,
        card: CardData,
        *,
        default: bool = True,
        holder_name: str | None = None,
        card_name: str | None = None,
    ) -> Outcome:
        """Store a card (the gateway runs a live validity check: card-company errors may come)."""
        if not (card.has_number and card.has_expiry):
            return Outcome("SaveCard", "system", message="card data incomplete", refused_here=True)
        params = {
            **self._site(),
            "MemberID": member_id,
            "DefaultFlag": 1 if default else 0,
            "CardName": card_name,
            "CardNo": card.reveal_number(),
            "Expire": card.reveal_expire_yymm(),
            "HolderName": holder_name,
        }
        out, ans = await self._call("SaveCard", params)
        return self._read_card_seq(out, ans, member_id, card.last4)

    async def traded_card(
        self,
        order_id: str,
        member_id: str,
        *,
        default: bool = True,
        holder_name: str | None = None,
    ) -> Outcome:
        """Store the card just charged on ``order_id``."""
        params = {
            **self._shop(),
            "OrderID": order_id,
            **self._site(),
            "MemberID": member_id,
            "DefaultFlag": 1 if default else 0,
            "HolderName": holder_name,
        }
        out, ans = await self._call("TradedCard", params, order_id=order_id)
        return self._read_card_seq(out, ans, member_id, None)

    @staticmethod
    def _read_card_seq(
        out: Outcome, ans: Answer | None, member_id: str, last4: str | None
    ) -> Outcome:
        if ans is None:
            return dataclasses.replace(out, member_id=member_id, card_last4=last4)
        seq = _int(ans.fields["CardSeq"].strip())
        if seq is None:
            kind: Kind = "unknown" if ENDPOINTS[out.endpoint].mutating else "system"
            return dataclasses.replace(out, kind=kind, message="unreadable CardSeq")
        return dataclasses.replace(
            out,
            member_id=member_id,
            card_seq=seq,
            card_last4=_last4(ans.fields.get("CardNo")) or last4,
            forward=ans.fields.get("Forward") or None,
        )

    async def search_card(self, member_id: str, card_seq: int | None = None) -> Outcome:
        """A member's cards (``cards``, masked: last 4 only). ``E01240002`` when none."""
        params = {**self._site(), "MemberID": member_id, "SeqMode": 0, "CardSeq": card_seq}
        out, ans = await self._call("SearchCard", params)
        if ans is None:
            return dataclasses.replace(out, member_id=member_id)
        f = ans.fields
        seqs = split_multi(f["CardSeq"])
        columns = {k: split_multi(f.get(k)) for k in ("DefaultFlag", "CardName", "CardNo")}
        deleted = split_multi(f.get("DeleteFlag"))
        cards: list[StoredCard] = []
        for i, raw_seq in enumerate(seqs):
            seq = _int(raw_seq.strip())
            if seq is None:
                return dataclasses.replace(out, kind="system", message="unreadable CardSeq")

            def col(values: list[str], i: int = i) -> str:
                return values[i] if i < len(values) else ""

            cards.append(
                StoredCard(
                    card_seq=seq,
                    last4=_last4(col(columns["CardNo"])) or "",
                    default=col(columns["DefaultFlag"]) == "1",
                    deleted=col(deleted) == "1",
                    card_name=col(columns["CardName"]),
                )
            )
        return dataclasses.replace(out, member_id=member_id, cards=tuple(cards))

    async def delete_card(self, member_id: str, card_seq: int) -> Outcome:
        params = {**self._site(), "MemberID": member_id, "SeqMode": 0, "CardSeq": card_seq}
        out, ans = await self._call("DeleteCard", params)
        return self._read_card_seq(out, ans, member_id, None)

    # -- composite operations ---------------------------------------------------------------------
    async def charge(
        self,
        order_id: str,
        card: CardData,
        *,
        job_cd: JobCd = "AUTH",
        amount: int | None,
        tax: int | None = None,
        method: int = 1,
        pay_times: int | None = None,
    ) -> Outcome:
        """EntryTran + ExecTran for a keyed card, then one immediate reconcile if the outcome is
        unknown (a lost answer of a success is recovered at once; ``UNPROCESSED`` this soon is not
        trusted, so that stays ``unknown`` for the caller's reconciliation)."""
        entry = await self.open_transaction(order_id, job_cd, amount, tax)
        if not entry.ok:
            return entry
        assert entry.access_id is not None and entry.access_pass is not None
        executed = await self.exec_tran(
            order_id,
            entry.access_id,
            entry.access_pass,
            card,
            method=method,
            pay_times=pay_times,
        )
        return await self.settle_exec(executed)

    async def charge_stored(
        self,
        order_id: str,
        member_id: str,
        card_seq: int,
        *,
        job_cd: JobCd = "AUTH",
        amount: int | None,
        tax: int | None = None,
        security_code: CardData | None = None,
        method: int = 1,
        pay_times: int | None = None,
    ) -> Outcome:
        """As :meth:`charge`, with a stored card."""
        entry = await self.open_transaction(order_id, job_cd, amount, tax)
        if not entry.ok:
            return entry
        assert entry.access_id is not None and entry.access_pass is not None
        executed = await self.exec_tran_member(
            order_id,
            entry.access_id,
            entry.access_pass,
            member_id,
            card_seq,
            security_code=security_code,
            method=method,
            pay_times=pay_times,
        )
        return await self.settle_exec(executed)

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

    async def charge_and_register(
        self,
        order_id: str,
        member_id: str,
        card: CardData,
        *,
        job_cd: JobCd = "AUTH",
        amount: int | None,
        tax: int | None = None,
        method: int = 1,
        pay_times: int | None = None,
        member_name: str | None = None,
        default: bool = True,
    ) -> ChargeAndRegister:
        """Charge, then store the charged card with TradedCard. The charge decides the payment."""
        charged = await self.charge(
            order_id,
            card,
            job_cd=job_cd,
            amount=amount,
            tax=tax,
            method=method,
            pay_times=pay_times,
        )
        if not charged.ok:
            return ChargeAndRegister(charged, None)
        stored = await self.store_traded_card(
            order_id, member_id, member_name=member_name, default=default
        )
        return ChargeAndRegister(charged, stored)

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

    async def void(self, order_id: str) -> Outcome:
        """Cancel a transaction (AlterTran VOID). Idempotent: an order already VOID is ok."""
        return await self._alter(
            order_id, "VOID", None, {"AUTH", "CAPTURE", "SALES", "SAUTH"}, {"VOID"}
        )

    async def capture(self, order_id: str, amount: int) -> Outcome:
        """Turn an authorization into a sale (AlterTran SALES, the authorized amount)."""
        return await self._alter(order_id, "SALES", amount, {"AUTH"}, {"SALES"})

    async def refund(
        self, order_id: str, *, job_cd: Literal["RETURN", "RETURNX"] | None = None
    ) -> Outcome:
        """Refund a sale (AlterTran RETURN; RETURNX when the sale was in an earlier month)."""
        return await self._alter(
            order_id, job_cd, None, {"CAPTURE", "SALES"}, {"RETURN", "RETURNX"}
        )

    async def _alter(
        self,
        order_id: str,
        target: Literal["VOID", "RETURN", "RETURNX", "SALES"] | None,
        amount: int | None,
        from_states: set[str],
        done_states: set[str],
    ) -> Outcome:
        trade = await self.search_trade(order_id)
        if not trade.ok:
            return dataclasses.replace(trade, endpoint="AlterTran")
        if trade.status in done_states:
            return dataclasses.replace(trade, endpoint="AlterTran", reconciled=True)
        if trade.status not in from_states or not (trade.access_id and trade.access_pass):
            return dataclasses.replace(
                trade,
                endpoint="AlterTran",
                kind="system",
                message=f"cannot change an order in status {trade.status}",
            )
        job = target or self._refund_job(trade)
        before = trade.status
        altered = await self.alter_tran(
            trade.access_id, trade.access_pass, job, amount, order_id=order_id
        )
        if altered.kind != "unknown":
            return dataclasses.replace(altered, order_id=order_id)
        # AlterTran timed out: look first, retry only when nothing changed.
        again = await self.search_trade(order_id)
        if again.ok and again.status == job:
            return dataclasses.replace(again, endpoint="AlterTran", reconciled=True)
        if again.ok and again.status == before:
            altered = await self.alter_tran(
                trade.access_id, trade.access_pass, job, amount, order_id=order_id
            )
        return dataclasses.replace(altered, order_id=order_id)

    def _refund_job(self, trade: Outcome) -> Literal["RETURN", "RETURNX"]:
        sold = trade.process_date or trade.tran_date
        if sold is None:
            return "RETURN"
        now = self._clock().astimezone(sold.tzinfo)
        return "RETURN" if (sold.year, sold.month) == (now.year, now.month) else "RETURNX"


async def _mark_sent(
    _session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object
) -> None:
    # From here on the gateway may have received the request: failures mean "unknown".
    marker = ctx.trace_request_ctx
    if marker is not None:
        marker.sent = True
