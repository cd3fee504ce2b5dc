"""Finding a card number written in any form inside free text (the API's refusal of card data).

Pure: the API calls :func:`holds_card_number` on every text it would keep. The rule, and why:

* **Normalise first.** NFKC (full-width ``４１１１`` and ``①`` become ASCII digits, the ideographic
  space a space, the full-width hyphen a hyphen), then every Unicode decimal digit (Arabic-Indic,
  Devanagari, …) counts as its value.
* **Groups and separators.** The text is cut into digit groups. Between two groups, anything that
  is not a letter (spaces, any punctuation or symbol, the prolonged sound mark ``ー``) of at most
  :data:`MAX_SEPARATOR` characters joins them; a letter, or a longer gap, ends the number. Within
  one number the separator must be the same every time (``4111-1111-1111-1111``,
  ``4111.1111.1111.1111``, ``4111 / 1111 / …``): that is how people write a card number, and it
  keeps a date and time (``2026-12-07 12:34:56``) from reading as one 14-digit number.
* **Neighbours.** Texts given together (a list's items, an object's values, an object's keys) are
  read as one text where the boundary between two items joins like any separator, so a number split
  over ``["4111", "1111", "1111", "1111"]`` or over adjacent values is found.
* **What is a card number.** Any 12–19 digits of consecutive whole groups whose last digit is the
  Luhn check digit. Not the brand table: that is the list the IVR accepts, not every card there is
  (Maestro, Mir, RuPay and others start elsewhere), and card data of a brand we do not take is
  still card data. Refusing costs a client a clear 422 naming the field; accepting would put a card
  number into a row, a webhook and a log for good, so the rule leans to refusing.
* **What is not.** A digit group longer than 19 digits is never read into (no card number is that
  long, and almost any long run holds a Luhn-valid window). Fewer than 12 digits, letters between
  groups, mixed separators, and 12–19 digits that fail Luhn (nine in ten arbitrary numbers: order
  ids and references with long digit runs) all pass. The price of leaning to refusing: one id in
  ten with 12–19 digits in a row passes Luhn and is refused; a client who needs such ids can add a
  letter between the digits.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from ivrpay.card.rules import MAX_CARD_DIGITS, MIN_CARD_DIGITS, luhn_ok

MAX_SEPARATOR = 3  # " - " is the longest separator people put between the groups of a card number

# Between two groups: a literal separator, or a boundary between two neighbouring texts (which
# joins whatever separator the candidate uses elsewhere).
_ITEM_BOUNDARY = object()


def _digit(ch: str) -> str | None:
    if "0" <= ch <= "9":
        return ch
    if unicodedata.category(ch) == "Nd":
        return str(unicodedata.decimal(ch))
    return None


def _breaks(ch: str) -> bool:
    """A letter ends a number; the modifier letters (``ー``, ``々``) are written as dashes."""
    cat = unicodedata.category(ch)
    return cat[0] == "L" and cat != "Lm"


def _groups(texts: Iterable[str]) -> list[tuple[str, object | None]]:
    """Digit groups in order, each with how it joins the previous one: a separator string,
    ``_ITEM_BOUNDARY``, or ``None`` (it does not: the first group, or a letter or a long gap came
    between)."""
    out: list[tuple[str, object | None]] = []
    digits: list[str] = []
    gap: list[str] | None = None  # separator characters since the last group; None: broken
    crossed = False  # an item boundary lies between the last group and here

    def close() -> None:
        nonlocal digits, gap, crossed
        if digits:
            if not out or gap is None:
                join: object | None = None
            else:
                join = _ITEM_BOUNDARY if crossed else "".join(gap)
            out.append(("".join(digits), join))
            digits, gap, crossed = [], [], False

    for i, text in enumerate(texts):
        if i:
            close()
            crossed = True
        for ch in unicodedata.normalize("NFKC", text):
            d = _digit(ch)
            if d is not None:
                digits.append(d)
                continue
            close()
            if gap is not None:
                if _breaks(ch) or len(gap) >= MAX_SEPARATOR:
                    gap = None
                else:
                    gap.append(ch)
    close()
    return out


def holds_card_number(texts: Iterable[str]) -> bool:
    """True when the neighbouring ``texts`` (one text: a one-item list) hold a card number in any
    of the forms the module describes."""
    groups = _groups(texts)
    for start, (digits, _join) in enumerate(groups):
        if len(digits) > MAX_CARD_DIGITS:
            continue
        number = digits
        separator: object | None = None  # the literal separator this candidate uses
        if MIN_CARD_DIGITS <= len(number) and luhn_ok(number):
            return True
        for more, join in groups[start + 1 :]:
            if join is None or len(number) + len(more) > MAX_CARD_DIGITS:
                break
            if join is not _ITEM_BOUNDARY:
                if separator is None:
                    separator = join
                elif join != separator:
                    break
            number += more
            if len(number) >= MIN_CARD_DIGITS and luhn_ok(number):
                return True
    return False


def json_holds_card_number(value: object) -> bool:
    """True when a JSON value holds a card number: in any string or integer, at any depth, or split
    over the neighbouring items of one list, the values of one object or its keys."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if holds_card_number(v.keys()) or holds_card_number(_scalars(v.values())):
                return True
            stack.extend(x for x in v.values() if isinstance(x, dict | list))
        elif isinstance(v, list):
            if holds_card_number(_scalars(v)):
                return True
            stack.extend(x for x in v if isinstance(x, dict | list))
        elif holds_card_number(_scalars([v])):
            return True
    return False


def _scalars(values: Iterable[object]) -> Iterable[str]:
    """The texts of neighbouring values: a number reads as its digits; a nested object, a list,
    null or a boolean stands between its neighbours like a letter (they are not one number)."""
    for v in values:
        if isinstance(v, str):
            yield v
        elif isinstance(v, int | float) and not isinstance(v, bool):
            yield repr(v) if isinstance(v, float) else str(v)
        else:
            yield "x"
