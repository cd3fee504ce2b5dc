"""What a simulated call leaves behind: prompts heard, keys pressed, variables set, the wire."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from ivrpay.simulator.keys import mask_digits


class Ending(enum.StrEnum):
    SERVER_CLOSED = "server closed"  # the server closed its side (the normal end)
    CALLER_HUNG_UP = "caller hung up"  # AGIEXITONHANGUP: Asterisk ended the session itself
    SERVER_FAILURE = "server sent failure"  # a line starting with "failure" (AGISTATUS=FAILURE)
    SERVER_SILENT = "server silent"  # no command within the inactivity timeout
    PROTOCOL_ERROR = "protocol error"  # only as CallRecord.outcome: ended, but broke the protocol
    ABORTED = "aborted"  # the test or the user stopped the call


@dataclass(frozen=True)
class Prompt:
    """One prompt played to the caller."""

    file: str  # as the server named it, e.g. ivrpay/welcome (or "say number 12800")
    language: str  # the channel language in force
    command: str  # STREAM FILE, GET DATA, GET OPTION, EXEC Playback, SAY …
    missing: bool = False  # not found: the command failed as Asterisk fails it
    played_from: str | None = None  # the language directory actually used (a fallback)
    interrupted: bool = False  # a key or the hang-up stopped it

    @property
    def wanted(self) -> str:
        return f"{self.language}/{self.file}"

    def __repr__(self) -> str:  # "say digits N" is whatever the server said
        return (
            f"Prompt({mask_digits(self.file)!r}, {self.language!r}, {self.command!r}, "
            f"missing={self.missing}, played_from={self.played_from!r}, "
            f"interrupted={self.interrupted})"
        )


@dataclass(frozen=True)
class KeyEntry:
    """One turn of the caller, masked: card-length digit runs show their last four digits."""

    command: str  # the command that took it (GET DATA, …) or "press"
    keys: str  # masked, as written: "************1111#", "_", "!", "~5"


@dataclass(frozen=True)
class Note:
    """Something else the caller lived through (music on hold, the hang-up)."""

    text: str


@dataclass(frozen=True)
class WireLine:
    direction: Literal["A", "S"]  # A = the stand-in (Asterisk) sent it, S = the server sent it
    data: bytes  # without the newline

    def __repr__(self) -> str:  # replies carry the digits the caller keyed
        return f"WireLine({self.direction}, {mask_digits(self.data.decode('latin-1'))!r})"


@dataclass(eq=False)
class CallRecord:
    env: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)  # command lines received (latin-1)
    prompts: list[Prompt] = field(default_factory=list)
    entries: list[KeyEntry] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # set by the server, final values
    timeline: list[Prompt | KeyEntry | Note] = field(default_factory=list)
    wire: list[WireLine] = field(default_factory=list)
    ended: Ending | None = None
    agistatus: str = "SUCCESS"  # what Asterisk would leave in AGISTATUS
    hung_up: bool = False
    hung_up_by: Literal["caller", "server"] | None = None
    protocol_errors: list[str] = field(default_factory=list)
    missing_prompts: list[str] = field(default_factory=list)  # "<language>/<file>"
    fallback_prompts: list[str] = field(default_factory=list)  # found only in another language
    refused_commands: list[str] = field(default_factory=list)  # 511: I/O after the hang-up
    card_like_commands: list[int] = field(default_factory=list)  # indexes: Luhn-valid digit runs
    unsimulated: list[str] = field(default_factory=list)  # real commands the stand-in cannot play
    dropped_keys: int = 0  # keys pressed while no command listened

    def sent(self) -> bytes:
        """Every byte the stand-in (Asterisk) wrote."""
        return b"".join(w.data + b"\n" for w in self.wire if w.direction == "A")

    def received(self) -> bytes:
        """Every command line the server wrote."""
        return b"".join(w.data + b"\n" for w in self.wire if w.direction == "S")

    @property
    def outcome(self) -> Ending | None:
        """How the call ended, PROTOCOL_ERROR when it ended normally but the server broke the
        protocol on the way (``ended`` is only how the session on the wire ended)."""
        if self.protocol_errors and self.ended in (Ending.SERVER_CLOSED, Ending.CALLER_HUNG_UP):
            return Ending.PROTOCOL_ERROR
        return self.ended

    @property
    def ok(self) -> bool:
        """The session ended the normal way and the server kept to the protocol."""
        return (
            self.ended in (Ending.SERVER_CLOSED, Ending.CALLER_HUNG_UP) and not self.protocol_errors
        )

    def __repr__(self) -> str:
        # A summary, masked whole: prompts (SAY DIGITS …), variables and file names come from the
        # server and could carry digits a faulty server mishandled.
        return mask_digits(
            f"CallRecord(ended={self.ended}, agistatus={self.agistatus}, "
            f"commands={len(self.commands)}, prompts={[p.wanted for p in self.prompts]}, "
            f"entries={[e.keys for e in self.entries]}, variables={self.variables!r}, "
            f"protocol_errors={self.protocol_errors}, missing_prompts={self.missing_prompts})"
        )
