"""Read the FastAGI wire transcripts of ``tests/fixtures/agi/`` (their README.md gives the format).

One line per wire line: ``A> `` is Asterisk→server, ``S> `` server→Asterisk, ``## `` a comment.
The content is the line's bytes as latin-1 with ``\\`` ``\\r`` ``\\t`` and ``\\xNN`` escaped; a bare
prefix (``A> `` with its trailing space) is an empty wire line; every wire line ends in an implied
``\\n``. A prefix without its trailing space is read as an empty line too, because editors strip it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Direction = Literal["A", "S", "#"]

_ESCAPE = re.compile(r"\\(\\|r|t|x[0-9A-Fa-f]{2})")


class TranscriptError(ValueError):
    """A transcript line is not in the documented format."""


def unescape(text: str) -> bytes:
    """The wire bytes of one escaped transcript line (without its newline)."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += _latin1(text[pos : m.start()])
        code = m.group(1)
        if code == "\\":
            out += b"\\"
        elif code == "r":
            out += b"\r"
        elif code == "t":
            out += b"\t"
        else:
            out.append(int(code[1:], 16))
        pos = m.end()
    out += _latin1(text[pos:])
    return bytes(out)


def _latin1(text: str) -> bytes:
    if "\\" in text:
        raise TranscriptError(f"unknown escape in {text!r}")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise TranscriptError(f"character outside latin-1 in {text!r}") from None


def escape(data: bytes) -> str:
    """The transcript form of one wire line (the inverse of :func:`unescape`)."""
    parts = []
    for b in data:
        if b == 0x5C:
            parts.append("\\\\")
        elif b == 0x0D:
            parts.append("\\r")
        elif b == 0x09:
            parts.append("\\t")
        elif b < 0x20 or b >= 0x7F:
            parts.append(f"\\x{b:02x}")
        else:
            parts.append(chr(b))
    return "".join(parts)


@dataclass(frozen=True)
class Event:
    """One transcript line: wire data (``A``/``S``) or a comment (``#``)."""

    direction: Direction
    data: bytes = b""
    comment: str = ""
    lineno: int = 0

    @property
    def wire(self) -> bytes:
        """The bytes as they went over the wire, newline included."""
        return self.data + b"\n"


@dataclass(frozen=True)
class Transcript:
    name: str
    events: tuple[Event, ...] = field(default_factory=tuple)

    def lines(self, direction: Literal["A", "S"]) -> list[bytes]:
        return [e.data for e in self.events if e.direction == direction]

    def wire(self, direction: Literal["A", "S"]) -> bytes:
        """Everything one side sent, as one byte string."""
        return b"".join(e.wire for e in self.events if e.direction == direction)

    def comments(self) -> Iterator[Event]:
        return (e for e in self.events if e.direction == "#")

    @property
    def env(self) -> dict[str, str]:
        """The ``agi_*`` block Asterisk sent first (values decoded as latin-1)."""
        env: dict[str, str] = {}
        for e in self.events:
            if e.direction != "A":
                continue
            if not e.data:
                break
            key, sep, value = e.data.decode("latin-1").partition(": ")
            if not sep:
                raise TranscriptError(f"line {e.lineno}: not an environment line")
            env[key] = value
        return env

    @property
    def agistatus(self) -> str | None:
        """The ``## AGISTATUS=...`` note at the end, if any."""
        for e in self.events:
            if e.comment.startswith("AGISTATUS="):
                return e.comment.partition("=")[2].strip()
        return None


def parse_transcript(text: str, name: str = "") -> Transcript:
    events: list[Event] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line:
            continue
        if line.startswith("##"):
            events.append(Event("#", comment=line[2:].strip(), lineno=lineno))
            continue
        prefix = line[:2]
        if prefix not in ("A>", "S>"):
            raise TranscriptError(f"{name or 'transcript'} line {lineno}: unknown prefix")
        rest = line[2:]
        if rest and not rest.startswith(" "):
            raise TranscriptError(f"{name or 'transcript'} line {lineno}: no space after prefix")
        try:
            data = unescape(rest[1:])
        except TranscriptError as exc:
            raise TranscriptError(f"{name or 'transcript'} line {lineno}: {exc}") from None
        events.append(Event(prefix[0], data=data, lineno=lineno))  # type: ignore[arg-type]
    return Transcript(name, tuple(events))


def load_transcript(path: str | Path) -> Transcript:
    p = Path(path)
    return parse_transcript(p.read_text(encoding="utf-8"), name=p.stem)
