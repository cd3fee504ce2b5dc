"""The prompts of the call, as constants, and the start-up check that their audio is there.

The flow names every prompt as ``P.<id>`` (a typo is an AttributeError, not a silent missing
file) and plays it as ``playback_name(P.welcome)`` → ``ivrpay/welcome``; Asterisk picks
``sounds/<lang>/ivrpay/welcome.wav`` from the channel's language. Amounts and digits come from
:mod:`ivrpay.flow.numbers`. The wording lives in ``sounds/prompts.csv`` (see :mod:`ivrpay.sounds`).

Composition the wording is written for (``+`` = next file, no pause of our own):

* amount: ``amount_is`` + amount_prompts(n) + ``amount_is_tail``
  (お支払い金額は、 いちまんにせんはっぴゃくえん です。 / The amount to pay is twelve … yen.)
* confirm a payment: ``confirm_card_ending`` + digits_prompts(last4) + ``confirm_card_ending_tail``
  + amount_prompts(n) + ``amount_is_tail`` + ``confirm_pay_press``
  (末尾が いち にい さん よん のカードで、 12,800円 です。 よろしければ1を…)
* confirm a card to store: ``confirm_card_ending`` + digits + ``confirm_card_ending_tail`` +
  ``confirm_register_press`` (末尾が 1 2 3 4 のカードで、 このカードを登録する場合は1を…)

Empty wording (English tails, ``silence``) is a 120 ms silence file.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path

from ivrpay.flow.numbers import ALL_NUMBER_PROMPTS
from ivrpay.sounds.catalogue import (
    CatalogueError,
    Prompt,
    load_prompts,
    missing_files,
    playback_name,
    prompt_file,
)
from ivrpay.sounds.wav import check_wav, check_wav_bytes

__all__ = [
    "ALL_NUMBER_PROMPTS",
    "FLOW_PROMPTS",
    "REQUIRED_PROMPTS",
    "CatalogueError",
    "P",
    "Prompt",
    "check_wav",
    "check_wav_bytes",
    "invalid_prompts",
    "load_prompts",
    "missing_prompts",
    "playback_name",
    "prompt_file",
]


class P(enum.StrEnum):
    """Every prompt the flow plays, other than numbers and digits. Values are prompt ids."""

    welcome = "welcome"
    amount_is = "amount_is"
    amount_is_tail = "amount_is_tail"
    enter_code = "enter_code"
    code_not_found = "code_not_found"
    payment_not_found = "payment_not_found"
    enter_card = "enter_card"
    card_invalid = "card_invalid"
    brand_not_accepted = "brand_not_accepted"
    enter_expiry = "enter_expiry"
    expiry_invalid = "expiry_invalid"
    expiry_past = "expiry_past"
    enter_security_code = "enter_security_code"
    enter_security_code_amex = "enter_security_code_amex"
    security_code_invalid = "security_code_invalid"
    no_input = "no_input"
    confirm_card_ending = "confirm_card_ending"
    confirm_card_ending_tail = "confirm_card_ending_tail"
    confirm_pay_press = "confirm_pay_press"
    confirm_register_press = "confirm_register_press"
    please_wait = "please_wait"
    paid = "paid"
    registered = "registered"
    paid_and_registered = "paid_and_registered"
    paid_not_registered = "paid_not_registered"
    declined = "declined"
    declined_options = "declined_options"
    input_failed = "input_failed"
    connecting_back = "connecting_back"
    connecting_operator = "connecting_operator"
    system_error = "system_error"
    unknown_outcome = "unknown_outcome"
    canceled = "canceled"
    expired = "expired"
    already_paid = "already_paid"
    in_use = "in_use"
    busy = "busy"
    apology = "apology"
    too_many_attempts = "too_many_attempts"
    silence = "silence"  # a short silence in every language: GET DATA needs a file to play


FLOW_PROMPTS: tuple[str, ...] = tuple(p.value for p in P)
# What the server needs on disk for each configured language before it takes a call.
REQUIRED_PROMPTS: tuple[str, ...] = FLOW_PROMPTS + ALL_NUMBER_PROMPTS


def missing_prompts(sounds_dir: Path | str, languages: Iterable[str]) -> list[Path]:
    """The audio files the call needs that are missing, for each language (empty = all there).

    ``ivrpay serve`` refuses to start when this is not empty, naming the first file.
    """
    return missing_files(sounds_dir, languages, REQUIRED_PROMPTS)


def invalid_prompts(sounds_dir: Path | str, languages: Iterable[str]) -> list[str]:
    """One line per needed prompt file that is missing or not an 8 kHz/16-bit/mono PCM WAV."""
    problems = []
    for lang in languages:
        for pid in REQUIRED_PROMPTS:
            path = prompt_file(sounds_dir, lang, pid)
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif (error := check_wav(path)) is not None:
                problems.append(f"{path.parent}/{error}")
    return problems
