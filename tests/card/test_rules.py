"""Card rules: Luhn, IIN boundaries, brand lengths, the gateway's digit limit, expiry, codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivrpay.card import (
    BRAND_LENGTHS,
    IIN_RANGES,
    Brand,
    CardNumberCheck,
    ExpiryCheck,
    SecurityCodeCheck,
    brand_of,
    check_card_number,
    check_expiry,
    check_security_code,
    luhn_ok,
    security_code_length,
)

ALL = tuple(Brand)


def _luhn_reference(number: str) -> bool:
    """Luhn by the textbook's other formulation: double every second digit from the right and
    add the digits of the products."""
    digits = [int(c) for c in number]
    total = 0
    for pos, d in enumerate(digits[::-1]):
        total += sum(int(c) for c in str(d * (2 if pos % 2 else 1)))
    return total % 10 == 0


def make_number(prefix: str, length: int) -> str:
    """A Luhn-valid number of ``length`` digits starting with ``prefix``."""
    body = (prefix + "0" * length)[: length - 1]
    for check in "0123456789":
        if _luhn_reference(body + check):
            return body + check
    raise AssertionError("no check digit")


# -- Luhn ---------------------------------------------------------------------------------------
SANDBOX_CARDS = [
    "4111111111111111",
    "5555555555554444",
    "3530111333300000",
    "378282246310005",
    "36227206271667",
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000127",
    "4000000000000119",
    "4000000000000101",
]


@pytest.mark.parametrize("number", [*SANDBOX_CARDS, "79927398713", "0", "00"])
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert luhn_ok(number)
    assert luhn_ok(number.encode())
    assert luhn_ok(bytearray(number.encode()))


@pytest.mark.parametrize(
    "number",
    ["4111111111111112", "79927398710", "1", "", "4111-1111", "41111111111111１", None, 41],
)
def test_luhn_rejects(number: object) -> None:
    assert not luhn_ok(number)  # type: ignore[arg-type]


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
def test_luhn_matches_reference(number: str) -> None:
    assert luhn_ok(number) == _luhn_reference(number)


@given(st.text(alphabet="0123456789", min_size=11, max_size=18), st.data())
def test_luhn_catches_every_single_digit_error(body: str, data: st.DataObject) -> None:
    number = make_number(body, len(body) + 1)
    pos = data.draw(st.integers(0, len(number) - 1))
    other = data.draw(st.sampled_from([d for d in "0123456789" if d != number[pos]]))
    assert luhn_ok(number)
    assert not luhn_ok(number[:pos] + other + number[pos + 1 :])


# -- brands by IIN ------------------------------------------------------------------------------
BRAND_AT = [
    ("0", None),
    ("1", None),
    ("2220", None),
    ("2221", Brand.MASTERCARD),
    ("2720", Brand.MASTERCARD),
    ("2721", None),
    ("2999", None),
    ("3000", Brand.DINERS),
    ("3059", Brand.DINERS),
    ("306", None),
    ("3094", None),
    ("3095", Brand.DINERS),
    ("3096", None),
    ("31", None),
    ("33", None),
    ("34", Brand.AMEX),
    ("3527", None),
    ("3528", Brand.JCB),
    ("3589", Brand.JCB),
    ("3590", None),
    ("36", Brand.DINERS),
    ("37", Brand.AMEX),
    ("38", Brand.DINERS),
    ("39", Brand.DINERS),
    ("4", Brand.VISA),
    ("49", Brand.VISA),
    ("50", None),
    ("51", Brand.MASTERCARD),
    ("55", Brand.MASTERCARD),
    ("56", None),
    ("60", None),
    ("6010", None),
    ("6011", Brand.DISCOVER),
    ("6012", None),
    ("61", None),
    ("62", Brand.UNIONPAY),
    ("63", None),
    ("643", None),
    ("644", Brand.DISCOVER),
    ("649", Brand.DISCOVER),
    ("65", Brand.DISCOVER),
    ("66", None),
    ("7", None),
    ("8", None),
    ("9", None),
]


@pytest.mark.parametrize(("prefix", "brand"), BRAND_AT)
def test_brand_at_each_iin_boundary(prefix: str, brand: Brand | None) -> None:
    assert brand_of(make_number(prefix, 16)) is brand


@pytest.mark.parametrize(("lo", "hi", "brand"), IIN_RANGES)
def test_every_range_edge_and_its_neighbours(lo: str, hi: str, brand: Brand) -> None:
    width = len(lo)
    assert brand_of(make_number(lo, 16)) is brand
    assert brand_of(make_number(hi, 16)) is brand
    below = str(int(lo) - 1).zfill(width)
    above = str(int(hi) + 1).zfill(width)
    for neighbour in (below, above):
        if len(neighbour) != width:
            continue
        # 649 → 650 stays DISCOVER through the range 65: the neighbour is in another row.
        other_row = any(
            int(o_lo) <= int(neighbour[: len(o_lo)]) <= int(o_hi)
            for o_lo, o_hi, o_brand in IIN_RANGES
            if o_brand is brand and (o_lo, o_hi) != (lo, hi)
        )
        assert (brand_of(make_number(neighbour, 16)) is brand) == other_row


def test_brand_of_odd_input() -> None:
    assert brand_of("") is None
    assert brand_of("4x") is None
    assert brand_of("222") is None  # shorter than the 4-digit IIN, and 22 is no brand


# -- card number check --------------------------------------------------------------------------
@pytest.mark.parametrize("brand", ALL)
@pytest.mark.parametrize("length", range(12, 20))
def test_every_brand_length(brand: Brand, length: int) -> None:
    prefix = next(lo for lo, _hi, b in IIN_RANGES if b is brand)
    result = check_card_number(make_number(prefix, length), ALL, max_digits=19)
    if length in BRAND_LENGTHS[brand]:
        assert result.check is CardNumberCheck.ok
    else:
        assert result.check is CardNumberCheck.length_for_brand
    assert result.brand is brand


def test_brand_lengths_are_the_contract() -> None:
    assert BRAND_LENGTHS == {
        Brand.VISA: {13, 16, 19},
        Brand.MASTERCARD: {16},
        Brand.JCB: {16, 17, 18, 19},
        Brand.AMEX: {15},
        Brand.DINERS: {14, 15, 16, 17, 18, 19},
        Brand.DISCOVER: {16, 17, 18, 19},
        Brand.UNIONPAY: {16, 17, 18, 19},
    }


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", Brand.VISA),
        ("5555555555554444", Brand.MASTERCARD),
        ("3530111333300000", Brand.JCB),
        ("378282246310005", Brand.AMEX),
        ("36227206271667", Brand.DINERS),
    ],
)
def test_sandbox_cards_pass_with_the_default_brands(number: str, brand: Brand) -> None:
    result = check_card_number(number, ("VISA", "MASTERCARD", "JCB", "AMEX", "DINERS"))
    assert result.ok and result.brand is brand
    assert check_card_number(bytearray(number.encode()), ALL).ok


@pytest.mark.parametrize(
    ("number", "check"),
    [
        ("", CardNumberCheck.too_short),
        ("41111111111", CardNumberCheck.too_short),
        ("41111111111111111111", CardNumberCheck.too_long),
        ("4111111111111112", CardNumberCheck.luhn),
        ("4111 111111111111", CardNumberCheck.format),
        ("411111111111111*", CardNumberCheck.format),
        ("４１１１１１１１１１１１１１１１", CardNumberCheck.format),
        (make_number("1", 16), CardNumberCheck.unknown_brand),
        (make_number("9", 16), CardNumberCheck.unknown_brand),
        (make_number("4", 15), CardNumberCheck.length_for_brand),
        (make_number("34", 16), CardNumberCheck.length_for_brand),
    ],
)
def test_card_number_failures(number: str, check: CardNumberCheck) -> None:
    result = check_card_number(number, ALL, max_digits=19)
    assert result.check is check
    assert not result.ok


def test_non_string_input_is_a_format_error_not_a_crash() -> None:
    assert check_card_number(None).check is CardNumberCheck.format  # type: ignore[arg-type]
    assert check_card_number(4111111111111111).check is CardNumberCheck.format  # type: ignore[arg-type]


def test_brand_not_configured() -> None:
    discover = make_number("6011", 16)
    result = check_card_number(discover, ("VISA", "MASTERCARD", "JCB", "AMEX", "DINERS"))
    assert result.check is CardNumberCheck.brand_not_accepted
    assert result.brand is Brand.DISCOVER
    assert check_card_number(discover, ("visa", " discover ")).ok  # settings spelling is forgiven
    assert check_card_number("4111111111111111", ()).check is CardNumberCheck.brand_not_accepted


@pytest.mark.parametrize(
    ("prefix", "length", "max_digits", "check"),
    [
        ("4", 16, 16, CardNumberCheck.ok),
        ("4", 19, 16, CardNumberCheck.brand_not_accepted),
        ("4", 19, 18, CardNumberCheck.brand_not_accepted),
        ("4", 19, 19, CardNumberCheck.ok),
        ("3528", 17, 16, CardNumberCheck.brand_not_accepted),
        ("3528", 17, 17, CardNumberCheck.ok),
        ("36", 14, 12, CardNumberCheck.brand_not_accepted),
        ("4", 13, 12, CardNumberCheck.brand_not_accepted),
        ("4", 13, 13, CardNumberCheck.ok),
        ("4", 18, 16, CardNumberCheck.length_for_brand),  # invalid before unacceptable
    ],
)
def test_gateway_max_digits(
    prefix: str, length: int, max_digits: int, check: CardNumberCheck
) -> None:
    assert check_card_number(make_number(prefix, length), ALL, max_digits).check is check


def test_default_max_digits_is_16() -> None:
    visa19 = make_number("4", 19)
    assert check_card_number(visa19).check is CardNumberCheck.brand_not_accepted


def test_results_never_carry_digits() -> None:
    for number in ("4111111111111111", "4111111111111112", "1234"):
        result = check_card_number(number)
        assert not any(c.isdigit() for c in repr(result) + str(result.check))


# -- expiry -------------------------------------------------------------------------------------
JST = ZoneInfo("Asia/Tokyo")
# 2026-03-31 23:59:59 JST and one second later (00:00 on 1 April JST, still 31 March in UTC)
LAST_SECOND_OF_MARCH_JST = datetime(2026, 3, 31, 14, 59, 59, tzinfo=UTC)
FIRST_SECOND_OF_APRIL_JST = LAST_SECOND_OF_MARCH_JST + timedelta(seconds=1)


def test_expiry_valid_through_the_end_of_its_month_in_tokyo() -> None:
    assert check_expiry("0326", LAST_SECOND_OF_MARCH_JST) is ExpiryCheck.ok
    assert check_expiry("0326", FIRST_SECOND_OF_APRIL_JST) is ExpiryCheck.past
    assert FIRST_SECOND_OF_APRIL_JST.month == 3  # in UTC it is still March
    assert check_expiry("0326", FIRST_SECOND_OF_APRIL_JST, "UTC") is ExpiryCheck.ok
    assert check_expiry("0426", FIRST_SECOND_OF_APRIL_JST) is ExpiryCheck.ok


def test_expiry_now_in_any_zone_is_converted() -> None:
    # Midnight UTC on 1 April is 09:00 JST on 1 April: March has ended in both.
    midnight_utc = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    assert check_expiry("0326", midnight_utc) is ExpiryCheck.past
    # 23:00 on 31 March in New York is 12:00 on 1 April in Tokyo.
    new_york = datetime(2026, 3, 31, 23, 0, tzinfo=ZoneInfo("America/New_York"))
    assert check_expiry("0326", new_york) is ExpiryCheck.past
    assert check_expiry("0326", new_york, "America/New_York") is ExpiryCheck.ok
    fixed = datetime(2026, 3, 31, 23, 59, tzinfo=timezone(timedelta(hours=9)))
    assert check_expiry("0326", fixed, JST) is ExpiryCheck.ok


def test_expiry_across_the_new_year() -> None:
    new_year_jst = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)  # 2027-01-01 00:00 JST
    assert check_expiry("1226", new_year_jst - timedelta(microseconds=1)) is ExpiryCheck.ok
    assert check_expiry("1226", new_year_jst) is ExpiryCheck.past
    assert check_expiry("0127", new_year_jst) is ExpiryCheck.ok
    assert check_expiry("1126", new_year_jst) is ExpiryCheck.past
    assert check_expiry("0199", new_year_jst) is ExpiryCheck.ok
    assert check_expiry("1225", new_year_jst) is ExpiryCheck.past


@pytest.mark.parametrize("mmyy", ["0026", "1326", "9926", "0000"])
def test_expiry_month_out_of_range(mmyy: str) -> None:
    assert check_expiry(mmyy, LAST_SECOND_OF_MARCH_JST) is ExpiryCheck.month


@pytest.mark.parametrize("mmyy", ["", "326", "03/26", "03266", "03a6", "０３２６", None, 326])
def test_expiry_format(mmyy: object) -> None:
    assert check_expiry(mmyy, LAST_SECOND_OF_MARCH_JST) is ExpiryCheck.format  # type: ignore[arg-type]


@pytest.mark.parametrize("month", range(1, 13))
def test_every_month_is_accepted_in_a_future_year(month: int) -> None:
    mmyy = f"{month:02d}27"
    assert check_expiry(mmyy, LAST_SECOND_OF_MARCH_JST) is ExpiryCheck.ok
    assert check_expiry(mmyy.encode(), LAST_SECOND_OF_MARCH_JST) is ExpiryCheck.ok


def test_expiry_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        check_expiry("0326", datetime(2026, 3, 1))


# -- security code ------------------------------------------------------------------------------
def test_security_code_lengths() -> None:
    assert security_code_length(Brand.AMEX) == 4
    assert security_code_length("AMEX") == 4
    assert security_code_length("amex") == 4
    for brand in (b for b in Brand if b is not Brand.AMEX):
        assert security_code_length(brand) == 3
    assert security_code_length(None) == 3


@pytest.mark.parametrize(
    ("code", "brand", "check"),
    [
        ("123", Brand.VISA, SecurityCodeCheck.ok),
        ("000", Brand.JCB, SecurityCodeCheck.ok),
        ("1234", Brand.AMEX, SecurityCodeCheck.ok),
        (b"1234", "AMEX", SecurityCodeCheck.ok),
        ("123", Brand.AMEX, SecurityCodeCheck.length),
        ("1234", Brand.VISA, SecurityCodeCheck.length),
        ("12", Brand.MASTERCARD, SecurityCodeCheck.length),
        ("", Brand.VISA, SecurityCodeCheck.length),
        ("12a", Brand.VISA, SecurityCodeCheck.format),
        ("12*", Brand.VISA, SecurityCodeCheck.format),
        (None, Brand.VISA, SecurityCodeCheck.format),
    ],
)
def test_security_code(code: object, brand: str, check: SecurityCodeCheck) -> None:
    assert check_security_code(code, brand) is check  # type: ignore[arg-type]
