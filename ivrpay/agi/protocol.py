"""The FastAGI wire format, as Asterisk 22's res_agi writes and reads it. Pure: no I/O.

Environment: ``agi_key: value`` lines then one blank line; values are raw bytes in no promised
encoding. Commands: one line ending in ``\\n``; Asterisk splits it with ``parse_args`` (whitespace
separates, ``"..."`` groups, ``\\`` escapes the next character anywhere) and reads at most 2,047
bytes per line, so a longer line would be cut into two commands. Replies: ``200 result=...``,
provisional ``100 ...``, ``510``, ``511``, ``520`` in one line or as a ``520-`` block ending in
``520 End of proper usage.``. A bare ``HANGUP`` line is an out-of-band notice, never a reply: the
session (not this module) filters it out.

This module is shared with the Asterisk stand-in (``ivrpay.simulator``); keep it pure and stable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ivrpay.agi.errors import AGIArgumentError, AGIHeaderError, AGIProtocolError

__all__ = [
    "HANGUP_LINE",
    "MAX_ARGS",
    "MAX_COMMAND_BYTES",
    "AGIEnvironment",
    "Quoted",
    "Reply",
    "ReplyAssembler",
    "decode_lenient",
    "format_command",
    "format_environment",
    "is_hangup_line",
    "parse_env_line",
    "parse_reply",
]

HANGUP_LINE = b"HANGUP"
# res_agi reads a command with fgets() into a 2,048-byte buffer: 2,047 bytes including the "\n".
MAX_COMMAND_BYTES = 2047
# res_agi's MAX_ARGS is 128 including the NULL terminator; further words are dropped silently.
MAX_ARGS = 127
# A 520 usage block longer than this is not Asterisk talking.
MAX_USAGE_LINES = 500

_ENV_KEY = re.compile(rb"agi_[A-Za-z0-9_]+")
_ARG_KEY = re.compile(r"agi_arg_(\d{1,6})")
_COMMAND = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?: [A-Za-z][A-Za-z0-9_]*)*")
_REPLY_LINE = re.compile(r"(\d{3})([ -])(.*)", re.DOTALL)
_RESULT = re.compile(r"result=([^ ]*)(?: (.*))?", re.DOTALL)
_ENDPOS = re.compile(r"(?:^| )endpos=(-?\d+) *\Z")
_INT = re.compile(r"-?\d+")


def decode_lenient(raw: bytes) -> str:
    """UTF-8 when the bytes are UTF-8, else latin-1 (one character per byte). Never raises."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    # Asterisk never sends CR; tolerate CRLF peers (telnet, hand-written tools).
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def is_hangup_line(line: bytes) -> bool:
    """True for the out-of-band ``HANGUP`` notice (with or without its line end)."""
    return _strip_eol(line) == HANGUP_LINE


# -- environment ---------------------------------------------------------------------------------


def parse_env_line(line: bytes) -> tuple[str, bytes] | None:
    """One environment line: ``(key, raw value)``; ``None`` for the blank line ending the block.

    Raises :class:`AGIHeaderError` for anything that is not ``agi_<name>: <value>``.
    """
    line = _strip_eol(line)
    if not line:
        return None
    key, sep, value = line.partition(b":")
    if not sep or not _ENV_KEY.fullmatch(key):
        raise AGIHeaderError("not an AGI environment line")
    if value.startswith(b" "):
        value = value[1:]
    return key.decode("ascii"), value


