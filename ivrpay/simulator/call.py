"""The simulated channel on the wire: a FastAGI client that behaves as Asterisk 22 does.

It connects to the server, sends the ``agi_*`` block, answers each command line as Asterisk would
(:mod:`ivrpay.simulator.asterisk`) and writes the out-of-band ``HANGUP`` lines Asterisk writes: at
once when the caller hangs up between commands, after the interrupted command's ``200 result=-1``
when it hangs up during one, twice and then closing with ``exit_on_hangup`` (AGIEXITONHANGUP), and
once more when the server closes its side. The server falling silent for ``silence_timeout``
seconds ends the call (the caller gives up).

For tests that act mid-call::

    async with SimulatedCall(host, port, keys=["4111111111111111#", "1231"]) as call:
        pause = call.pause_at("SET MUSIC ON")       # hold that command when it arrives
        await pause.reached()
        await call.hang_up()                        # the caller hangs up while the gateway runs
        pause.release()
    record = call.record

or :meth:`SimulatedCall.on_command` to run a callback as a command arrives (press keys during it,
hang up during it). ``place_call(...)`` does it all in one step for a scripted caller.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ivrpay.simulator.asterisk import Channel, CommandSpec, HangupRequest, find_command
from ivrpay.simulator.env import (
    ChannelSpec,
    build_request,
    environment,
    environment_block,
)
from ivrpay.simulator.keys import Entry, check_keys, mask_digits, parse_keys
from ivrpay.simulator.parsing import AGI_BUF_LEN, parse_args
from ivrpay.simulator.record import CallRecord, Ending, Note, WireLine
from ivrpay.simulator.sounds import SoundLibrary

_MAX_COMMAND = AGI_BUF_LEN - 1  # bytes Asterisk reads as one command, newline included
_REPLY_LIKE = re.compile(rb"\d{3}[ -]")
_DIGIT_RUN = re.compile(r"(?<!\d)\d{12,19}(?!\d)")
# A UUID's last group is 12 hex digits, all decimal about one time in 300: not a card number.
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)


@dataclass(frozen=True)
class Command:
    """A command line as it arrived, and how Asterisk reads it."""

    index: int  # 0-based, in the order of arrival
    line: bytes  # without the newline
    text: str  # the line decoded as latin-1 (byte for byte)
    argv: list[str]
    name: str | None  # the matched command ("STREAM FILE"), None when unknown

    def __repr__(self) -> str:
        return f"Command({self.index}, {mask_digits(self.text)!r})"


Match = str | int | Callable[[Command], bool]
Action = Callable[["SimulatedCall", Command], Awaitable[None] | None]


def _matches(match: Match, cmd: Command) -> bool:
    if isinstance(match, int):
        return cmd.index == match
    if isinstance(match, str):
        return cmd.text.upper().startswith(match.upper())
    return bool(match(cmd))


@dataclass
class _Hook:
    match: Match
    action: Action
    once: bool
    fired: bool = False


class Breakpoint:
    """Holds the first command matching ``match`` before Asterisk answers it, until released
    (or until the caller hangs up: the command then answers as a hung-up one)."""

    def __init__(self, call: SimulatedCall, match: Match) -> None:
        self._call = call
        self.match = match
        self.command: Command | None = None
        self._reached = asyncio.Event()
        self._released = asyncio.Event()

    async def reached(self) -> Command:
        """The held command; raises RuntimeError if the call ends before it arrives."""
        if not self._reached.is_set():
            waiters = [
                asyncio.ensure_future(self._reached.wait()),
                asyncio.ensure_future(self._call._done.wait()),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        if self.command is None:
            raise RuntimeError(f"the call ended before a command matching {self.match!r} arrived")
        return self.command

    def release(self) -> None:
        self._released.set()

    async def _hold(self, call: SimulatedCall, cmd: Command) -> None:
        self.command = cmd
        self._reached.set()
        call._pause = self
        try:
            await self._released.wait()
        finally:
            call._pause = None


class SimulatedCall:
    """One call from the Asterisk stand-in to a FastAGI server.

    ``keys``: the caller's entries (see :mod:`ivrpay.simulator.keys`). ``args``: ``agi_arg_1..N``.
    ``language``: the channel's language when ``channel`` is not given. ``sounds_dir``: where
    prompt files are looked up (``None``: every prompt exists). ``carry_over_keys=False`` drops
    keys pressed while no command runs (fixture 03b). ``exit_on_hangup``: AGIEXITONHANGUP=yes.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        script: str = "pay",
        query: str | None = None,
        args: Sequence[str] = (),
        keys: str | Iterable[str | Entry] | None = (),
        language: str = "ja",
        sounds_dir: str | Path | None = None,
        channel: ChannelSpec | None = None,
        carry_over_keys: bool = True,
        exit_on_hangup: bool = False,
        silence_timeout: float = 30.0,
        connect_timeout: float = 2.0,
        reaction_ms: int = 140,
    ) -> None:
        self.host, self.port = host, port
        spec = (channel or ChannelSpec(language=language)).resolved()
        request = spec.request or build_request(host, port, script, query)
        self._env = environment(spec, request, tuple(args))
        self.record = CallRecord(env=dict(self._env))
        self._channel = Channel(
            spec,
            SoundLibrary(sounds_dir),
            self.record,
            deque(parse_keys(keys)),
            carry_over_keys=carry_over_keys,
            reaction_ms=reaction_ms,
        )
        self.exit_on_hangup = exit_on_hangup
        self.silence_timeout = silence_timeout
        self.connect_timeout = connect_timeout
        self._hooks: list[_Hook] = []
        self._pause: Breakpoint | None = None
        self._running: Command | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._split = False  # the last line read was cut at Asterisk's buffer length
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._done = asyncio.Event()

    # ----------------------------------------------------------------- state
    @property
    def spec(self) -> ChannelSpec:
        return self._channel.spec

    @property
    def language(self) -> str:
        return self._channel.language

    @property
    def hung_up(self) -> bool:
        return self._channel.dead

    @property
    def finished(self) -> bool:
        return self._task is not None and self._task.done()

    @property
    def carry_over_keys(self) -> bool:
        return self._channel.carry_over_keys

    @carry_over_keys.setter
    def carry_over_keys(self, value: bool) -> None:
        self._channel.carry_over_keys = value

    # ----------------------------------------------------------------- test API
    def on_command(self, match: Match, action: Action, *, once: bool = True) -> None:
        """Run ``action(call, command)`` when a matching command arrives, before it is answered.

        ``match``: the command's index, a case-insensitive prefix of its line, or a predicate.
        In the action, :meth:`press` sends keys into that command and :meth:`hang_up` hangs up
        during it.
        """
        self._hooks.append(_Hook(match, action, once))

    def pause_at(self, match: Match) -> Breakpoint:
        bp = Breakpoint(self, match)
        self.on_command(match, bp._hold)
        return bp

    def press(self, keys: str) -> None:
        """The caller presses keys now: into the command running, else into the next command
        that listens (or nowhere, when keys between commands are dropped)."""
        self._channel.press(check_keys(keys))

    def add_keys(self, keys: str | Iterable[str | Entry]) -> None:
        """More entries for the scripted caller."""
        self._channel.entries.extend(parse_keys(keys))

    async def hang_up(self, *, at_ms: int | None = None) -> None:
        """The caller hangs up.

        Between commands Asterisk writes ``HANGUP`` at once (this returns once it is written).
        During a command (from a hook or a pause) that command answers as a hung-up one —
        ``at_ms`` into its prompt (default ``reaction_ms``) — and ``HANGUP`` follows.
        """
        ch = self._channel
        if self._closed or ch.dead or ch.hangup is not None:
            return
        ch.hangup = HangupRequest(at_ms=at_ms)
        if self._running is not None:
            if self._pause is not None:
                self._pause.release()
            return
        await self._signal_hangup()

    # ----------------------------------------------------------------- life cycle
    async def start(
        self, streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    ) -> None:
        """Connect and send the environment. ``streams``: talk over this pair instead of a
        FastAGI connection (a classic AGI process's stdout and stdin)."""
        if streams is not None:
            self._reader, self._writer = streams
        else:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            except TimeoutError:
                raise ConnectionError(f"connecting to {self.host}:{self.port} timed out") from None
        await self._send(environment_block(self._env))
        self._task = asyncio.create_task(self._run(), name=f"simulated-call-{self.spec.uniqueid}")

    async def wait(self) -> CallRecord:
        """Until the session ends; the record of the call."""
        if self._task is None:
            raise RuntimeError("the call was not started")
        await asyncio.shield(self._task)
        return self.record

    async def abort(self) -> None:
        """Drop the connection at once (the record ends ``ABORTED``)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._finish(Ending.ABORTED)
        self._done.set()

    async def __aenter__(self) -> SimulatedCall:
        await self.start()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            await self.abort()
        else:
            await self.wait()

    # ----------------------------------------------------------------- the session
    async def _run(self) -> None:
        try:
            while not self._closed:
                try:
                    async with asyncio.timeout(self.silence_timeout):
                        line = await self._readline()
                except TimeoutError:
                    self.record.timeline.append(Note("the server fell silent; the caller gives up"))
                    await self._end(Ending.SERVER_SILENT)
                    break
                except ConnectionError:
                    # A reset is the server closing with our last lines unread: to Asterisk
                    # it is the end of the script all the same.
                    self.record.timeline.append(Note("connection reset by the server"))
                    await self._end(Ending.SERVER_CLOSED)
                    break
                if line is None:
                    if not self._closed:
                        await self._end(Ending.SERVER_CLOSED)
                    break
                await self._handle(line)
        finally:
            self._finish(Ending.ABORTED)
            self._done.set()

    async def _readline(self) -> bytes | None:
        """One command as Asterisk reads it: up to ``\\n`` or 2047 bytes; None at EOF."""
        assert self._reader is not None
        self._split = False
        while True:
            i = self._buf.find(b"\n", 0, _MAX_COMMAND)
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                return line
            if len(self._buf) >= _MAX_COMMAND:
                line = bytes(self._buf[:_MAX_COMMAND])
                del self._buf[:_MAX_COMMAND]
                self._split = True
                self._line_error(line, "longer than 2046 bytes: Asterisk splits it in two commands")
                return line
            chunk = await self._reader.read(65536)
            if not chunk:
                if self._buf:  # Asterisk still runs a last line that has no newline
                    line = bytes(self._buf)
                    self._buf.clear()
                    self._line_error(line, "no newline before the end of the stream")
                    return line
                return None
            self._buf += chunk

    async def _handle(self, line: bytes) -> None:
        index = len(self.record.commands)
        text = line.decode("latin-1")
        self.record.commands.append(text)
        self.record.wire.append(WireLine("S", line))
        self._check_line(index, line, text)
        if text[:7].lower() == "failure":
            # res_agi's "failure" line: AGISTATUS=FAILURE, the session ends.
            self.record.agistatus = "FAILURE"
            await self._end(Ending.SERVER_FAILURE)
            return
        # The next command is already here before this one's reply: the server pipelines (the
        # rest of a line cut at Asterisk's buffer length is no new command of the server's).
        pipelined = bool(self._buf) and not self._split
        if pipelined:
            self.record.protocol_errors.append(
                f"command {index + 1}: sent before the reply to command {index} (never pipeline)"
            )
        argv = parse_args(text)
        spec: CommandSpec | None = find_command(argv)
        cmd = Command(index, line, text, argv, spec.name if spec else None)
        self._running = cmd
        self._channel.running = True
        try:
            await self._run_hooks(cmd)
            if self._closed:
                return
            outcome = self._channel.execute(spec, argv, pipelined=pipelined)
        finally:
            self._running = None
            self._channel.running = False
        await self._send(outcome.lines)
        self._channel.after_command()
        if self._channel.hangup is not None and not self._closed:
            await self._signal_hangup()

    async def _run_hooks(self, cmd: Command) -> None:
        for hook in list(self._hooks):
            if (hook.fired and hook.once) or not _matches(hook.match, cmd):
                continue
            hook.fired = True
            result = hook.action(self, cmd)
            if inspect.isawaitable(result):
                await result

    async def _signal_hangup(self) -> None:
        """The line dropped: Asterisk writes HANGUP (twice, then closes, with AGIEXITONHANGUP)."""
        ch = self._channel
        request = ch.hangup or HangupRequest()
        ch.hangup = None
        ch.mark_dead(request.by)
        if self.exit_on_hangup:
            await self._send([b"HANGUP", b"HANGUP"])
            self._finish(Ending.CALLER_HUNG_UP)
        else:
            await self._send([b"HANGUP"])

    async def _end(self, ending: Ending) -> None:
        """The AGI ends: Asterisk writes its last HANGUP and closes the socket."""
        self._finish_record(ending)
        await self._send([b"HANGUP"])
        self._finish(ending)

    def _finish_record(self, ending: Ending) -> None:
        if self.record.ended is None:
            self.record.ended = ending

    def _finish(self, ending: Ending) -> None:
        self._finish_record(ending)
        if not self._closed:
            self._closed = True
            if self._buf:  # the server wrote on after Asterisk had ended the session
                self._line_error(bytes(self._buf), "sent after the session ended")
                self._buf.clear()
            if self._writer is not None:
                self._writer.close()

    async def _send(self, lines: Sequence[bytes | str]) -> None:
        if self._closed or self._writer is None or not lines:
            return
        data = [x if isinstance(x, bytes) else x.encode("latin-1") for x in lines]
        self.record.wire.extend(WireLine("A", d) for d in data)
        try:
            self._writer.write(b"".join(d + b"\n" for d in data))
            async with asyncio.timeout(self.silence_timeout):
                await self._writer.drain()
        except TimeoutError:  # the server stopped reading: give up as on a silent server
            self.record.timeline.append(Note("the server stopped reading"))
            self._finish(Ending.SERVER_SILENT)
        except ConnectionError:
            self.record.timeline.append(Note("the server's side is gone"))

    # ----------------------------------------------------------------- protocol checks
    def _check_line(self, index: int, line: bytes, text: str) -> None:
        if any(b >= 0x80 for b in line):
            self._line_error(line, "non-ASCII byte in the command", index)
        if b"\0" in line:
            self._line_error(line, "NUL in the command: Asterisk stops reading there", index)
        if b"\r" in line:
            self._line_error(line, "CR in the command: Asterisk keeps it in the last word", index)
        if _REPLY_LIKE.match(line):
            self._line_error(line, "a reply line sent as a command", index)
        if any(_luhn(m.group()) for m in _DIGIT_RUN.finditer(_UUID.sub("-", text))):
            self.record.card_like_commands.append(index)

    def _line_error(self, line: bytes, what: str, index: int | None = None) -> None:
        where = len(self.record.commands) if index is None else index
        shown = mask_digits(line.decode("latin-1"))[:60]  # masked first: a cut hides no digits
        self.record.protocol_errors.append(f"command {where} {shown!r}: {what}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


async def place_call(
    host: str,
    port: int,
    *,
    script: str = "pay",
    query: str | None = None,
    args: Sequence[str] = (),
    keys: str | Iterable[str | Entry] | None = (),
    language: str = "ja",
    sounds_dir: str | Path | None = None,
    hang_up_at: Match | None = None,
    **options: object,
) -> CallRecord:
    """Place one scripted call and return its record when the session ends.

    ``hang_up_at``: the caller hangs up when a matching command arrives (a prefix such as
    ``"SET MUSIC ON"``: Asterisk answers it, then writes ``HANGUP`` — a hang-up while the server
    waits for the gateway). Other options: those of :class:`SimulatedCall`.
    """
    call = SimulatedCall(
        host,
        port,
        script=script,
        query=query,
        args=args,
        keys=keys,
        language=language,
        sounds_dir=sounds_dir,
        **options,  # type: ignore[arg-type]
    )
    if hang_up_at is not None:
        call.on_command(hang_up_at, lambda c, _cmd: c.hang_up())
    await call.start()
    return await call.wait()
