"""One AGI session over an asyncio stream pair: strictly one command at a time, typed helpers.

The transport is any ``StreamReader``/``StreamWriter`` pair (a FastAGI socket here; a classic AGI
process's stdin/stdout later). A single background task reads every line Asterisk sends:

- a bare ``HANGUP`` line, at any moment, is a notice: it sets :attr:`AGISession.hung_up` and
  :attr:`AGISession.hangup_event` and is never taken as a reply;
- other lines complete the one outstanding command (``100`` lines are provisional, a ``520-`` block
  is read to its end line); a reply line while no command is outstanding breaks the protocol and
  closes the session;
- EOF (or a reset) ends the session: the outstanding and every later command raise
  :class:`AGIConnectionLost`, and the session counts as hung up.

Results of input commands (GET DATA, WAIT FOR DIGIT, GET OPTION, STREAM FILE and SAY escape keys)
are *sensitive*: they are never logged, never put in an exception, and hidden in ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from dataclasses import dataclass
from typing import Any

import structlog

from ivrpay.agi.errors import (
    AGIArgumentError,
    AGICommandTimeout,
    AGIConnectionLost,
    AGIDeadChannel,
    AGIError,
    AGIHangup,
    AGIHeaderError,
    AGIInvalidCommand,
    AGIProtocolError,
    AGIUsageError,
)
from ivrpay.agi.protocol import (
    MAX_COMMAND_BYTES,
    AGIEnvironment,
    Quoted,
    Reply,
    ReplyAssembler,
    format_command,
    is_hangup_line,
    parse_env_line,
)

__all__ = ["AGISession", "DataResult", "PlayResult", "read_environment"]

_KEYS = re.compile(r"[0-9*#A-Da-d]*")
_APP = re.compile(r"[A-Za-z0-9_]+")

# Commands whose result is what the caller keyed (or the escape key that stopped a prompt): the
# reply is sensitive whoever sends them (execute, execute_line or a helper). Every SAY command too.
_INPUT_COMMANDS = (
    ("STREAM", "FILE"),
    ("CONTROL", "STREAM", "FILE"),
    ("GET", "DATA"),
    ("GET", "OPTION"),
    ("WAIT", "FOR", "DIGIT"),
    ("RECORD", "FILE"),
    ("RECEIVE", "CHAR"),
    ("RECEIVE", "TEXT"),
    ("SPEECH", "RECOGNIZE"),
    ("SAY",),
)
# Asterisk's waits when GET DATA / GET OPTION are given none: TIMEOUT(response) 10 s for the first
# key of GET DATA (TIMEOUT(digit) 5 s after it), TIMEOUT(digit) 5 s for GET OPTION.
_GET_DATA_DEFAULT_MS = 10_000
_GET_OPTION_DEFAULT_MS = 5_000


def _is_input_command(words: list[str]) -> bool:
    upper = tuple(w.upper() for w in words)
    return any(upper[: len(c)] == c for c in _INPUT_COMMANDS)


async def read_environment(
    reader: asyncio.StreamReader, *, max_bytes: int = 65536
) -> AGIEnvironment:
    """Read the ``agi_*`` block up to its blank line.

    Raises :class:`AGIHeaderError` on EOF before the blank line, a line that is not ``agi_x: y``,
    a line over the reader's limit, or more than ``max_bytes`` in all. The caller bounds the time.
    """
    pairs: list[tuple[str, bytes]] = []
    total = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            size = total + len(exc.partial)
            raise AGIHeaderError(
                f"connection closed before the end of the environment ({size} bytes)"
            ) from None
        except asyncio.LimitOverrunError:
            raise AGIHeaderError("environment line too long") from None
        total += len(line)
        if total > max_bytes:
            raise AGIHeaderError(f"environment larger than {max_bytes} bytes")
        parsed = parse_env_line(line)
        if parsed is None:
            return AGIEnvironment(pairs)
        pairs.append(parsed)


@dataclass(frozen=True, repr=False)
class PlayResult:
    """STREAM FILE, GET OPTION, SAY …: the escape key pressed (``None``: none), where playback
    stopped (``endpos`` in samples; 0 for SAY), and ``failed`` when Asterisk answered ``-1`` while
    no hang-up was known (a missing prompt file, or a hang-up whose notice has not come yet)."""

    digit: str | None
    endpos: int = 0
    failed: bool = False

    def __repr__(self) -> str:
        key = "None" if self.digit is None else "<key>"
        return f"PlayResult(digit={key}, endpos={self.endpos}, failed={self.failed})"


@dataclass(frozen=True, repr=False)
class DataResult:
    """GET DATA: the digits keyed (``#`` not included), whether entry ended by the timeout, and
    ``failed`` as in :class:`PlayResult`. Never shows the digits in ``repr``."""

    digits: str
    timed_out: bool = False
    failed: bool = False

    def __repr__(self) -> str:
        return (
            f"DataResult(digits=<{len(self.digits)} keys>, timed_out={self.timed_out}, "
            f"failed={self.failed})"
        )


class _Pending:
    __slots__ = ("assembler", "future", "name")

    def __init__(self, future: asyncio.Future[Reply], name: str) -> None:
        self.future = future
        self.assembler = ReplyAssembler()
        self.name = name


def _escape_digits(digits: str) -> Quoted:
    if not isinstance(digits, str) or not _KEYS.fullmatch(digits):
        raise AGIArgumentError("escape digits must be among 0-9 * # A-D")
    return Quoted(digits)


def _key(code: int) -> str | None:
    return None if code == 0 else chr(code)


class AGISession:
    """The channel as the protocol sees it. Create it inside a running event loop.

    ``command_timeout`` is the default per-command limit in seconds (``None``: no limit);
    ``close_timeout`` bounds how long :meth:`close` waits for the peer to close its side.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: AGIEnvironment,
        *,
        command_timeout: float | None = 120.0,
        close_timeout: float = 5.0,
        logger: Any = None,
    ) -> None:
        self.env = env
        self.log = (logger or structlog.get_logger(__name__)).bind(
            uniqueid=env.uniqueid, channel=env.channel
        )
        self.hangup_event = asyncio.Event()
        self._reader = reader
        self._writer = writer
        self._command_timeout = command_timeout
        self._close_timeout = close_timeout
        self._hung_up = False
        self._pending: _Pending | None = None
        self._lost: str | None = None  # why the session cannot be used any more
        self._peer_eof = False
        self._close_started = False
        self._closed_event = asyncio.Event()
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"agi-reader-{env.uniqueid}"
        )

    def __repr__(self) -> str:
        return (
            f"AGISession(uniqueid={self.env.uniqueid!r}, channel={self.env.channel!r}, "
            f"hung_up={self._hung_up}, closed={self.closed})"
        )

    # -- state ------------------------------------------------------------------------------------
    @property
    def hung_up(self) -> bool:
        """The caller is known to be gone (a ``HANGUP`` line, a ``511``, or the connection end)."""
        return self._hung_up

    @property
    def closed(self) -> bool:
        """No command can be sent any more (closed by us, lost, or broken)."""
        return self._close_started or self._lost is not None

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def _note_hangup(self, how: str) -> None:
        if not self._hung_up:
            self._hung_up = True
            if self._close_started:  # our own close ended it: not news
                self.log.debug("agi session ended", how=how)
            else:
                self.log.info("agi caller hung up", how=how)
        self.hangup_event.set()

    def _fail_pending(self, exc: AGIError) -> None:
        pending = self._pending
        if pending is not None and not pending.future.done():
            pending.future.set_exception(exc)

    def _connection_ended(self, reason: str) -> None:
        self._peer_eof = True
        if self._lost is None:
            self._lost = reason
            self._note_hangup(reason)
        self._fail_pending(AGIConnectionLost(f"connection lost ({reason})"))

    def _abort(self, reason: str, exc: AGIError | None = None) -> None:
        """The session is out of step or broken: fail what waits and drop the connection at once."""
        if self._lost is None:
            self._lost = reason
        self._fail_pending(exc or AGIConnectionLost(f"session closed ({reason})"))
        self._writer.transport.abort()

    # -- the reader -------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            await self._read_lines()
        except Exception as exc:  # a bug here must still end the session, not leave it hanging
            self.log.error("agi reader failed", error=type(exc).__name__)
            self._abort("reader failed")

    async def _read_lines(self) -> None:
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self.log.debug(
                        "agi partial line at end of stream dropped", size=len(exc.partial)
                    )
                self._connection_ended("eof")
                return
            except asyncio.LimitOverrunError:
                self._protocol_error("line too long")
                return
            except (ConnectionError, OSError) as exc:
                self._connection_ended(type(exc).__name__)
                return
            if is_hangup_line(line):
                self._note_hangup("HANGUP line")
                continue
            pending = self._pending
            if pending is None or pending.future.done():
                self._protocol_error("a reply line while no command was outstanding")
                return
            try:
                reply = pending.assembler.feed(line)
            except AGIProtocolError as exc:
                # The line itself is never logged: it may be the answer to an input command.
                self._protocol_error(str(exc))
                return
            if reply is not None:
                pending.future.set_result(reply)

    def _protocol_error(self, what: str) -> None:
        self.log.warning("agi protocol error; closing the session", error=what)
        self._abort(f"protocol error: {what}", AGIProtocolError(f"protocol error: {what}"))

    # -- commands ---------------------------------------------------------------------------------
    async def execute(
        self,
        command: str,
        *args: str | int,
        timeout: float | None = None,  # noqa: ASYNC109 - per command, part of the contract
        sensitive: bool = False,
    ) -> Reply:
        """Send one command and return its ``200`` reply.

        ``510``/``511``/``520`` raise :class:`AGIInvalidCommand`/:class:`AGIDeadChannel`/
        :class:`AGIUsageError`; no reply within ``timeout`` (default: the session's;
        ``math.inf``: no limit) raises :class:`AGICommandTimeout` and closes the session. A second
        command while one is outstanding is a programming error (``RuntimeError``).
        ``sensitive`` hides the result; input commands (GET DATA, WAIT FOR DIGIT, GET OPTION,
        STREAM FILE, SAY …) are always sensitive.
        """
        self._check_idle(command)
        line = format_command(command, *args)
        sensitive = sensitive or _is_input_command(command.split())
        return await self._transact(line, command, timeout, sensitive)

    async def execute_line(
        self,
        line: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - as execute()
        sensitive: bool = False,
    ) -> Reply:
        """Send one raw wire line (ending in ``\\n``; no other LF, no NUL) as it is.

        For protocol diagnostics and tests only (e.g. reproducing a stray ``\\r``): :meth:`execute`
        is the safe way to build commands.
        """
        name = line.split(b" ", 1)[0].strip().decode("ascii", "replace") or "<empty>"
        self._check_idle(name)
        if (
            not line.endswith(b"\n")
            or b"\n" in line[:-1]
            or b"\0" in line
            or len(line) > MAX_COMMAND_BYTES
        ):
            raise AGIArgumentError("a raw line must be one line ending in LF, without NUL")
        sensitive = sensitive or _is_input_command(line.decode("latin-1").split())
        return await self._transact(line, name, timeout, sensitive)

    def _check_idle(self, name: str) -> None:
        if self._pending is not None:
            raise RuntimeError(
                f"AGI {name} sent while {self._pending.name} is outstanding: "
                "commands on one session must not overlap"
            )

    async def _transact(
        self,
        line: bytes,
        name: str,
        timeout: float | None,  # noqa: ASYNC109 - as execute()
        sensitive: bool,
    ) -> Reply:
        if self._lost is not None or self._close_started:
            raise AGIConnectionLost(
                f"{name}: the session is closed ({self._lost or 'closed'})", command=name
            )
        limit = self._command_timeout if timeout is None else timeout
        if limit == math.inf:
            limit = None
        pending = _Pending(asyncio.get_running_loop().create_future(), name)
        self._pending = pending
        try:
            self.log.debug("agi command", command=line[:-1].decode("utf-8", "replace"))
            async with asyncio.timeout(limit):
                self._writer.write(line)
                await self._writer.drain()
                reply = await pending.future
        except TimeoutError:
            self.log.warning(
                "agi command timed out; closing the session", command=name, timeout=limit
            )
            self._abort(f"no reply to {name}")
            raise AGICommandTimeout(
                f"{name}: no reply within {limit:g} s; session closed", command=name
            ) from None
        except asyncio.CancelledError:
            # The reply may still arrive and would answer the next command: drop the session.
            self._abort(f"{name} cancelled")
            raise
        except (ConnectionError, OSError) as exc:
            self._connection_ended(type(exc).__name__)
            raise AGIConnectionLost(
                f"{name}: connection lost while sending", command=name
            ) from None
        except AGIError as exc:
            exc.command = exc.command or name
            raise
        finally:
            self._pending = None
        if sensitive:
            reply = reply.as_sensitive()
            self.log.debug("agi reply", command=name, code=reply.code)
        else:
            self.log.debug(
                "agi reply", command=name, code=reply.code, result=reply.result, data=reply.data
            )
        if reply.code == 200:
            return reply
        if reply.code == 510:
            raise AGIInvalidCommand(f"{name}: 510 invalid or unknown command", command=name)
        if reply.code == 511:
            self._note_hangup("511")
            raise AGIDeadChannel(f"{name}: 511 not permitted on a dead channel", command=name)
        if reply.code == 520:
            raise AGIUsageError(
                f"{name}: 520 invalid command syntax", command=name, usage=reply.usage
            )
        raise AGIError(f"{name}: unexpected reply code {reply.code}", command=name)

    def _number(self, name: str, reply: Reply) -> int:
        value = reply.result_int
        if value is None:
            raise AGIError(f"{name}: the result is not a number", command=name)
        return value

    def _io_failure(self, name: str) -> None:
        """``result=-1`` on a channel command: a hang-up if its notice came, else a failure."""
        if self._hung_up:
            raise AGIHangup(f"{name}: the caller hung up", command=name)

    def _input_limit(self, wait_ms: int) -> float:
        """The limit for a command that may wait ``wait_ms`` for the caller: the session's limit
        (for the prompt and Asterisk itself) plus that wait; none for a wait without end (< 0)."""
        if self._command_timeout is None or wait_ms < 0:
            return math.inf
        return self._command_timeout + wait_ms / 1000

    async def _play(
        self,
        name: str,
        *args: str | int,
        timeout: float | None = None,  # noqa: ASYNC109 - as execute()
    ) -> PlayResult:
        reply = await self.execute(name, *args, timeout=timeout, sensitive=True)
        value = self._number(name, reply)
        endpos = reply.endpos or 0
        if value < 0:
            self._io_failure(name)
            return PlayResult(None, endpos, failed=True)
        return PlayResult(_key(value), endpos)

    # -- typed helpers (channel I/O) --------------------------------------------------------------
    async def answer(self) -> bool:
        """ANSWER; ``False`` when Asterisk could not answer (:class:`AGIHangup` if hung up)."""
        reply = await self.execute("ANSWER")
        if self._number("ANSWER", reply) < 0:
            self._io_failure("ANSWER")
            return False
        return True

    async def stream_file(
        self, file: str, escape_digits: str = "", offset: int | None = None
    ) -> PlayResult:
        """STREAM FILE; the escape key pressed stops it and is returned (consumed)."""
        args: list[str | int] = [file, _escape_digits(escape_digits)]
        if offset is not None:
            args.append(offset)
        return await self._play("STREAM FILE", *args)

    async def get_option(
        self, file: str, escape_digits: str, timeout_ms: int | None = None
    ) -> PlayResult:
        """GET OPTION: like STREAM FILE, then waits ``timeout_ms`` for one escape key."""
        args: list[str | int] = [file, _escape_digits(escape_digits)]
        if timeout_ms is not None:
            args.append(timeout_ms)
        wait = _GET_OPTION_DEFAULT_MS if timeout_ms is None else timeout_ms
        return await self._play("GET OPTION", *args, timeout=self._input_limit(wait))

    async def say_digits(self, digits: str | int, escape_digits: str = "") -> PlayResult:
        """SAY DIGITS with Asterisk's own sounds (``endpos`` is 0)."""
        return await self._play("SAY DIGITS", digits, _escape_digits(escape_digits))

    async def say_number(
        self, number: int | str, escape_digits: str = "", gender: str | None = None
    ) -> PlayResult:
        """SAY NUMBER with Asterisk's own sounds (``endpos`` is 0)."""
        args: list[str | int] = [number, _escape_digits(escape_digits)]
        if gender is not None:
            args.append(gender)
        return await self._play("SAY NUMBER", *args)

    async def get_data(self, file: str, timeout_ms: int, max_digits: int) -> DataResult:
        """GET DATA: plays ``file`` and collects keys until ``#``, ``max_digits`` or the timeout.

        ``timeout_ms`` applies before each key (Asterisk restarts it), so the reply may take the
        prompt plus ``timeout_ms × max_digits``; 0 is Asterisk's default, < 0 waits for ever."""
        per_key = _GET_DATA_DEFAULT_MS if timeout_ms == 0 else timeout_ms
        wait = per_key * max(max_digits, 1) if per_key >= 0 else -1
        reply = await self.execute(
            "GET DATA",
            file,
            timeout_ms,
            max_digits,
            timeout=self._input_limit(wait),
            sensitive=True,
        )
        if reply.result == "-1":
            self._io_failure("GET DATA")
            return DataResult("", failed=True)
        if not _KEYS.fullmatch(reply.result):
            raise AGIError("GET DATA: the result is not keypad digits", command="GET DATA")
        return DataResult(reply.result, timed_out=reply.data == "timeout")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """WAIT FOR DIGIT: the key, or ``None`` on timeout. ``-1`` only comes with a hang-up:
        :class:`AGIHangup`."""
        reply = await self.execute(
            "WAIT FOR DIGIT", timeout_ms, timeout=self._input_limit(timeout_ms), sensitive=True
        )
        value = self._number("WAIT FOR DIGIT", reply)
        if value < 0:
            raise AGIHangup("WAIT FOR DIGIT: the caller hung up", command="WAIT FOR DIGIT")
        return _key(value)

    async def set_music(self, on: bool, music_class: str | None = None) -> None:
        """SET MUSIC ON [class] / SET MUSIC OFF: hold music plays while the server works."""
        if on:
            args: tuple[str, ...] = ("ON",) if music_class is None else ("ON", music_class)
            await self.execute("SET MUSIC", *args)
        else:
            await self.execute("SET MUSIC", "OFF")

    async def hangup(self, channel: str | None = None) -> bool:
        """HANGUP [channel]; ``False`` when the channel was not found."""
        reply = await self.execute("HANGUP", *(() if channel is None else (channel,)))
        return self._number("HANGUP", reply) == 1

    # -- typed helpers (allowed after a hang-up too) ----------------------------------------------
    async def set_variable(self, name: str, value: str | int) -> None:
        """SET VARIABLE. Never card data: channel variables show in AMI, CDRs and the CLI."""
        await self.execute("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        """GET VARIABLE (a name ending in ``)`` is a dialplan function); ``None`` when unset."""
        reply = await self.execute("GET VARIABLE", name)
        return (reply.data or "") if reply.result == "1" else None

    async def get_full_variable(self, expr: str, channel: str | None = None) -> str | None:
        """GET FULL VARIABLE: ``expr`` with ``${...}`` substituted; ``None`` when unset."""
        args = (expr,) if channel is None else (expr, channel)
        reply = await self.execute("GET FULL VARIABLE", *args)
        return (reply.data or "") if reply.result == "1" else None

    async def exec(self, app: str, *options: str | int) -> int:
        """EXEC app [options]: the options are joined with commas into the application's one
        argument, as in the dialplan. Returns the application's result (``-2``: no such app)."""
        if not isinstance(app, str) or not _APP.fullmatch(app):
            raise AGIArgumentError("EXEC: an application name is letters, digits and _")
        args: tuple[str, ...] = (",".join(str(o) for o in options),) if options else ()
        reply = await self.execute("EXEC", app, *args)
        return self._number("EXEC", reply)

    async def verbose(self, message: str, level: int = 1) -> None:
        """VERBOSE "message" level: a line on Asterisk's console."""
        await self.execute("VERBOSE", Quoted(message), level)

    async def noop(self) -> None:
        await self.execute("NOOP")

    # -- ending -----------------------------------------------------------------------------------
    async def close(self) -> None:
        """End the session politely: half-close our side, let Asterisk send its last ``HANGUP``
        and close (bounded by ``close_timeout``), then release the socket. Idempotent."""
        if self._close_started:
            await self._closed_event.wait()
            return
        self._close_started = True
        try:
            if self._pending is not None:
                # Another task is waiting for a reply that can no longer be used.
                self._abort("closed while a command was outstanding")
            elif self._lost is None and not self._peer_eof:
                with contextlib.suppress(OSError, RuntimeError):
                    if self._writer.can_write_eof():
                        self._writer.write_eof()
                try:
                    async with asyncio.timeout(self._close_timeout):
                        await asyncio.wait([self._reader_task])
                except TimeoutError:
                    self.log.debug("agi peer did not close in time")
        finally:
            await self._release()
            self._closed_event.set()

    async def _release(self) -> None:
        if not self._reader_task.done():
            self._reader_task.cancel()
        transport = self._writer.transport
        if self._peer_eof and not transport.is_closing():
            self._writer.close()
        else:
            transport.abort()
        await asyncio.wait([self._reader_task])
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._close_timeout):
                await self._writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once (no polite close); for shutdown paths."""
        if self._lost is None:
            self._lost = "aborted"
        self._fail_pending(AGIConnectionLost("session aborted"))
        self._writer.transport.abort()
        if not self._reader_task.done():
            self._reader_task.cancel()
