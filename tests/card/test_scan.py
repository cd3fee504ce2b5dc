"""The card-number finder of ``ivrpay.card.scan``: every written form is found, and the texts that
only look numeric are not (both sides of the rule in the module's docstring)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivrpay.card.rules import luhn_ok
from ivrpay.card.scan import holds_card_number, json_holds_card_number

VISA = "4111111111111111"
AMEX = "378282246310005"
JCB = "3530111333300000"


@pytest.mark.parametrize(
    "text",
    [
        VISA,
        "4111-1111-1111-1111",
        "4111 1111 1111 1111",
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111_1111_1111_1111",
        "4111 - 1111 - 1111 - 1111",
        "4111\n1111\n1111\n1111",
        "3782-822463-10005",  # AMEX as printed: 4-6-5
        "４１１１１１１１１１１１１１１１",  # full-width digits
        "４１１１－１１１１－１１１１－１１１１",  # full-width hyphens
        "４１１１　１１１１　１１１１　１１１１",  # ideographic spaces
        "4111ー1111ー1111ー1111",  # the prolonged sound mark written as a dash
        "4111−1111−1111−1111",  # U+2212 minus
        "٤١١١١١١١١١١١١١١١",  # Arabic-Indic digits
        "card 4111 1111 1111 1111 exp 12/30",
        "4111 1111 1111 1111 123",  # followed by a security code with the same separator
        "m5555555555554444",
        "カード番号：3530-1113-3330-0000です",
        "6062828888666688",  # no brand the IVR takes (a Hipercard-like IIN): still card data
        "1234567812345670",  # no known IIN at all, but Luhn-valid: refused by rule
    ],
)
def test_every_written_form_is_found(text: str) -> None:
    assert holds_card_number([text])


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # Luhn fails
        "202411270001234",  # an order number (15 digits, not Luhn)
        "ORD-2026-1207-0002",  # dashed groups, 12 digits, not Luhn
        "09012345678",  # a phone number: 11 digits
        "03-1234-5678",
        "2026-12-07 12:34:56",  # mixed separators: not one number
        "4111-1111 1111-1111",  # mixed separators (the rule's documented limit)
        "4111a1111b1111c1111",  # letters between the groups
        "4111     1111     1111     1111",  # gaps longer than any separator
        "14111111111111111111",  # 20 digits: no card number is read inside a longer run
        "x" + "4" * 40,
        "",
        "no digits at all",
    ],
)
def test_what_only_looks_numeric_passes(text: str) -> None:
    assert not holds_card_number([text])


def test_split_over_neighbouring_texts() -> None:
    assert holds_card_number(["4111", "1111", "1111", "1111"])
    assert holds_card_number(["4111-1111", "1111-1111"])
    assert holds_card_number(["4111 1111 1111", "1111"])
    assert holds_card_number(["378282", "246310005"])
    # A letter in an item between ends the number; items of their own that fail Luhn pass.
    assert not holds_card_number(["4111", "x", "1111", "1111", "1111"])
    assert not holds_card_number(["4111", "1111", "1111", "1112"])


def test_json_at_any_depth_and_split() -> None:
    assert json_holds_card_number({"a": {"b": [{"c": "4111.1111.1111.1111"}]}})
    assert json_holds_card_number({"n": 36227206271667})  # an integer
    assert json_holds_card_number({VISA: 1})  # a key
    assert json_holds_card_number({"4111": 1, "1111": 2, "11111111": 3})  # split over keys
    assert json_holds_card_number({"a": "4111", "b": "1111", "c": "1111", "d": "1111"})
    assert json_holds_card_number([["x", ["4111", "1111", "1111", "1111"]]])
    assert json_holds_card_number({"f": 4111111111111111.0})
    # Not neighbours: null, booleans and nested containers stand between values.
    assert not json_holds_card_number(["4111", None, "1111", "1111", "1111"])
    assert not json_holds_card_number({"a": "4111", "b": True, "c": "111111111111"})
    assert not json_holds_card_number({"tel": "09012345678", "ref": "4111111111111112"})
    assert not json_holds_card_number({"customer": "山田", "n": 1, "at": "2026-12-07 12:34:56"})


@given(st.from_regex(r"[0-9]{12,19}", fullmatch=True))
def test_a_plain_run_is_refused_exactly_when_luhn_passes(run: str) -> None:
    assert holds_card_number([run]) is luhn_ok(run)


@given(st.text(alphabet=st.characters(categories=("L", "P", "Zs", "Sm"))))
def test_text_without_digits_never_holds_one(text: str) -> None:
    assert not holds_card_number([text])
