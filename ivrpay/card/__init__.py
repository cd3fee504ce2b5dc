"""Card rules and the wipeable card holder. Pure: imports nothing of ours outside this package."""

from ivrpay.card.holder import CardData, CardDataError
from ivrpay.card.rules import (
    BRAND_LENGTHS,
    IIN_RANGES,
    Brand,
    CardNumberCheck,
    CardNumberResult,
    ExpiryCheck,
    SecurityCodeCheck,
    brand_of,
    check_card_number,
    check_expiry,
    check_security_code,
    luhn_ok,
    security_code_length,
)
from ivrpay.card.scan import holds_card_number, json_holds_card_number

__all__ = [
    "BRAND_LENGTHS",
    "IIN_RANGES",
    "Brand",
    "CardData",
    "CardDataError",
    "CardNumberCheck",
    "CardNumberResult",
    "ExpiryCheck",
    "SecurityCodeCheck",
    "brand_of",
    "check_card_number",
    "check_expiry",
    "check_security_code",
    "holds_card_number",
    "json_holds_card_number",
    "luhn_ok",
    "security_code_length",
]
