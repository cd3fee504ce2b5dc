"""Card rules: Luhn, brand from the IIN ranges, lengths, expiry and security code.

Pure code (imports nothing of ours) so that the flow, the gateway client and the tests share one
truth. Every check returns a typed reason, never the digits: the reasons may be logged, stored and
shown; the card data may not. Inputs are ``str``, ``bytes`` or ``bytearray`` of ASCII digits (the
holder keeps ``bytearray`` buffers); anything else is reported as ``format``, never raised.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

Digits = str | bytes | bytearray

MIN_CARD_DIGITS = 12
MAX_CARD_DIGITS = 19
DEFAULT_MAX_GATEWAY_DIGITS = 16  # IVRPAY_GATEWAY_MAX_CARD_DIGITS
DEFAULT_TIMEZONE = "Asia/Tokyo"  # IVRPAY_TIMEZONE


class Brand(enum.StrEnum):
    """Card brands by the names the settings use (``IVRPAY_CARD_BRANDS``)."""

    VISA = "VISA"
    MASTERCARD = "MASTERCARD"
    JCB = "JCB"
    AMEX = "AMEX"
    DINERS = "DINERS"
    DISCOVER = "DISCOVER"
    UNIONPAY = "UNIONPAY"


# (first IIN, last IIN, brand); the IINs of one row have the same number of digits.
# No two ranges overlap, so the order does not matter.
IIN_RANGES: tuple[tuple[str, str, Brand], ...] = (
    ("4", "4", Brand.VISA),
    ("51", "55", Brand.MASTERCARD),
    ("2221", "2720", Brand.MASTERCARD),
    ("3528", "3589", Brand.JCB),
    ("34", "34", Brand.AMEX),
    ("37", "37", Brand.AMEX),
    ("300", "305", Brand.DINERS),
    ("3095", "3095", Brand.DINERS),
    ("36", "36", Brand.DINERS),
    ("38", "39", Brand.DINERS),
    ("6011", "6011", Brand.DISCOVER),
    ("644", "649", Brand.DISCOVER),
    ("65", "65", Brand.DISCOVER),
    ("62", "62", Brand.UNIONPAY),
)

BRAND_LENGTHS: dict[Brand, frozenset[int]] = {
    Brand.VISA: frozenset({13, 16, 19}),
    Brand.MASTERCARD: frozenset({16}),
    Brand.JCB: frozenset(range(16, 20)),
    Brand.AMEX: frozenset({15}),
    Brand.DINERS: frozenset(range(14, 20)),
    Brand.DISCOVER: frozenset(range(16, 20)),
    Brand.UNIONPAY: frozenset(range(16, 20)),
}


class CardNumberCheck(enum.StrEnum):
    ok = "ok"
    format = "format"  # type: ignore[assignment]  # not only digits (shadows str.format)
    too_short = "too_short"  # fewer than 12 digits
    too_long = "too_long"  # more than 19 digits
    luhn = "luhn"  # check digit wrong
    unknown_brand = "unknown_brand"  # no IIN range matches
    length_for_brand = "length_for_brand"  # the brand has no numbers of this length
    brand_not_accepted = "brand_not_accepted"  # not configured, or longer than the gateway takes


class ExpiryCheck(enum.StrEnum):
    ok = "ok"
    format = "format"  # type: ignore[assignment]  # not exactly four digits
    month = "month"  # month not 01–12
    past = "past"  # the month has ended in the merchant's time zone


class SecurityCodeCheck(enum.StrEnum):
    ok = "ok"
    format = "format"  # type: ignore[assignment]  # not only digits (shadows str.format)
    length = "length"  # not the brand's length


@dataclass(frozen=True, slots=True)
class CardNumberResult:
    """The reason and, once the IIN was read, the brand. Holds no digit of the number."""

    check: CardNumberCheck
    brand: Brand | None = None

    @property
    def ok(self) -> bool:
        return self.check is CardNumberCheck.ok


def _ascii_digits(value: object) -> bytes | None:
    """The value as ASCII digit bytes (maybe empty), or None when it holds anything else."""
    if isinstance(value, str):
        if not value.isascii():
            return None
        value = value.encode("ascii")
    if not isinstance(value, bytes | bytearray):
        return None
    raw = bytes(value)
    return raw if raw.isdigit() or not raw else None


def luhn_ok(digits: Digits) -> bool:
    """True when the last digit is the Luhn check digit of the others (non-digits: False)."""
    raw = _ascii_digits(digits)
    if not raw:
        return False
    total = 0
    for i, byte in enumerate(reversed(raw)):
        d = byte - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand_of(digits: Digits) -> Brand | None:
    """The brand whose IIN range holds the number's first digits, or None."""
    raw = _ascii_digits(digits)
    if not raw:
        return None
    for lo, hi, brand in IIN_RANGES:
        n = len(lo)
        if len(raw) >= n and int(lo) <= int(raw[:n]) <= int(hi):
            return brand
    return None


