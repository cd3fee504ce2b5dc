"""The exchange with one gateway: the HTTP session, one request and its raw reading, retries.

Knows the wire (``codec``) and the error table (``errors``) but no endpoint's meaning. Outcome rules
that matter for money, decided here:
- a timeout or lost connection after the request went out is ``unknown``, never a failure;
- an answer that cannot be read (HTML page, empty, wrong encoding, missing keys) of an endpoint that
  changes something is ``unknown``; of a lookup it is ``system``;
- ``busy`` (and a connection refused at once: nothing was sent) is retried along the back-off
  list, then reported as ``system``;
- ``ACS`` ≠ 0 is ``system`` (3-D Secure cannot be completed on a phone call).

Keep-alive, and why not for everything: a pooled connection the gateway closed while it sat idle
fails the next request once it is written, and for ExecTran that failure is an *unknown* outcome
(the caller hears "we could not confirm"), not a clean retry. So ``keepalive``:

- ``"safe"`` (default): lookups and EntryTran (an ambiguous EntryTran charges nothing: the attempt
  ends as a system error) ride kept-alive connections; ExecTran, AlterTran and card storage always
  go on a fresh connection;
- ``"all"``: every request may reuse a connection;
- ``"off"``: a fresh connection for every request.

A kept connection is reused only while it has been idle less than ``keepalive_idle_s`` (default 2 s,
well below any gateway's keep-alive timeout: nginx 75 s, Apache 5 s), so the gateway is not closing
it as it is picked up.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import structlog

from ivrpay.gateway import errors
from ivrpay.gateway.codec import (
    ENDPOINTS,
    Answer,
    EncodeError,
    Endpoint,
    MalformedAnswer,
    decode_answer,
    encode_request,
    masked,
    missing_keys,
)
from ivrpay.gateway.errors import Field, Kind
from ivrpay.gateway.results import Outcome

log = structlog.get_logger("ivrpay.gateway.client")

MAX_ANSWER_BYTES = 256 * 1024
KEEPALIVE_MODES = ("off", "safe", "all")
# What a reused connection may carry in the "safe" mode (see the module docstring).
_REUSE_SAFE = frozenset(name for name, ep in ENDPOINTS.items() if not ep.mutating) | {"EntryTran"}


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


class GatewayTransport:
    """One shared aiohttp session to one gateway. Use ``async with`` or call :meth:`close`.

    ``base_url`` is ``http[s]://host[:port]``; ``/payment/<Name>.idPass`` is appended. HTTPS is
    always certificate-verified (TLS 1.2+); pass ``ssl_context`` to trust another CA.
    ``retry_backoff_s``: pauses before each retry of a busy gateway (its length is the number of
    retries; ``E82010001`` is retried once only).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 20.0,
        connect_timeout_s: float = 5.0,
        retry_backoff_s: Sequence[float] = (0.5, 1.0),
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 200,
        clock: Callable[[], datetime] | None = None,
        keepalive: str = "safe",
        keepalive_idle_s: float = 2.0,
    ) -> None:
        base = base_url.rstrip("/")
        if keepalive not in KEEPALIVE_MODES:
            raise ValueError(f"keepalive must be one of {', '.join(KEEPALIVE_MODES)}")
        if not re.fullmatch(r"https?://[^\s/?#]+", base):
            raise ValueError("gateway base URL must look like https://host[:port]")
        self.base_url = base
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self.retry_backoff_s = tuple(retry_backoff_s)
        if base.startswith("https://"):
            ctx = ssl_context or ssl.create_default_context()
            ctx.minimum_version = max(ctx.minimum_version, ssl.TLSVersion.TLSv1_2)
            self._ssl: ssl.SSLContext | bool = ctx
        else:
            self._ssl = False
        self._max_connections = max_connections
        self._clock = clock or (lambda: datetime.now(UTC))
        self._session: aiohttp.ClientSession | None = None  # a fresh connection per request
        self._kept: aiohttp.ClientSession | None = None  # bounded keep-alive
        self.keepalive = keepalive
        self.keepalive_idle_s = keepalive_idle_s
        self.connections_opened = 0  # TCP (and TLS) connections made so far

    # -- session ----------------------------------------------------------------------------------
    async def __aenter__(self) -> Any:
        self._get_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for name in ("_session", "_kept"):
            session = getattr(self, name)
            if session is not None:
                setattr(self, name, None)
                await session.close()

    def reuses(self, endpoint: str) -> bool:
        """Whether a request to ``endpoint`` may ride a kept-alive connection."""
        return self.keepalive == "all" or (self.keepalive == "safe" and endpoint in _REUSE_SAFE)

    def _get_session(self, endpoint: str = "") -> aiohttp.ClientSession:
        if endpoint and self.reuses(endpoint):
            if self._kept is None or self._kept.closed:
                self._kept = self._new_session(
                    aiohttp.TCPConnector(
                        limit=self._max_connections,
                        keepalive_timeout=self.keepalive_idle_s,
                        ttl_dns_cache=300,
                        ssl=self._ssl,
                    )
                )
            return self._kept
        if self._session is None or self._session.closed:
            # A fresh connection per request: see the module docstring.
            self._session = self._new_session(
                aiohttp.TCPConnector(limit=self._max_connections, force_close=True, ssl=self._ssl)
            )
        return self._session

    def _new_session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_mark_sent)
        trace.on_connection_create_end.append(self._count_connection)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self.timeout_s, sock_connect=self.connect_timeout_s
            ),
            trace_configs=[trace],
        )

    async def _count_connection(self, *_args: object) -> None:
        self.connections_opened += 1

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
            session = self._get_session(ep.name)
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


async def _mark_sent(
    _session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object
) -> None:
    # From here on the gateway may have received the request: failures mean "unknown".
    marker = ctx.trace_request_ctx
    if marker is not None:
        marker.sent = True
