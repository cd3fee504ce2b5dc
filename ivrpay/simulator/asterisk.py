"""What Asterisk 22 does with each AGI command on one channel: the stand-in's PBX half, no sockets.

Modelled on ``res_agi.c`` and the transcripts of ``tests/fixtures/agi/``, quirks included:
command words match case-insensitively; after the caller hangs up only EXEC, GET VARIABLE,
GET FULL VARIABLE, SET VARIABLE, VERBOSE, NOOP and DATABASE * still run (others: 511); a
missing STREAM FILE / GET OPTION prompt answers ``-1 endpos=0`` and leaves AGISTATUS=FAILURE
behind, a missing GET DATA prompt ``-1`` and does not; GET OPTION turns a hang-up after its
prompt into ``result=0`` (``strchr(edigits, -1)`` fails); a command arriving while STREAM FILE,
GET DATA, GET OPTION or SAY plays aborts it with no reply at all (WAIT FOR DIGIT: ``result=1``).

Time is not simulated: a request with no key times out at once. Keys that land "during" a prompt do
so ``reaction_ms`` (140 ms) into it, which gives the ``endpos=1120`` of the fixtures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ivrpay.simulator.env import ChannelSpec, wire_text
from ivrpay.simulator.keys import Entry, mask_digits
from ivrpay.simulator.parsing import ascii_upper, atoi, scan_int
from ivrpay.simulator.record import CallRecord, KeyEntry, Note, Prompt
from ivrpay.simulator.sounds import PromptFile, SoundLibrary, ms_to_samples
from ivrpay.simulator.usage import usage_reply

REPLY_510 = "510 Invalid or unknown command"
REPLY_511 = "511 Command Not Permitted on a dead channel or intercept routine"
DEFAULT_REACTION_MS = 140
DEFAULT_OPTION_TIMEOUT_MS = 5000  # GET OPTION without a timeout uses the dialplan's (5 s)
CHANNEL_STATE_UP = 6
_NEVER = 1 << 62


@dataclass(frozen=True)
class CommandSpec:
    words: tuple[str, ...]
    handler: str | None  # method name; None: a real command the stand-in does not play
    dead_ok: bool = False  # still allowed after the hang-up
    abort: Literal["silent", "one"] | None = None  # how a pipelined next command aborts it

    @property
    def name(self) -> str:
        return " ".join(self.words)


def _spec(
    words: str, handler: str | None, dead_ok: bool = False, abort: str | None = None
) -> CommandSpec:
    return CommandSpec(tuple(words.split()), handler, dead_ok, abort)  # type: ignore[arg-type]


# Every command Asterisk 22 knows, so that a real one never gets the 510 of an unknown one.
COMMANDS: tuple[CommandSpec, ...] = (
    _spec("ANSWER", "_answer"),
    _spec("ASYNCAGI BREAK", None, dead_ok=True),
    _spec("CHANNEL STATUS", "_channel_status"),
    _spec("CONTROL STREAM FILE", None),
    _spec("DATABASE DEL", "_database_del", dead_ok=True),
    _spec("DATABASE DELTREE", "_database_deltree", dead_ok=True),
    _spec("DATABASE GET", "_database_get", dead_ok=True),
    _spec("DATABASE PUT", "_database_put", dead_ok=True),
    _spec("EXEC", "_exec", dead_ok=True),
    _spec("GET DATA", "_get_data", abort="silent"),
    _spec("GET FULL VARIABLE", "_get_full_variable", dead_ok=True),
    _spec("GET OPTION", "_get_option", abort="silent"),
    _spec("GET VARIABLE", "_get_variable", dead_ok=True),
    _spec("GOSUB", "_gosub"),
    _spec("HANGUP", "_hangup"),
    _spec("NOOP", "_noop", dead_ok=True),
    _spec("RECEIVE CHAR", None),
    _spec("RECEIVE TEXT", None),
    _spec("RECORD FILE", None),
    _spec("SAY ALPHA", "_say_alpha", abort="silent"),
    _spec("SAY DATE", None),
    _spec("SAY DATETIME", None),
    _spec("SAY DIGITS", "_say_digits", abort="silent"),
    _spec("SAY NUMBER", "_say_number", abort="silent"),
    _spec("SAY PHONETIC", "_say_phonetic", abort="silent"),
    _spec("SAY TIME", None),
    _spec("SEND IMAGE", "_send_image"),
    _spec("SEND TEXT", "_send_text"),
    _spec("SET AUTOHANGUP", "_set_autohangup"),
    _spec("SET CALLERID", "_set_callerid"),
    _spec("SET CONTEXT", "_set_context"),
    _spec("SET EXTENSION", "_set_extension"),
    _spec("SET MUSIC", "_set_music"),
    _spec("SET PRIORITY", "_set_priority"),
    _spec("SET VARIABLE", "_set_variable", dead_ok=True),
    _spec("SPEECH ACTIVATE GRAMMAR", None),
    _spec("SPEECH CREATE", None),
    _spec("SPEECH DEACTIVATE GRAMMAR", None),
    _spec("SPEECH DESTROY", None),
    _spec("SPEECH LOAD GRAMMAR", None),
    _spec("SPEECH RECOGNIZE", None),
    _spec("SPEECH SET", None),
    _spec("SPEECH UNLOAD GRAMMAR", None),
    _spec("STREAM FILE", "_stream_file", abort="silent"),
    _spec("TDD MODE", "_tdd_mode"),
    _spec("VERBOSE", "_verbose", dead_ok=True),
    _spec("WAIT FOR DIGIT", "_wait_for_digit", abort="one"),
)


def find_command(argv: list[str]) -> CommandSpec | None:
    """``find_command``: every word of the command must match; later words are its arguments."""
    upper = [ascii_upper(a) for a in argv]
    for spec in COMMANDS:
        n = len(spec.words)
        if len(upper) >= n and tuple(upper[:n]) == spec.words:
            return spec
    return None


@dataclass
class HangupRequest:
    """The line is going to drop: ``at_ms`` into the prompt playing (None: ``reaction_ms``)."""

    at_ms: int | None = None
    by: Literal["caller", "server"] = "caller"


@dataclass
class Outcome:
    lines: list[str]
    failed: bool = False  # the handler's RESULT_FAILURE (AGISTATUS=FAILURE unless hung up)


@dataclass
class _Keys:
    keys: str = ""
    during: bool = False  # they land while the prompt plays (else after it)

    def __repr__(self) -> str:
        return f"_Keys({mask_digits(self.keys)!r}, during={self.during})"


class _ShowUsage(Exception):
    pass


@dataclass
class Channel:
    """The PBX's side of one call: channel state, the caller's keys, and the command handlers."""

    spec: ChannelSpec  # resolved
    sounds: SoundLibrary
    record: CallRecord
    entries: deque[Entry] = field(default_factory=deque)
    carry_over_keys: bool = True
    reaction_ms: int = DEFAULT_REACTION_MS

    def __post_init__(self) -> None:
        self.language = wire_text(self.spec.language)
        self.channel_name = wire_text(str(self.spec.channel))
        self.vars: dict[str, str] = {}
        self.db: dict[tuple[str, str], str] = {}
        self.pending: deque[str] = deque()  # keys pressed that the next listening command gets
        self.dead = False  # the hang-up has been signalled: I/O commands get 511
        self.hangup: HangupRequest | None = None
        self.music = False
        self.running = False  # a command is being handled (set by the socket side)
        self._entry_at: int | None = None  # where this command's key entry sits in the timeline

    # ----------------------------------------------------------------- the socket side's API
    def execute(
        self, spec: CommandSpec | None, argv: list[str], *, pipelined: bool = False
    ) -> Outcome:
        """Run one parsed command; the reply lines come back without their newlines."""
        if spec is None:
            self._protocol_error(argv, "unknown command (510)")
            return Outcome([REPLY_510])
        if self.dead and not spec.dead_ok:
            self.record.refused_commands.append(spec.name)
            return Outcome([REPLY_511])
        if spec.handler is None:
            self.record.unsimulated.append(spec.name)
            self._protocol_error(argv, "a command the stand-in does not simulate (answered 510)")
            return Outcome([REPLY_510])
        if pipelined and spec.abort:
            # The next command was already waiting: Asterisk drops this one's reply.
            self._protocol_error(argv, "sent before the previous reply: aborted without a reply")
            return Outcome(["200 result=1"] if spec.abort == "one" else [])
        handler: Callable[[list[str]], Outcome] = getattr(self, spec.handler)
        self._entry_at = None
        try:
            outcome = handler(argv)
        except _ShowUsage:
            self._protocol_error(argv, "wrong arguments (520)")
            return Outcome(usage_reply(spec.words))
        if outcome.failed and (self.dead or self.hangup is None):
            self.record.agistatus = "FAILURE"
        return outcome

    def after_command(self) -> None:
        """Keys still pending when a command returns are dropped in the 'drop' timing (03b)."""
        if not self.carry_over_keys and self.pending:
            self.record.dropped_keys += len(self.pending)
            self.pending.clear()

    def press(self, keys: str) -> None:
        self.record.entries.append(KeyEntry("press", mask_digits(keys)))
        self.record.timeline.append(self.record.entries[-1])
        if not self.running and not self.carry_over_keys:
            self.record.dropped_keys += len(keys)  # nothing listens between commands
            return
        self.pending.extend(keys)

    def mark_dead(self, by: Literal["caller", "server"]) -> None:
        self.dead = True
        self.record.hung_up = True
        self.record.hung_up_by = by
        if self.record.agistatus == "SUCCESS":
            self.record.agistatus = "HANGUP"
        who = "caller hangs up" if by == "caller" else "the server hung up the channel"
        self.record.timeline.append(Note(who))

    # ----------------------------------------------------------------- helpers
    def _protocol_error(self, argv: list[str], what: str) -> None:
        shown = mask_digits(" ".join(argv))[:60]
        index = len(self.record.commands) - 1
        self.record.protocol_errors.append(f"command {index} {shown!r}: {what}")

    def _take(self, command: str, *, request: bool, escape: str = "") -> _Keys:
        """The keys reaching a command that listens: keys already pressed, else — for an input
        request, or a barge-in entry at a prompt with escape digits — the caller's next entry."""
        if self.pending:
            keys = "".join(self.pending)
            self.pending.clear()
            return _Keys(keys, during=True)
        if not self.entries or self.hangup is not None:
            return _Keys()  # a caller who is hanging up keys nothing more
        head = self.entries[0]
        if not (request or (head.barge_in and escape)):
            return _Keys()
        self.entries.popleft()
        entry = KeyEntry(command, head.masked)
        self.record.entries.append(entry)
        self._entry_at = len(self.record.timeline)
        self.record.timeline.append(entry)
        if head.kind == "silence":
            return _Keys()
        if head.kind == "hangup":
            if self.hangup is None:
                self.hangup = HangupRequest()
            return _Keys(during=True)
        return _Keys(head.keys, during=head.barge_in)

    def _find(self, name: str, command: str) -> PromptFile:
        pf = self.sounds.find(name, self.language)
        if pf.missing:
            self.record.missing_prompts.append(pf.wanted)
            self._heard(pf, command)
        elif pf.fallback:
            self.record.fallback_prompts.append(pf.wanted)
        return pf

    def _heard(self, pf: PromptFile, command: str, interrupted: bool = False) -> None:
        prompt = Prompt(
            pf.name,
            self.language,
            command,
            missing=pf.missing,
            played_from=pf.found_in if pf.fallback else None,
            interrupted=interrupted,
        )
        self._to_timeline(prompt)

    def _to_timeline(self, prompt: Prompt) -> None:
        # The caller hears a command's prompt before keying the entry the command took.
        self.record.prompts.append(prompt)
        if self._entry_at is None:
            self.record.timeline.append(prompt)
        else:
            self.record.timeline.insert(self._entry_at, prompt)
            self._entry_at += 1

    def _said(self, what: str, command: str, interrupted: bool = False) -> None:
        self._to_timeline(Prompt(what, self.language, command, interrupted=interrupted))

    def _key_pos(self, start: int, length: int) -> int:
        return min(length, start + ms_to_samples(self.reaction_ms))

    def _hangup_pos(self, start: int) -> int:
        """Where in the prompt the line drops (``_NEVER`` when it does not)."""
        if self.hangup is None:
            return _NEVER
        ms = self.hangup.at_ms if self.hangup.at_ms is not None else self.reaction_ms
        return start + ms_to_samples(ms)

    def _give_up(self) -> None:
        """An endless wait with nothing left to press: the caller hangs up."""
        if self.hangup is None:
            self.hangup = HangupRequest()
            self.record.timeline.append(Note("the caller gives up waiting"))

    def _set_var(self, name: str, value: str) -> None:
        fname, _, arg = name.partition("(")
        if (
            name.endswith(")")
            and ascii_upper(fname) == "CHANNEL"
            and ascii_upper(arg[:-1]) == "LANGUAGE"
        ):
            self.language = value
        key = name.lstrip("_") if not name.endswith(")") else name  # _X / __X: inheritance marks
        self.vars[key] = value
        self.record.variables[key] = value

    def _get_var(self, name: str) -> str | None:
        if name.endswith(")"):
            return self._read_function(name)
        builtin = {
            "CHANNEL": self.channel_name,
            "UNIQUEID": str(self.spec.uniqueid),
            "CONTEXT": self.spec.context,
            "EXTEN": self.spec.extension,
            "PRIORITY": str(self.spec.priority),
            "EPOCH": str(int(time.time())),
        }.get(name)
        return builtin if builtin is not None else self.vars.get(name)

    def _read_function(self, expr: str) -> str | None:
        fname, _, arg = expr[:-1].partition("(")
        fname, key = ascii_upper(fname), ascii_upper(arg)
        if fname == "CHANNEL" and key in ("LANGUAGE", "NAME", "UNIQUEID"):
            return {"LANGUAGE": self.language, "NAME": self.channel_name}.get(
                key, str(self.spec.uniqueid)
            )
        if fname == "CALLERID" and key in ("NUM", "NUMBER", "NAME"):
            return self.spec.callerid if key != "NAME" else self.spec.calleridname
        if fname == "LEN":
            return str(len(arg))
        return self.vars.get(expr)

    def _substitute(self, text: str) -> str:
        """``${...}`` expressions, nested ones included, as GET FULL VARIABLE evaluates them."""
        out: list[str] = []
        i = 0
        while i < len(text):
            if not text.startswith("${", i):
                out.append(text[i])
                i += 1
                continue
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            if depth:  # unterminated: Asterisk leaves the rest as it is
                out.append(text[i:])
                break
            out.append(self._get_var(self._substitute(text[i + 2 : j - 1])) or "")
            i = j
        return "".join(out)

    # ----------------------------------------------------------------- prompts and keys
    def _stream_file(self, argv: list[str]) -> Outcome:
        if not 4 <= len(argv) <= 5:
            raise _ShowUsage
        escape = argv[3]
        offset = 0
        if len(argv) > 4:
            value = scan_int(argv[4])
            if value is None:
                raise _ShowUsage
            offset = value
        pf = self._find(argv[2], "STREAM FILE")
        if pf.missing:
            return Outcome([f"200 result=-1 endpos={offset}"], failed=True)
        if self.music:
            self.music = False  # playing a file stops music on hold for good
            self.record.timeline.append(Note("music on hold stops"))
        length = pf.samples
        start = min(max(offset, 0), length)
        got = self._take("STREAM FILE", request=False, escape=escape)
        if start >= length:  # nothing left to play: the keys land in the next command
            self.pending.extend(got.keys)
            self._heard(pf, "STREAM FILE")
            return Outcome([f"200 result=0 endpos={length}"])
        kpos, hpos = self._key_pos(start, length), self._hangup_pos(start)
        for i, key in enumerate(got.keys):
            if key in escape and kpos <= hpos:
                self.pending.extend(got.keys[i + 1 :])
                self._heard(pf, "STREAM FILE", interrupted=True)
                return Outcome([f"200 result={ord(key)} endpos={kpos}"])
        # Keys that are not escape digits are swallowed by the playback.
        if hpos < length:
            self._heard(pf, "STREAM FILE", interrupted=True)
            return Outcome([f"200 result=-1 endpos={hpos}"], failed=True)
        self._heard(pf, "STREAM FILE")
        return Outcome([f"200 result=0 endpos={length}"])

    def _get_data(self, argv: list[str]) -> Outcome:
        if len(argv) < 3:
            raise _ShowUsage
        timeout = atoi(argv[3]) if len(argv) >= 4 else 0
        max_digits = atoi(argv[4]) if len(argv) >= 5 else 1024
        pf = None
        if argv[2]:
            pf = self._find(argv[2], "GET DATA")
            if pf.missing:
                return Outcome(["200 result=-1"])  # no FAILURE: GET DATA always "succeeds"
        got = self._take("GET DATA", request=True)
        interrupted = got.during and (bool(got.keys) or self.hangup is not None)
        if pf is not None:
            self._heard(pf, "GET DATA", interrupted=interrupted)
        if max_digits == 0:  # ast_readstring with no room: -1 at once
            self.pending.extend(got.keys)
            return Outcome(["200 result=-1"])
        digits = ""
        for i, key in enumerate(got.keys):
            if key == "#" and not digits:
                self.pending.extend(got.keys[i + 1 :])
                return Outcome(["200 result="])
            if key != "#":
                digits += key
            if key == "#" or len(digits) >= max_digits:
                self.pending.extend(got.keys[i + 1 :])
                return Outcome([f"200 result={digits}"])
        if self.hangup is None and timeout < 0:
            self._give_up()
        if self.hangup is not None:
            return Outcome(["200 result=-1"])
        return Outcome([f"200 result={digits} (timeout)"])

    def _wait_for_digit(self, argv: list[str]) -> Outcome:
        if len(argv) != 4:
            raise _ShowUsage
        timeout = scan_int(argv[3])
        if timeout is None:
            raise _ShowUsage
        got = self._take("WAIT FOR DIGIT", request=True)
        if got.keys:
            self.pending.extend(got.keys[1:])
            return Outcome([f"200 result={ord(got.keys[0])}"])
        if self.hangup is None and timeout < 0:
            self._give_up()
        if self.hangup is not None:
            return Outcome(["200 result=-1"], failed=True)
        return Outcome(["200 result=0"])

    def _get_option(self, argv: list[str]) -> Outcome:
        if not 4 <= len(argv) <= 5:
            raise _ShowUsage
        escape = argv[3]
        timeout = atoi(argv[4]) if len(argv) == 5 else DEFAULT_OPTION_TIMEOUT_MS
        pf = self._find(argv[2], "GET OPTION")
        if pf.missing:
            return Outcome(["200 result=-1 endpos=0"], failed=True)
        length = pf.samples
        got = self._take("GET OPTION", request=True, escape=escape)
        kpos, hpos = self._key_pos(0, length), self._hangup_pos(0)
        after = ""
        if got.during:
            for i, key in enumerate(got.keys):
                if key in escape and kpos <= hpos:
                    self.pending.extend(got.keys[i + 1 :])
                    self._heard(pf, "GET OPTION", interrupted=True)
                    return Outcome([f"200 result={ord(key)} endpos={kpos}"])
        else:
            after = got.keys
        if hpos < length:
            self._heard(pf, "GET OPTION", interrupted=True)
            return Outcome([f"200 result=-1 endpos={hpos}"], failed=True)
        self._heard(pf, "GET OPTION")
        if after:
            # After the prompt any key ends the wait; one that is not an escape digit reads as 0.
            self.pending.extend(after[1:])
            result = ord(after[0]) if after[0] in escape else 0
            return Outcome([f"200 result={result} endpos={length}"])
        if self.hangup is None and timeout < 0:
            self._give_up()
        # A hang-up during the wait gives -1, which strchr(edigits, -1) turns into 0.
        return Outcome([f"200 result=0 endpos={length}"])

    def _say(self, argv: list[str], what: str, command: str) -> Outcome:
        escape = argv[3]
        got = self._take(command, request=False, escape=escape)
        for i, key in enumerate(got.keys):
            if key in escape:
                self.pending.extend(got.keys[i + 1 :])
                self._said(what, command, interrupted=True)
                return Outcome([f"200 result={ord(key)}"])
        if self.hangup is not None:
            self._said(what, command, interrupted=True)
            return Outcome(["200 result=-1"], failed=True)
        self._said(what, command)
        return Outcome(["200 result=0"])

    def _say_digits(self, argv: list[str]) -> Outcome:
        if len(argv) != 4 or scan_int(argv[2]) is None:
            raise _ShowUsage
        return self._say(argv, f"say digits {argv[2]}", "SAY DIGITS")

    def _say_number(self, argv: list[str]) -> Outcome:
        if not 4 <= len(argv) <= 5 or scan_int(argv[2]) is None:
            raise _ShowUsage
        return self._say(argv, f"say number {argv[2]}", "SAY NUMBER")

    def _say_alpha(self, argv: list[str]) -> Outcome:
        if len(argv) != 4:
            raise _ShowUsage
        return self._say(argv, f"say alpha {argv[2]}", "SAY ALPHA")

    def _say_phonetic(self, argv: list[str]) -> Outcome:
        if len(argv) != 4:
            raise _ShowUsage
        return self._say(argv, f"say phonetic {argv[2]}", "SAY PHONETIC")

    # ----------------------------------------------------------------- applications
    def _exec(self, argv: list[str]) -> Outcome:
        if len(argv) < 2:
            raise _ShowUsage
        app = _APPS.get(ascii_upper(argv[1]))
        data = argv[2] if len(argv) >= 3 else ""
        if app is None:
            return Outcome(["200 result=-2"])  # no such application
        return Outcome([f"200 result={app(self, data)}"])

    def _app_playback(self, data: str) -> int:
        files = data.split(",", 1)[0]
        if not files:
            return -1  # "Playback requires an argument (filename)"
        self.pending.clear()  # Playback listens to no key: the line's keys are discarded
        hpos, elapsed, status = self._hangup_pos(0), 0, "SUCCESS"
        for name in files.split("&"):
            pf = self._find(name, "EXEC Playback")
            if pf.missing:
                status = "FAILED"
                continue
            if hpos < elapsed + pf.samples:
                self._heard(pf, "EXEC Playback", interrupted=True)
                self.vars["PLAYBACKSTATUS"] = "FAILED"
                return -1
            self._heard(pf, "EXEC Playback")
            elapsed += pf.samples
        self.vars["PLAYBACKSTATUS"] = status
        return 0

    def _app_set(self, data: str) -> int:
        name, sep, value = data.partition("=")
        if sep and name.strip():
            self._set_var(name.strip(), value)
        return 0

    def _app_wait(self, data: str) -> int:
        self.pending.clear()  # Wait reads and discards the line's frames
        return -1 if self.hangup is not None else 0

    def _app_gosub(self, data: str) -> int:
        # Only the return address is pushed: the subroutine runs once the AGI has ended.
        label, _, args = data.partition("(")
        for i, arg in enumerate(args.removesuffix(")").split(",") if args else [], start=1):
            self.vars[f"ARG{i}"] = arg
        self.record.timeline.append(Note(f"Gosub {label} queued for after the AGI"))
        return 0

    def _app_hangup(self, data: str) -> int:
        if self.hangup is None:
            self.hangup = HangupRequest(by="server")
        return -1

    # ----------------------------------------------------------------- variables
    def _set_variable(self, argv: list[str]) -> Outcome:
        if len(argv) != 4:
            raise _ShowUsage
        self._set_var(argv[2], argv[3])
        return Outcome(["200 result=1"])

    def _get_variable(self, argv: list[str]) -> Outcome:
        if len(argv) != 3:
            raise _ShowUsage
        value = self._get_var(argv[2]) if argv[2] else None
        return Outcome([f"200 result=1 ({value})" if value is not None else "200 result=0"])

    def _get_full_variable(self, argv: list[str]) -> Outcome:
        if len(argv) not in (4, 5):
            raise _ShowUsage
        if len(argv) == 5 and argv[4] != self.channel_name:
            return Outcome(["200 result=0"])  # no such channel
        return Outcome([f"200 result=1 ({self._substitute(argv[3])})"])

    def _database_get(self, argv: list[str]) -> Outcome:
        if len(argv) != 4:
            raise _ShowUsage
        value = self.db.get((argv[2], argv[3]))
        return Outcome([f"200 result=1 ({value})" if value is not None else "200 result=0"])

    def _database_put(self, argv: list[str]) -> Outcome:
        if len(argv) != 5:
            raise _ShowUsage
        self.db[(argv[2], argv[3])] = argv[4]
        return Outcome(["200 result=1"])

    def _database_del(self, argv: list[str]) -> Outcome:
        if len(argv) != 4:
            raise _ShowUsage
        found = self.db.pop((argv[2], argv[3]), None) is not None
        return Outcome([f"200 result={int(found)}"])

    def _database_deltree(self, argv: list[str]) -> Outcome:
        if not 3 <= len(argv) <= 4:
            raise _ShowUsage
        doomed = [
            k for k in self.db if k[0] == argv[2] and (len(argv) == 3 or k[1].startswith(argv[3]))
        ]
        for k in doomed:
            del self.db[k]
        return Outcome([f"200 result={int(bool(doomed))}"])

    # ----------------------------------------------------------------- the rest
    def _answer(self, argv: list[str]) -> Outcome:
        return Outcome(["200 result=0"])

    def _noop(self, argv: list[str]) -> Outcome:
        return Outcome(["200 result=0"])

    def _verbose(self, argv: list[str]) -> Outcome:
        if len(argv) < 2:
            raise _ShowUsage
        return Outcome(["200 result=1"])

    def _set_music(self, argv: list[str]) -> Outcome:
        if len(argv) < 3:
            raise _ShowUsage
        switch = ascii_upper(argv[2])
        if switch.startswith("ON"):
            self.music = True
            self.record.timeline.append(Note("music on hold"))
        elif switch.startswith("OFF") and self.music:
            self.music = False
            self.record.timeline.append(Note("music on hold stops"))
        return Outcome(["200 result=0"])

    def _gosub(self, argv: list[str]) -> Outcome:
        if not 4 <= len(argv) <= 5:
            raise _ShowUsage
        # The subroutine runs now (no dialplan here) and returns nothing.
        self.vars["GOSUB_RETVAL"] = ""
        return Outcome(["100 result=0 Trying...", "200 result=0 Gosub complete"])

    def _hangup(self, argv: list[str]) -> Outcome:
        if len(argv) > 2:
            raise _ShowUsage
        if len(argv) == 2 and argv[1] != self.channel_name:
            return Outcome(["200 result=-1"])  # no such channel
        if self.hangup is None:
            self.hangup = HangupRequest(by="server")
        return Outcome(["200 result=1"])

    def _channel_status(self, argv: list[str]) -> Outcome:
        if len(argv) == 2 or (len(argv) == 3 and argv[2] == self.channel_name):
            return Outcome([f"200 result={CHANNEL_STATE_UP}"])
        if len(argv) == 3:
            return Outcome(["200 result=-1"])
        raise _ShowUsage

    def _one_arg(self, argv: list[str], result: int) -> Outcome:
        if len(argv) != 3:
            raise _ShowUsage
        return Outcome([f"200 result={result}"])

    def _set_context(self, argv: list[str]) -> Outcome:
        return self._one_arg(argv, 0)

    def _set_extension(self, argv: list[str]) -> Outcome:
        return self._one_arg(argv, 0)

    def _set_priority(self, argv: list[str]) -> Outcome:
        if len(argv) == 3 and (scan_int(argv[2]) or 0) < 1:
            raise _ShowUsage  # not a priority, and no dialplan to find a label in
        return self._one_arg(argv, 0)

    def _set_autohangup(self, argv: list[str]) -> Outcome:
        return self._one_arg(argv, 0)

    def _set_callerid(self, argv: list[str]) -> Outcome:
        return Outcome(["200 result=1"])

    def _send_text(self, argv: list[str]) -> Outcome:
        return self._one_arg(argv, 0)  # the channel takes no text: 0, as Asterisk answers then

    def _send_image(self, argv: list[str]) -> Outcome:
        return self._one_arg(argv, 0)

    def _tdd_mode(self, argv: list[str]) -> Outcome:
        return self._one_arg(argv, 0)  # not a TDD-capable channel


def _apps() -> dict[str, Callable[[Channel, str], int]]:
    zero: Callable[[Channel, str], int] = lambda channel, data: 0  # noqa: E731
    return {
        "PLAYBACK": Channel._app_playback,
        "SET": Channel._app_set,
        "WAIT": Channel._app_wait,
        "GOSUB": Channel._app_gosub,
        "HANGUP": Channel._app_hangup,
        "ANSWER": zero,
        "VERBOSE": zero,
        "NOOP": zero,
        "USEREVENT": zero,
        "LOG": zero,
    }


_APPS = _apps()
