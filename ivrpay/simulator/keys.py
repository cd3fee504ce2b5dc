"""The scripted caller's keys: what it presses, and when.

``keys`` is a list of *entries*, one per turn of the caller (the CLI writes them in one string,
separated by blanks: ``"4111111111111111# 1231 123 1"``):

``4111#``  keys pressed (``0-9 * # A-D``). An input request (GET DATA, WAIT FOR DIGIT, GET OPTION)
           that finds no key already pressed takes the next entry. The keys come after the request's
           prompt (for GET OPTION: a key after the menu, ``endpos`` = the whole prompt).
``_``      silence for one input request: it times out.
``!``      the caller hangs up as that input request starts.
``~123#``  barge-in: the keys are pressed 140 ms into the next prompt that listens for them — the
           next STREAM FILE, SAY DIGITS or SAY NUMBER with escape digits, or the next input request,
           whichever comes first. An escape digit stops the prompt (``endpos`` where it landed) and
           is consumed; keys after it go on to the next command. ``~!`` hangs up there.

Keys left over when a command returns (the ``#`` after a four-digit expiry keyed into
``GET DATA … 4``) land in the next command that listens to the line (fixture 03), or are dropped
when the call is set to drop keys pressed between commands (fixture 03b).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

KEY_CHARS = "0123456789*#ABCD"

_KEYS = re.compile(r"[0-9*#A-Da-d]+")
_CARD_RUN = re.compile(r"(?<!\d)\d{12,19}(?!\d)")


class KeySyntaxError(ValueError):
    """A keys entry is not in the documented syntax (the message masks card-length digit runs)."""


def mask_digits(text: str) -> str:
    """Show card-length digit runs as ``************1111``: the last four digits only."""
    return _CARD_RUN.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)


@dataclass(frozen=True)
class Entry:
    """One turn of the caller."""

    kind: Literal["keys", "silence", "hangup"]
    keys: str = ""
    barge_in: bool = False

    @property
    def text(self) -> str:
        """The entry as written (``~`` prefix included)."""
        body = {"keys": self.keys, "silence": "_", "hangup": "!"}[self.kind]
        return ("~" if self.barge_in else "") + body

    @property
    def masked(self) -> str:
        return mask_digits(self.text)

    def __repr__(self) -> str:  # never show a card number, even in a failing test's output
        return f"Entry({self.masked!r})"


def parse_entry(text: str, position: int = 1) -> Entry:
    barge_in = text.startswith("~")
    body = text[1:] if barge_in else text
    if body == "_" and not barge_in:
        return Entry("silence")
    if body == "!":
        return Entry("hangup", barge_in=barge_in)
    if _KEYS.fullmatch(body):
        return Entry("keys", body.upper(), barge_in)
    raise KeySyntaxError(
        f"entry {position} ({mask_digits(text)!r}) is not keys (0-9 * # A-D), "
        "'_' (silence), '!' (hang up) or '~' followed by keys or '!' (barge-in)"
    )


def check_keys(keys: str) -> str:
    """Keys pressed through the API (no ``_``/``!``/``~`` here), upper-cased."""
    if not _KEYS.fullmatch(keys):
        raise KeySyntaxError(f"{mask_digits(keys)!r} is not keys (0-9 * # A-D)")
    return keys.upper()


def parse_keys(spec: str | Iterable[str | Entry] | None) -> list[Entry]:
    """Entries from the CLI string form or from a list of entry strings."""
    if spec is None:
        return []
    items = spec.split() if isinstance(spec, str) else list(spec)
    entries = []
    for i, item in enumerate(items, start=1):
        if isinstance(item, Entry):
            entries.append(item)
        elif isinstance(item, str):
            if not item.strip():
                raise KeySyntaxError(f"entry {i} is empty")
            entries.append(parse_entry(item.strip(), i))
        else:
            raise KeySyntaxError(f"entry {i} is not a string")
    return entries
