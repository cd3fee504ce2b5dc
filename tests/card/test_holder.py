"""The card holder never shows its digits, and wiping zeroes the very buffers it held."""

from __future__ import annotations

import copy
import logging
import pickle
import re

import pytest

from ivrpay.card import CardData, CardDataError

NUMBER = "4111111111111111"
EXPIRY = "1230"
CODE = "987"
FIRST12 = NUMBER[:12]


def _filled() -> CardData:
    card = CardData()
    card.set_number(NUMBER, "VISA")
    card.set_expiry(EXPIRY)
    card.set_security_code(CODE)
    return card


def _assert_hidden(text: str) -> None:
    assert FIRST12 not in text
    assert EXPIRY not in text
    assert CODE not in text
    # At most the last four digits may show, as one run.
    assert all(len(run) <= 4 for run in re.findall(r"\d+", text))


def test_repr_str_format_show_at_most_last4() -> None:
    card = _filled()
    shown = [repr(card), str(card), f"{card}", f"{card!r}", f"{card:>40}", f"{card!s:^30}"]
    shown.append("%s %r" % (card, card))  # noqa: UP031 - the logging module formats this way
    shown.append("{} {!r}".format(card, card))  # noqa: UP032 - and str.format as templates do
    for text in shown:
        _assert_hidden(text)
        assert "1111" in text and "VISA" in text
    assert card.last4 == "1111"
    assert card.number_length == 16


def test_containers_and_logging_show_no_digits(caplog: pytest.LogCaptureFixture) -> None:
    card = _filled()
    _assert_hidden(repr([card, {"card": card}, (card,)]))
    with caplog.at_level(logging.INFO):
        logging.getLogger("test.holder").info("card %s %r", card, {"c": card})
    assert caplog.text
    _assert_hidden(caplog.text)


def test_no_instance_dict_to_dump() -> None:
    card = _filled()
    assert not hasattr(card, "__dict__")
    with pytest.raises(TypeError):
        vars(card)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_refused_without_digits(protocol: int) -> None:
    card = _filled()
    with pytest.raises(TypeError) as info:
        pickle.dumps(card, protocol=protocol)
    _assert_hidden(str(info.value) + repr(info.value))


def test_copy_refused() -> None:
    card = _filled()
    for fn in (copy.copy, copy.deepcopy):
        with pytest.raises(TypeError) as info:
            fn(card)
        _assert_hidden(str(info.value))


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        ("set_number", "41111111111111111111111"),
        ("set_number", "4111-1111-1111-1111"),
        ("set_number", "411111111"),
        ("set_expiry", "12300"),
        ("set_expiry", "12/3"),
        ("set_security_code", "98765"),
        ("set_security_code", "9a7"),
    ],
)
def test_rejections_carry_no_digits(setter: str, value: str) -> None:
    card = CardData()
    with pytest.raises(CardDataError) as info:
        getattr(card, setter)(value)
    text = str(info.value) + repr(info.value) + repr(info.value.args)
    digits = re.sub(r"\D", "", value)
    assert digits[:4] not in text
    assert card.is_empty


def test_wipe_zeroes_the_buffers_it_held() -> None:
    card = _filled()
    # Keep the holder's own bytearrays to look at them after the wipe.
    number, expiry, code = card._number, card._expiry, card._code
    assert isinstance(number, bytearray) and bytes(number) == NUMBER.encode()
    assert isinstance(expiry, bytearray) and isinstance(code, bytearray)
    card.wipe()
    assert number == bytearray(len(NUMBER))
    assert expiry == bytearray(len(EXPIRY))
    assert code == bytearray(len(CODE))
    assert card._number is None and card._expiry is None and card._code is None
    assert card.is_empty and card.last4 is None and card.brand is None
    with pytest.raises(CardDataError):
        card.reveal_number()
    assert "1111" not in repr(card)


def test_wiping_one_field_keeps_the_others() -> None:
    card = _filled()
    code = card._code
    assert code is not None
    card.wipe_security_code()
    assert code == bytearray(len(CODE))
    assert not card.has_security_code
    assert card.has_number and card.has_expiry
    assert card.reveal_expire_yymm() == "3012"


def test_setting_again_wipes_the_old_buffer() -> None:
    card = _filled()
    old = card._number
    assert old is not None
    card.set_number("5555555555554444", "MASTERCARD")
    assert old == bytearray(len(NUMBER))
    assert card.reveal_number() == "5555555555554444"
    card.wipe()