def check_card_number(
    digits: Digits,
    accepted: Iterable[str] = tuple(Brand),
    max_digits: int = DEFAULT_MAX_GATEWAY_DIGITS,
) -> CardNumberResult:
    """Check a keyed card number: digits, 12–19 long, Luhn, brand and its lengths, acceptance.

    ``accepted`` is ``IVRPAY_CARD_BRANDS``; ``max_digits`` is ``IVRPAY_GATEWAY_MAX_CARD_DIGITS``:
    a valid number longer than the gateway takes is answered like a brand we do not accept.
    """
    raw = _ascii_digits(digits)
    if raw is None:
        return CardNumberResult(CardNumberCheck.format)
    if len(raw) < MIN_CARD_DIGITS:
        return CardNumberResult(CardNumberCheck.too_short)
    if len(raw) > MAX_CARD_DIGITS:
        return CardNumberResult(CardNumberCheck.too_long)
    if not luhn_ok(raw):
        return CardNumberResult(CardNumberCheck.luhn)
    brand = brand_of(raw)
    if brand is None:
        return CardNumberResult(CardNumberCheck.unknown_brand)
    if len(raw) not in BRAND_LENGTHS[brand]:
        return CardNumberResult(CardNumberCheck.length_for_brand, brand)
    accepted_names = {str(b).strip().upper() for b in accepted}
    if brand.value not in accepted_names or len(raw) > max_digits:
        return CardNumberResult(CardNumberCheck.brand_not_accepted, brand)
    return CardNumberResult(CardNumberCheck.ok, brand)


def check_expiry(mmyy: Digits, now: datetime, tz: str | tzinfo = DEFAULT_TIMEZONE) -> ExpiryCheck:
    """Check a keyed ``MMYY`` expiry: a card is valid through the last day of its month in ``tz``.

    ``now`` must be aware (any zone); it is converted to ``tz`` (``IVRPAY_TIMEZONE``): a card
    ending ``0326`` works until 23:59:59 JST on 31 March and no longer at 00:00 JST on 1 April,
    which is still 31 March in UTC.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("check_expiry needs an aware datetime for now")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    raw = _ascii_digits(mmyy)
    if raw is None or len(raw) != 4:
        return ExpiryCheck.format
    month, year = int(raw[:2]), 2000 + int(raw[2:])
    if not 1 <= month <= 12:
        return ExpiryCheck.month
    local = now.astimezone(zone)
    if (year, month) < (local.year, local.month):
        return ExpiryCheck.past
    return ExpiryCheck.ok


def security_code_length(brand: str | None) -> int:
    """4 digits for AMEX (on the front), 3 for every other brand."""
    return 4 if brand is not None and str(brand).upper() == Brand.AMEX else 3


def check_security_code(code: Digits, brand: str | None) -> SecurityCodeCheck:
    raw = _ascii_digits(code)
    if raw is None:
        return SecurityCodeCheck.format
    if len(raw) != security_code_length(brand):
        return SecurityCodeCheck.length
    return SecurityCodeCheck.ok
