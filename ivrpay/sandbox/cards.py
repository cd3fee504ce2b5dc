"""The sandbox's own card rules (it is another system: it shares no code with ivrpay's card checks).

Test cards are product.md's "Sandbox gateway test cards"; other Luhn-valid numbers of a known brand
are approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Effect = Literal["approve", "decline", "lost_answer", "gateway_timeout"]


@dataclass(frozen=True, slots=True)
class SpecialCard:
    effect: Effect
    err_info: str = ""


TEST_CARDS: dict[str, SpecialCard] = {
    "4000000000000002": SpecialCard("decline", "42G020000"),  # insufficient balance
    "4000000000009995": SpecialCard("decline", "42G030000"),  # over limit
    "4000000000000069": SpecialCard("decline", "42G830000"),  # expiry wrong
    "4000000000000127": SpecialCard("decline", "42G440000"),  # security code wrong
    "4000000000000119": SpecialCard("lost_answer"),  # charged, the answer never arrives
    "4000000000000101": SpecialCard("gateway_timeout", "E91020001"),  # nothing charged
}


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand_of(number: str) -> str | None:
    """Brand from the IIN ranges (the common ones: what a Japanese acquirer sees)."""
    two, four = int(number[:2]), int(number[:4])
    three, six = int(number[:3]), int(number[:6]) if len(number) >= 6 else 0
    if number[0] == "4":
        return "VISA"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "MASTERCARD"
    if 3528 <= four <= 3589:
        return "JCB"
    if two in (34, 37):
        return "AMEX"
    if two in (36, 38, 39) or 300 <= three <= 305 or four == 3095:
        return "DINERS"
    if four == 6011 or two == 65 or 644 <= three <= 649 or 622126 <= six <= 622925:
        return "DISCOVER"
    if two == 62:
        return "UNIONPAY"
    return None


def security_code_length(brand: str | None) -> int:
    return 4 if brand == "AMEX" else 3


def mask(number: str) -> str:
    """How the gateway shows a stored or charged number: ``************1111``."""
    return "*" * (len(number) - 4) + number[-4:]
