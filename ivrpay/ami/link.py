"""One AMI connection per ``ivrpay serve``: log in, keep it up, send a few actions.

panoramisk 1.4 does the wire (message framing, ActionIDs, futures per action). Its own life cycle
is replaced here, because of its traps:

* its ``Manager`` reconnects every 2 s forever, including after a refused login (a tight loop
  against the PBX's security log), and tells nobody: :class:`AmiLink` owns the loop, with a
  back-off, a much slower one for a refused login, and a state (``ok`` / ``down since``) that
  ``/healthz`` shows;
* it queues actions that were in flight when the link dropped and sends them again after the next
  login: a take-back redirect that has been answered "unavailable" must never happen minutes
  later, so a dropped link fails every pending action at once;
* futures are made by ``asyncio.Future()`` in panoramisk's constructors, so the manager and every
  action are made inside the running loop (:meth:`AmiLink.start`);
* an action answered "successfully queued" (``Originate`` without ``Async: true``) keeps its
  future waiting for events that never come: :meth:`AmiLink.action` always has a timeout, and an
  ``Originate`` is sent with an explicit ``Async`` header. ``Redirect`` and ``Setvar`` answer
  ``Success`` / ``Error`` at once.

A half-open TCP link answers nothing: a ``Ping`` every ``ping_s`` with the action timeout finds it.
The secret never reaches a log line or ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from ivrpay.config import ConfigError

log = structlog.get_logger(__name__)

# Header values go on the wire as "Name: value\r\n": no control characters, bounded.
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,200}")
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_()-]{0,63}")


class AmiError(Exception):
    """An AMI action did not do what was asked; the message is safe to show."""


class AmiUnavailable(AmiError):
    """No working AMI link (not logged in, dropped while waiting)."""


class AmiTimeout(AmiError):
    """No answer (in time, or the link dropped first): the action may or may not have been
    carried out."""


class AmiRefused(AmiError):
    """The PBX answered ``Response: Error`` (``message`` is Asterisk's own words)."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message


class LoginRefused(AmiError):
    pass


@dataclass(frozen=True)
class AmiTarget:
    """Where and as whom: ``ami://user:secret@host:port`` (port 5038 by default)."""

    host: str
    port: int
    username: str
    secret: str = field(repr=False)

    def __str__(self) -> str:
        return f"ami://{self.username}@{self.host}:{self.port}"


def parse_ami_url(url: str) -> AmiTarget:
    """``IVRPAY_AMI_URL``; a bad one is a :class:`ConfigError` naming the variable (not the
    secret)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 5038
    except ValueError:
        raise ConfigError("IVRPAY_AMI_URL: not ami://user:secret@host:port") from None
    if parts.scheme != "ami" or not parts.hostname or not parts.username or not parts.password:
        raise ConfigError("IVRPAY_AMI_URL: not ami://user:secret@host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("IVRPAY_AMI_URL: nothing may follow host:port")
    user, secret = unquote(parts.username), unquote(parts.password)
    if not _HEADER_VALUE.fullmatch(user) or not _HEADER_VALUE.fullmatch(secret):
        raise ConfigError("IVRPAY_AMI_URL: the user or secret holds characters AMI cannot carry")
    return AmiTarget(parts.hostname, port, user, secret)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Protocol(AMIProtocol):
    """panoramisk's protocol, wired to our manager at once, and never re-queueing actions."""

    closed: bool  # panoramisk's (untyped) attribute

    def __init__(self, manager: _Manager) -> None:
        super().__init__()
        self._manager = manager

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        m = self._manager
        self.factory = m
        self.log = m.log
        self.config = m.config
        self.encoding = m.encoding = "utf8"
        m.responses = self.responses
        m.protocol = self

    def close(self) -> None:
        # Every action still waiting fails now (panoramisk would send it again after the next
        # login, long after its caller was told it failed).
        for action in list(self.responses.values()):
            if not action.future.done():
                # It may have been carried out: the answer is what was lost.
                action.future.set_exception(AmiTimeout("the AMI link dropped before the answer"))
        self.responses.clear()
        if not self.closed:
            try:
                self.transport.close()
            finally:
                self.closed = True


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's manager without its own reconnect loop: the link is told instead."""

    patterns: list[Any]  # panoramisk's (untyped) attribute

    def __init__(self, on_lost: Callable[[Any], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost
        # panoramisk re-sends queued actions on FullyBooted; we never queue any.
        self.callbacks.pop("FullyBooted", None)
        self.patterns = [p for p in self.patterns if p[0] != "FullyBooted"]

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        self._on_lost(exc)


class AmiLink:
    """The AMI link of this process. ``await start()`` (inside the running loop), ``close()``.

    ``state``: ``ok`` (logged in), ``down`` (``since``, ``detail``). ``reconnects``: logins after
    the first. ``on_reconnect`` / ``on_state``: hooks for metrics. Back-off schedules are in
    seconds, their last entry repeating.
    """

    def __init__(
        self,
        target: AmiTarget,
        *,
        backoff_s: Sequence[float] = (0.5, 1, 2, 5, 10, 30),
        refused_backoff_s: Sequence[float] = (30, 60, 120, 300),
        action_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        ping_s: float = 10.0,
        events: str = "system",
        on_reconnect: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.target = target
        self.backoff_s = tuple(backoff_s) or (1.0,)
        self.refused_backoff_s = tuple(refused_backoff_s) or (60.0,)
        self.action_timeout_s = action_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.ping_s = ping_s
        self.events = events
        self.on_reconnect = on_reconnect
        self.clock = clock
        self.state = "down"
        self.since: datetime = clock()
        self.detail = "not connected yet"
        self.reconnects = 0
        self.logins = 0
        self.failures = 0  # consecutive failed attempts (connect or login)
        self.version: str | None = None
        self._manager: _Manager | None = None
        self._lost: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self.log = log.bind(ami=str(target))
        # How the link waits between attempts (tests replace it to see the back-off).
        self.pause: Callable[[float], Awaitable[None]] = self._wait_or_close

    async def _wait_or_close(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    # -- state ----------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.state == "ok"

    def status(self) -> dict[str, Any]:
        """For /healthz: ``{"status": "ok"}`` or ``{"status": "down", "since": …, "detail": …}``."""
        if self.connected:
            return {"status": "ok"}
        return {"status": "down", "since": self.since.isoformat(), "detail": self.detail}

    def _set(self, state: str, detail: str) -> None:
        if state != self.state:
            self.since = self.clock()
        self.state, self.detail = state, detail
        if state == "ok":
            self._up.set()
            self._down.clear()
        else:
            self._up.clear()
            self._down.set()

    async def wait_up(self) -> None:
        """Until the link is logged in (tests; a caller that can wait)."""
        await self._up.wait()

    async def wait_down(self) -> None:
        await self._down.wait()

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start keeping the link up, in the running loop; returns at once (the PBX may be
        down: ivrpay runs without take-back meanwhile)."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_up(), name="ami-link")

    async def close(self) -> None:
        self._closing.set()
        self._drop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set("down", "closed")

    def _drop(self) -> None:
        m = self._manager
        if m is not None and m.protocol is not None:
            m.protocol.close()

    async def _keep_up(self) -> None:
        while not self._closing.is_set():
            try:
                await self._connect_and_login()
            except LoginRefused as exc:
                self.failures += 1
                delay = _pick(self.refused_backoff_s, self.failures)
                self._set("down", "login refused")
                # An error: somebody must fix the secret or the permit line; retried slowly.
                self.log.error("ami.login_refused", message=str(exc), retry_in_s=delay)
            except (OSError, TimeoutError, AmiError) as exc:
                self.failures += 1
                delay = _pick(self.backoff_s, self.failures)
                self._set("down", _describe(exc))
                self.log.warning("ami.connect_failed", error=_describe(exc), retry_in_s=delay)
            else:
                self.failures = 0
                if self.logins > 0:
                    self.reconnects += 1
                    if self.on_reconnect is not None:
                        self.on_reconnect()
                self.logins += 1
                self._set("ok", "")
                self.log.info("ami.logged_in", version=self.version)
                reason = await self._watch()
                self._set("down", reason)
                self.log.warning("ami.link_lost", reason=reason)
                delay = self.backoff_s[0]
            if self._closing.is_set():
                return
            await self.pause(delay)

    async def _connect_and_login(self) -> None:
        loop = asyncio.get_running_loop()
        self._drop()
        lost: asyncio.Future[Any] = loop.create_future()
        self._lost = lost

        def on_lost(exc: Any) -> None:
            if not lost.done():
                lost.set_result(exc)

        manager = _Manager(
            on_lost,
            loop=loop,
            host=self.target.host,
            port=self.target.port,
            log=_QuietLog(),
        )
        self._manager = manager
        await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(manager), self.target.host, self.target.port),
            self.connect_timeout_s,
        )
        try:
            reply = await self._send(
                {
                    "Action": "Login",
                    "Username": self.target.username,
                    "Secret": self.target.secret,
                    "Events": self.events,
                }
            )
        except BaseException:
            self._drop()
            raise
        if not _ok(reply):
            self._drop()
            raise LoginRefused(str(reply.get("Message") or "authentication failed"))
        self.version = manager.protocol.version if manager.protocol else None

    async def _watch(self) -> str:
        """While logged in: ping; the reason the link went down."""
        assert self._lost is not None
        lost = self._lost
        while True:
            done, _ = await asyncio.wait({lost}, timeout=self.ping_s)
            if done:
                exc = lost.result()
                if isinstance(exc, Message):
                    return "the PBX is shutting down"
                return "the PBX closed the link"
            try:
                await self._send({"Action": "Ping"})
            except AmiError as exc:
                self._drop()
                return f"ping: {_describe(exc)}"

    # -- actions --------------------------------------------------------------------------------
    async def _send(self, action: Mapping[str, Any], *, whole: bool = False) -> Any:
        m = self._manager
        if m is None or m.protocol is None or m.protocol.closed:
            raise AmiUnavailable("no AMI link")
        fields = dict(action)
        for name, value in fields.items():
            values = value if isinstance(value, list | tuple) else [value]
            if not _HEADER_NAME.fullmatch(str(name)) or not all(
                _HEADER_VALUE.fullmatch(str(v)) for v in values
            ):
                raise AmiError(f"{fields.get('Action')}: a header AMI cannot carry")
        future = m.send_action(fields)
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), self.action_timeout_s)
        except TimeoutError:
            raise AmiTimeout(f"{fields.get('Action')}: no answer in time") from None
        if isinstance(reply, list) and not whole:  # a list-style answer: its first decides
            reply = reply[0]
        return reply

    async def action(self, action: Mapping[str, Any]) -> Message:
        """Send one action while logged in; its answer, or :class:`AmiUnavailable`,
        :class:`AmiTimeout`, :class:`AmiRefused` (``Response: Error``)."""
        if not self.connected:
            raise AmiUnavailable(f"AMI link down: {self.detail}")
        fields = dict(action)
        if str(fields.get("Action", "")).lower() == "originate":
            fields.setdefault("Async", "true")  # else "successfully queued" never completes
        reply = await self._send(fields)
        if not _ok(reply):
            raise AmiRefused(str(fields.get("Action")), str(reply.get("Message") or "refused"))
        return reply

    async def channels(self) -> list[Message]:
        """Every channel of the PBX (``Status``: one event per channel, with ``BridgeID``).
        ``Status`` needs only the ``call`` class, where ``CoreShowChannels`` wants ``system``."""
        if not self.connected:
            raise AmiUnavailable(f"AMI link down: {self.detail}")
        reply = await self._send({"Action": "Status", "AllVariables": "false"}, whole=True)
        messages = reply if isinstance(reply, list) else [reply]
        if not _ok(messages[0]):
            raise AmiRefused("Status", str(messages[0].get("Message") or "refused"))
        return [m for m in messages[1:] if str(m.get("Event", "")).lower() == "status"]

    async def channel_status(self, channel: str) -> Message | None:
        """The ``Status`` event of one channel (``Application`` says what it runs), or None
        when the PBX does not know it (hung up)."""
        if not self.connected:
            raise AmiUnavailable(f"AMI link down: {self.detail}")
        reply = await self._send({"Action": "Status", "Channel": channel}, whole=True)
        messages = reply if isinstance(reply, list) else [reply]
        if not _ok(messages[0]):
            return None  # "No such channel"
        for m in messages[1:]:
            if str(m.get("Event", "")).lower() == "status" and m.get("Channel") == channel:
                return m
        return None

    async def getvar(self, channel: str, variable: str) -> str:
        """A channel variable or function (``PJSIP_DTMF_MODE()``) of ``channel``."""
        reply = await self.action({"Action": "Getvar", "Channel": channel, "Variable": variable})
        value = reply.get("Value")
        return "" if value in (None, "(null)") else str(value)

    async def redirect_both(
        self,
        first: tuple[str, str, str, Mapping[str, str]],
        second: tuple[str, str, str, Mapping[str, str]],
    ) -> None:
        """Move two channels at once, each ``(channel, context, exten, variables)``: one
        ``Redirect`` with ``ExtraChannel``, so that a bridge between them is never left with one
        side alone. The variables are set first."""
        for channel, _context, _exten, variables in (first, second):
            for name, value in variables.items():
                await self.action(
                    {"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value}
                )
        await self.action(
            {
                "Action": "Redirect",
                "Channel": first[0],
                "Context": first[1],
                "Exten": first[2],
                "Priority": "1",
                "ExtraChannel": second[0],
                "ExtraContext": second[1],
                "ExtraExten": second[2],
                "ExtraPriority": "1",
            }
        )

    async def redirect(
        self,
        channel: str,
        *,
        context: str,
        exten: str = "s",
        priority: int = 1,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        """Set ``variables`` on ``channel``, then send it to ``context,exten,priority``."""
        for name, value in (variables or {}).items():
            await self.action(
                {"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value}
            )
        await self.action(
            {
                "Action": "Redirect",
                "Channel": channel,
                "Context": context,
                "Exten": exten,
                "Priority": str(priority),
            }
        )


def _ok(reply: Any) -> bool:
    return isinstance(reply, Message) and str(reply.get("Response", "")).lower() == "success"


def _pick(schedule: Sequence[float], attempt: int) -> float:
    return float(schedule[min(max(attempt, 1), len(schedule)) - 1])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, AmiError):
        return str(exc)
    return type(exc).__name__


class _QuietLog:
    """panoramisk logs with the standard library, some of it at error level for a normal
    reconnect; our own structured lines say what matters."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None