def format_environment(
    pairs: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]],
) -> bytes:
    """The environment block as Asterisk sends it (for test peers and the stand-in)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    out = bytearray()
    for key, value in items:
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if b"\n" in raw or b"\n" in key.encode():
            raise AGIArgumentError("an environment line cannot hold a line feed")
        out += key.encode("ascii") + b": " + raw + b"\n"
    out += b"\n"
    return bytes(out)


class AGIEnvironment(Mapping[str, str]):
    """The ``agi_*`` block of one session: a read-only mapping of key to (lenient) decoded value."""

    __slots__ = ("_bytes", "_values")

    def __init__(
        self, pairs: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]] = ()
    ) -> None:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        self._bytes: dict[str, bytes] = {}
        for key, value in items:
            self._bytes[key] = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self._values = {k: decode_lenient(v) for k, v in self._bytes.items()}

    @classmethod
    def from_block(cls, block: bytes) -> AGIEnvironment:
        """Parse a whole block (up to and including the blank line; what follows is ignored)."""
        pairs: list[tuple[str, bytes]] = []
        for line in block.split(b"\n"):
            parsed = parse_env_line(line)
            if parsed is None:
                break
            pairs.append(parsed)
        return cls(pairs)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return (
            f"AGIEnvironment(script={self.script!r}, uniqueid={self.uniqueid!r}, "
            f"channel={self.channel!r}, {len(self)} keys)"
        )

    @property
    def raw(self) -> dict[str, str]:
        """Every key with its decoded value."""
        return dict(self._values)

    @property
    def raw_bytes(self) -> dict[str, bytes]:
        """Every key with its value exactly as received."""
        return dict(self._bytes)

    @property
    def network_script(self) -> str:
        """``agi_network_script`` as sent: the script name with its ``?query``."""
        return self._values.get("agi_network_script", "")

    @property
    def script(self) -> str:
        """The script name to route on: ``agi_network_script`` before any ``?``."""
        return self.network_script.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """The ``?a=b&c=d`` part of ``agi_network_script`` (percent-decoded; last value wins)."""
        _, _, query = self.network_script.partition("?")
        return dict(parse_qsl(query, keep_blank_values=True))

    @property
    def args(self) -> list[str]:
        """``agi_arg_1`` … ``agi_arg_N`` in numeric order, empty ones kept."""
        numbered = []
        for key, value in self._values.items():
            m = _ARG_KEY.fullmatch(key)
            if m:
                numbered.append((int(m.group(1)), value))
        return [value for _, value in sorted(numbered)]

    @property
    def uniqueid(self) -> str:
        return self._values.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self._values.get("agi_channel", "")

    @property
    def language(self) -> str:
        return self._values.get("agi_language", "")

    @property
    def callerid(self) -> str:
        return self._values.get("agi_callerid", "")

    @property
    def threadid(self) -> str:
        return self._values.get("agi_threadid", "")


# -- commands ------------------------------------------------------------------------------------


class Quoted(str):
    """An argument that is always sent in double quotes, even when it needs none.

    Asterisk's own examples quote escape-digit arguments (``STREAM FILE beep "12"``, ``""`` for
    none) and VERBOSE messages (``VERBOSE "hello" 1``); this keeps the wire the same.
    """

    __slots__ = ()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _needs_quotes(text: str) -> bool:
    # parse_args: space and tab separate words, '"' toggles quoting, '\' escapes anywhere.
    return text == "" or any(c in text for c in ' \t"\\')


def format_command(command: str, *args: str | int) -> bytes:
    """One command line, ending in ``\\n``, that Asterisk's ``parse_args`` splits into ``args``.

    ``command`` is the verb (``"STREAM FILE"``). Arguments that are empty or hold spaces, tabs,
    quotes or backslashes are sent as ``"..."`` with ``\\"`` and ``\\\\`` escaped; :class:`Quoted`
    arguments are always quoted. CR, LF or NUL anywhere, a line over 2,047 bytes or more than 127
    words raise :class:`AGIArgumentError` (nothing may be sent). Error messages never echo values.
    """
    if not isinstance(command, str) or not _COMMAND.fullmatch(command):
        raise AGIArgumentError("a command is one or more words of letters and digits")
    if command.lower().startswith("failure"):
        # res_agi takes a line starting with "failure" as the script's own failure report.
        raise AGIArgumentError("a command line may not start with 'failure'")
    parts = [command]
    for position, arg in enumerate(args, start=1):
        if isinstance(arg, bool) or not isinstance(arg, str | int):
            raise AGIArgumentError(f"{command}: argument {position} must be str or int")
        text = str(arg)
        if "\r" in text or "\n" in text or "\0" in text:
            raise AGIArgumentError(f"{command}: argument {position} holds CR, LF or NUL")
        parts.append(_quote(text) if isinstance(arg, Quoted) or _needs_quotes(text) else text)
    if len(command.split(" ")) + len(args) > MAX_ARGS:
        raise AGIArgumentError(f"{command}: more than {MAX_ARGS} words in one command")
    try:
        line = (" ".join(parts) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        raise AGIArgumentError(f"{command}: an argument cannot be encoded as UTF-8") from None
    if len(line) > MAX_COMMAND_BYTES:
        raise AGIArgumentError(f"{command}: command line longer than {MAX_COMMAND_BYTES} bytes")
    return line


# -- replies -------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Reply:
    """One reply to one command.

    ``result`` is the raw text after ``result=`` up to the first space (may be empty);
    ``data`` the text inside ``(...)`` (``timeout``, a variable's value), ``None`` when absent;
    ``endpos`` the ``endpos=`` number; ``extra`` other trailing text (``Gosub complete``; the
    message of 510/511/520 lines); ``usage`` the usage lines of a multi-line 520;
    ``raw_lines`` every line of the reply as received (provisional ``100`` lines included).
    A ``sensitive`` reply (the result of an input command) never shows its content in ``repr``.
    """

    code: int
    result: str = ""
    data: str | None = None
    endpos: int | None = None
    extra: str = ""
    usage: str = ""
    raw_lines: tuple[bytes, ...] = field(default=())
    sensitive: bool = False

    @property
    def result_int(self) -> int | None:
        return int(self.result) if _INT.fullmatch(self.result) else None

    def as_sensitive(self) -> Reply:
        return dataclasses.replace(self, sensitive=True)

    def __repr__(self) -> str:
        if self.sensitive:
            return f"Reply(code={self.code}, result=<hidden>, endpos={self.endpos}, sensitive=True)"
        return (
            f"Reply(code={self.code}, result={self.result!r}, data={self.data!r}, "
            f"endpos={self.endpos}, extra={self.extra!r})"
        )

    __str__ = __repr__


def _parse_result_text(code: int, rest: str) -> tuple[str, str | None, int | None, str]:
    m = _RESULT.fullmatch(rest)
    if not m:
        raise AGIProtocolError(f"a {code} reply without result=")
    result, tail = m.group(1), m.group(2) or ""
    endpos = None
    em = _ENDPOS.search(tail)
    if em:
        endpos = int(em.group(1))
        tail = tail[: em.start()]
    tail = tail.strip(" ")
    data = None
    extra = tail
    if tail.startswith("("):
        close = tail.rfind(")")
        if close > 0:
            data = tail[1:close]
            extra = tail[close + 1 :].strip(" ")
    return result, data, endpos, extra


class ReplyAssembler:
    """Collects reply lines until one reply is complete: provisional ``100`` lines are read through
    and a ``520-`` block is read to its ``520 End of proper usage.`` line.

    ``feed`` returns the :class:`Reply` once complete, else ``None``; it raises
    :class:`AGIProtocolError` for a line that is no reply. Do not feed it ``HANGUP`` lines.
    """

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._in_usage = False

    @property
    def started(self) -> bool:
        return bool(self._lines)

    def feed(self, line: bytes) -> Reply | None:
        line = _strip_eol(line)
        self._lines.append(line)
        if self._in_usage:
            if line.startswith(b"520 "):
                return self._finish_usage()
            if len(self._lines) > MAX_USAGE_LINES:
                raise AGIProtocolError("520 usage block without its end line")
            return None
        text = decode_lenient(line)
        m = _REPLY_LINE.fullmatch(text)
        if not m:
            raise AGIProtocolError("a line that is not an AGI reply")
        code, sep, rest = int(m.group(1)), m.group(2), m.group(3)
        if sep == "-":
            if code != 520:
                raise AGIProtocolError(f"a continued {code} reply")
            self._in_usage = True
            return None
        if 100 <= code < 200:
            return None  # provisional ("100 result=0 Trying..."): the final line follows
        if code == 200:
            result, data, endpos, extra = _parse_result_text(code, rest)
            return Reply(200, result, data, endpos, extra, "", tuple(self._lines))
        return Reply(code, "", None, None, rest, "", tuple(self._lines))

    def _finish_usage(self) -> Reply:
        # The first line is the "520-Invalid command syntax..." header; the last the end line.
        head = decode_lenient(self._lines[0])[4:]
        usage = "\n".join(decode_lenient(x) for x in self._lines[1:-1])
        return Reply(520, "", None, None, head, usage, tuple(self._lines))


def parse_reply(lines: Iterable[bytes | str]) -> Reply:
    """Parse the lines of one complete reply (``100`` lines, a final line or a 520 block)."""
    assembler = ReplyAssembler()
    reply = None
    for line in lines:
        if reply is not None:
            raise AGIProtocolError("lines after the end of the reply")
        raw = line.encode("utf-8") if isinstance(line, str) else line
        reply = assembler.feed(raw)
    if reply is None:
        raise AGIProtocolError("incomplete reply")
    return reply
