"""Saying prompts and reading keypad entries, the way a caller expects (product.md, "Keys").

- ``#`` ends an entry; fixed-length fields also end at their length. An empty reply right after a
  full-length entry is the caller's ``#`` landing in the next command: it is ignored once.
- Digits followed by ``(timeout)`` are a complete entry; only an empty ``(timeout)`` is silence.
- A ``*`` anywhere means "again"; ``0`` alone asks for the operator.
- Every prompt before the last one of a read is played with all keys as escape digits: a key that
  stops it becomes the first key of the entry, so a fast caller loses nothing (the greeting too:
  :meth:`Voice.play` hands its key to the next :meth:`Voice.read`).
- ``-1`` with no hang-up notice yet is settled by one more command (NOOP), answered after any
  notice: :class:`CallerGone` when the caller left, :class:`PromptFailed` when a file is missing.

Entries hold card data: :class:`Entry` never shows its digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn

from ivrpay.flow.channel import CallerGone, Channel, CommandFailed
from ivrpay.flow.prompts import P

ALL_KEYS = "0123456789*#"


def prompt_path(prompt_id: str) -> str:
    """The file name Asterisk plays for one of our prompts (``sounds/<lang>/ivrpay/<id>``)."""
    return f"ivrpay/{prompt_id}"


class PromptFailed(CommandFailed):
    """Asterisk answered -1 while the caller is still there: a prompt file is missing."""


__all__ = ["ALL_KEYS", "CallerGone", "Entry", "EntryKind", "PromptFailed", "Voice", "prompt_path"]


class EntryKind(Enum):
    DIGITS = "digits"
    AGAIN = "again"  # a '*': replay without using an attempt
    OPERATOR = "operator"  # '0' alone
    SILENCE = "silence"  # nothing keyed before the timeout
    EMPTY = "empty"  # a lone '#'


@dataclass(frozen=True, repr=False)
class Entry:
    kind: EntryKind
    digits: str = ""

    def __repr__(self) -> str:
        return f"Entry({self.kind.value}, <{len(self.digits)} keys>)"


class Voice:
    """Prompts and entries over one channel; remembers what the last entry left behind."""

    def __init__(self, channel: Channel, timeout_ms: int) -> None:
        self.channel = channel
        self.timeout_ms = timeout_ms
        self._after_full = False  # the last entry filled its field: a '#' may still be coming

    async def say(self, prompts: Sequence[str]) -> None:
        """Play prompts without listening for keys (results, goodbyes)."""
        for p in prompts:
            result = await self.channel.stream_file(prompt_path(p), "")
            if result.failed:
                await self._failed(p)
        self._after_full = False

    async def play(self, prompts: Sequence[str]) -> str | None:
        """Play prompts that a key may stop (the greeting): the key, to begin the next entry."""
        return await self._play_interruptible(prompts)

    async def read(
        self, prompts: Sequence[str], max_digits: int, *, first: str | None = None
    ) -> Entry:
        """Play ``prompts`` and read one entry of at most ``max_digits`` keys.

        ``first``: a key that already stopped an earlier prompt (:meth:`play`); the entry begins
        with it and no prompt is played.
        """
        if not prompts:
            raise ValueError("read needs at least one prompt")
        if first is None:
            first = await self._play_interruptible(prompts[:-1])
        if first is None:
            digits, timed_out = await self._get_data(prompts[-1], max_digits)
        elif first == "#":
            digits, timed_out = "", False
        elif first == "*" or max_digits == 1:
            digits, timed_out = first, False
        else:
            rest, timed_out = await self._get_data(
                P.silence, max_digits - 1
            )  # GET DATA needs a file
            digits = first + rest
        self._after_full = len(digits) == max_digits
        return _classify(digits, timed_out)

    async def _play_interruptible(self, prompts: Sequence[str]) -> str | None:
        i = 0
        while i < len(prompts):
            result = await self.channel.stream_file(prompt_path(prompts[i]), ALL_KEYS)
            if result.failed:
                await self._failed(prompts[i])
            key = result.digit
            if key == "#" and self._after_full:
                self._after_full = False  # the '#' of the previous full-length entry: replay
                continue
            self._after_full = False
            if key is not None:
                return key
            i += 1
        return None

    async def _get_data(self, prompt: str, max_digits: int) -> tuple[str, bool]:
        while True:
            result = await self.channel.get_data(prompt_path(prompt), self.timeout_ms, max_digits)
            if result.failed:
                await self._failed(prompt)
            if not result.digits and not result.timed_out and self._after_full:
                self._after_full = False  # the '#' of the previous full-length entry
                continue
            self._after_full = False
            return result.digits, result.timed_out

    async def _failed(self, prompt: str) -> NoReturn:
        """``-1`` alone does not prove a hang-up (agi.md): Asterisk sends the HANGUP notice right
        after the ``-1`` of a command the hang-up cut, so one more command, answered after it,
        tells a caller who left from a prompt file that is missing."""
        await self.channel.noop()
        if self.channel.hung_up:
            raise CallerGone(prompt)
        raise PromptFailed(prompt)


def _classify(digits: str, timed_out: bool) -> Entry:
    if "*" in digits:
        return Entry(EntryKind.AGAIN)
    if digits == "0":
        return Entry(EntryKind.OPERATOR)
    if not digits:
        return Entry(EntryKind.SILENCE if timed_out else EntryKind.EMPTY)
    return Entry(EntryKind.DIGITS, digits)
