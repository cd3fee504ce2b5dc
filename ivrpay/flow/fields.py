"""The three card fields (product.md, steps 2–4): what the caller is asked, which entry is kept
and which error prompt answers one that is not valid. Card data goes into the call's one
:class:`~ivrpay.card.holder.CardData` only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ivrpay.card.holder import CardData
from ivrpay.card.rules import (
    CardNumberCheck,
    ExpiryCheck,
    SecurityCodeCheck,
    check_card_number,
    check_expiry,
    check_security_code,
    security_code_length,
)
from ivrpay.config import Settings
from ivrpay.flow.prompts import P
from ivrpay.payments import Step

CARD_MAX_DIGITS = 19


@dataclass(frozen=True)
class Field:
    name: Step  # progress step and attempts key
    error_code: str  # the payment's error.code when its attempts are used up


CARD_NUMBER = Field(Step.CARD_NUMBER, "invalid_card_number")
EXPIRY = Field(Step.EXPIRY, "invalid_expiry")
SECURITY_CODE = Field(Step.SECURITY_CODE, "invalid_security_code")
ERROR_CODES: dict[str, str] = {f.name: f.error_code for f in (CARD_NUMBER, EXPIRY, SECURITY_CODE)}
# What a gateway input error on a field is told before the field is asked again.
GATEWAY_INPUT_PROMPT: dict[str, str] = {
    CARD_NUMBER.name: P.card_invalid,
    EXPIRY.name: P.expiry_invalid,
    SECURITY_CODE.name: P.security_code_invalid,
}


class CardEntry:
    """The rules of keying the card into ``card``."""

    def __init__(self, card: CardData, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.card = card
        self.settings = settings
        self.clock = clock
        self.code_length = 0  # digits of the security code held

    def fields(self, *, register_only: bool) -> list[Field]:
        """The fields this call asks: no security code when switched off or to store a card."""
        if self.settings.security_code and not register_only:
            return [CARD_NUMBER, EXPIRY, SECURITY_CODE]
        return [CARD_NUMBER, EXPIRY]

    def held(self, f: Field) -> bool:
        """Whether the card holder has a usable value for the field."""
        if f is CARD_NUMBER:
            return self.card.has_number
        if f is EXPIRY:
            return self.card.has_expiry
        # A code keyed for another brand (AMEX: 4 digits) must be asked again.
        length = security_code_length(self.card.brand)
        return self.card.has_security_code and self.code_length == length

    def ask(self, f: Field) -> tuple[str, int]:
        """The prompt and the most keys of the field."""
        if f is CARD_NUMBER:
            return P.enter_card, CARD_MAX_DIGITS
        if f is EXPIRY:
            return P.enter_expiry, 4
        length = security_code_length(self.card.brand)
        return (P.enter_security_code_amex if length == 4 else P.enter_security_code), length

    def keep(self, f: Field, digits: str) -> str | None:
        """Validate and keep an entry; the error prompt when it is not valid."""
        s = self.settings
        if f is CARD_NUMBER:
            checked = check_card_number(digits, s.card_brands, s.gateway_max_card_digits)
            if checked.check is CardNumberCheck.brand_not_accepted:
                return P.brand_not_accepted
            if not checked.ok:
                return P.card_invalid
            self.card.set_number(digits, brand=str(checked.brand))
        elif f is EXPIRY:
            expiry = check_expiry(digits, self.clock(), s.tz)
            if expiry is ExpiryCheck.past:
                return P.expiry_past
            if expiry is not ExpiryCheck.ok:
                return P.expiry_invalid
            self.card.set_expiry(digits)
        else:
            if check_security_code(digits, self.card.brand) is not SecurityCodeCheck.ok:
                return P.security_code_invalid
            self.card.set_security_code(digits)
            self.code_length = len(digits)
        return None
