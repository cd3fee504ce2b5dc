"""The amount read-out and the card-ending digits, checked through the words of the prompts.

The words come from ``sounds/prompts.csv`` (Japanese kana, English words), so a wrong prompt id
and a wrong wording both fail. The expected words come from a second, independent formulation:
Japanese by naive digit+unit reading followed by the sound-change rules as text rewrites, English
by recursion; both are pinned by hand-written boundary values first.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivrpay.config import REPO_ROOT
from ivrpay.flow.numbers import (
    ALL_NUMBER_PROMPTS,
    MAX_AMOUNT,
    amount_prompts,
    digits_prompts,
)
from ivrpay.sounds import load_prompts, prompt_file

SOUNDS = REPO_ROOT / "sounds"
CATALOGUE = load_prompts(SOUNDS)


def spoken(ids: list[str], lang: str) -> str:
    words = [CATALOGUE[i].text(lang) for i in ids]
    return "".join(words) if lang == "ja" else " ".join(words)


# -- the second formulation ---------------------------------------------------------------------
_JA_DIGIT = dict(enumerate("_ いち に さん よん ご ろく なな はち きゅう".split()))
_JA_RULES = {  # the sound changes, each inside one bracketed place
    "<いちせん>": "<せん>",
    "<さんせん>": "<さんぜん>",
    "<はちせん>": "<はっせん>",
    "<いちひゃく>": "<ひゃく>",
    "<さんひゃく>": "<さんびゃく>",
    "<ろくひゃく>": "<ろっぴゃく>",
    "<はちひゃく>": "<はっぴゃく>",
    "<いちじゅう>": "<じゅう>",
}


def ja_reference(n: int) -> str:
    if n == 0:
        return "ぜろえん"
    digits = str(n).zfill(8)

    def four(group: str) -> str:
        return "".join(
            f"<{_JA_DIGIT[int(d)]}{unit}>"
            for d, unit in zip(group, ("せん", "ひゃく", "じゅう", ""), strict=True)
            if d != "0"
        )

    text = (four(digits[:4]) + "まん" if int(digits[:4]) else "") + four(digits[4:]) + "えん"
    for naive, said in _JA_RULES.items():
        text = text.replace(naive, said)
    text = re.sub(
        r"<よん>えん$", "よえん", text
    )  # 4円 is よえん; 9円 きゅうえん, 7円 ななえん as read
    return text.replace("<", "").replace(">", "")


_EN_SMALL = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def en_words(n: int) -> str:
    for size, name in ((1_000_000, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, tail = divmod(n, size)
            return f"{en_words(head)} {name}" + (f" {en_words(tail)}" if tail else "")
    if n >= 20:
        return _EN_TENS[n // 10] + (f" {_EN_SMALL[n % 10]}" if n % 10 else "")
    return _EN_SMALL[n]


def en_reference(n: int) -> str:
    return f"{en_words(n)} yen"


REFERENCE = {"ja": ja_reference, "en": en_reference}

# -- hand-written boundaries (these also pin the second formulation) ---------------------------
BOUNDARIES = [
    (0, "ぜろえん", "zero yen"),
    (1, "いちえん", "one yen"),
    (4, "よえん", "four yen"),
    (7, "ななえん", "seven yen"),
    (9, "きゅうえん", "nine yen"),
    (10, "じゅうえん", "ten yen"),
    (11, "じゅういちえん", "eleven yen"),
    (14, "じゅうよえん", "fourteen yen"),
    (19, "じゅうきゅうえん", "nineteen yen"),
    (20, "にじゅうえん", "twenty yen"),
    (40, "よんじゅうえん", "forty yen"),
    (99, "きゅうじゅうきゅうえん", "ninety nine yen"),
    (100, "ひゃくえん", "one hundred yen"),
    (101, "ひゃくいちえん", "one hundred one yen"),
    (300, "さんびゃくえん", "three hundred yen"),
    (600, "ろっぴゃくえん", "six hundred yen"),
    (800, "はっぴゃくえん", "eight hundred yen"),
    (999, "きゅうひゃくきゅうじゅうきゅうえん", "nine hundred ninety nine yen"),
    (1000, "せんえん", "one thousand yen"),
    (1001, "せんいちえん", "one thousand one yen"),
    (3000, "さんぜんえん", "three thousand yen"),
    (8000, "はっせんえん", "eight thousand yen"),
    (
        9999,
        "きゅうせんきゅうひゃくきゅうじゅうきゅうえん",
        "nine thousand nine hundred ninety nine yen",
    ),
    (10000, "いちまんえん", "ten thousand yen"),
    (10001, "いちまんいちえん", "ten thousand one yen"),
    (11000, "いちまんせんえん", "eleven thousand yen"),
    (12800, "いちまんにせんはっぴゃくえん", "twelve thousand eight hundred yen"),
    (40004, "よんまんよえん", "forty thousand four yen"),
    (
        99999,
        "きゅうまんきゅうせんきゅうひゃくきゅうじゅうきゅうえん",
        "ninety nine thousand nine hundred ninety nine yen",
    ),
    (100000, "じゅうまんえん", "one hundred thousand yen"),
    (100001, "じゅうまんいちえん", "one hundred thousand one yen"),
    (110000, "じゅういちまんえん", "one hundred ten thousand yen"),
    (300000, "さんじゅうまんえん", "three hundred thousand yen"),
    (
        999999,
        "きゅうじゅうきゅうまんきゅうせんきゅうひゃくきゅうじゅうきゅうえん",
        "nine hundred ninety nine thousand nine hundred ninety nine yen",
    ),
    (1000000, "ひゃくまんえん", "one million yen"),
    (1000001, "ひゃくまんいちえん", "one million one yen"),
    (3000000, "さんびゃくまんえん", "three million yen"),
    (6080000, "ろっぴゃくはちまんえん", "six million eighty thousand yen"),
    (
        8888888,
        "はっぴゃくはちじゅうはちまんはっせんはっぴゃくはちじゅうはちえん",
        "eight million eight hundred eighty eight thousand eight hundred eighty eight yen",
    ),
    (
        9999999,
        "きゅうひゃくきゅうじゅうきゅうまんきゅうせんきゅうひゃくきゅうじゅうきゅうえん",
        "nine million nine hundred ninety nine thousand nine hundred ninety nine yen",
    ),
]


@pytest.mark.parametrize(("amount", "ja", "en"), BOUNDARIES)
def test_boundaries(amount: int, ja: str, en: str) -> None:
    assert spoken(amount_prompts(amount, "ja"), "ja") == ja
    assert spoken(amount_prompts(amount, "en"), "en") == en
    assert ja_reference(amount) == ja and en_reference(amount) == en


def test_prompt_ids_of_an_example() -> None:
    assert amount_prompts(12800, "ja") == ["num_1", "unit_man", "num_2000", "num_800", "yen"]
    assert amount_prompts(12804, "ja")[-1] == "yen_4"
    assert amount_prompts(12800, "en") == ["num_12", "unit_thousand", "num_800", "yen"]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_power_of_ten(lang: str) -> None:
    for k in range(8):
        for n in (10**k - 1, 10**k, 10**k + 1):
            if 0 <= n <= MAX_AMOUNT:
                assert spoken(amount_prompts(n, lang), lang) == REFERENCE[lang](n), n


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_man_step(lang: str) -> None:
    for m in range(1, 1000):
        for n in (m * 10_000 - 1, m * 10_000, m * 10_000 + 1, m * 10_000 + 9999):
            assert spoken(amount_prompts(n, lang), lang) == REFERENCE[lang](n), n


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_everything_below_twenty_thousand(lang: str) -> None:
    for n in range(20_001):
        assert spoken(amount_prompts(n, lang), lang) == REFERENCE[lang](n), n


@pytest.mark.parametrize("lang", ["ja", "en"])
@settings(max_examples=1500, deadline=None)
@given(st.integers(0, MAX_AMOUNT))
def test_property(lang: str, amount: int) -> None:
    assert spoken(amount_prompts(amount, lang), lang) == REFERENCE[lang](amount)


def _covering_amounts() -> set[int]:
    """Each number prompt depends on at most two digits of the amount (a teen, a 万 group's
    last digit before 万, the last digit fused with 円), so every pair of digits at every pair
    of places covers every prompt that any amount in 0…9,999,999 can use."""
    places = [10**p for p in range(7)]
    pairs = {d * a + e * b for a in places for b in places for d in range(10) for e in range(10)}
    return {n for n in pairs if n <= MAX_AMOUNT} | set(range(10_000))


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_number_prompts_used_over_the_range_all_exist(lang: str) -> None:
    used = {pid for n in _covering_amounts() for pid in amount_prompts(n, lang)}
    used |= set(digits_prompts("0123456789", lang))
    assert used <= set(ALL_NUMBER_PROMPTS)
    assert used <= set(CATALOGUE)
    missing = [pid for pid in sorted(used) if not prompt_file(SOUNDS, lang, pid).is_file()]
    assert missing == []


def test_digits() -> None:
    assert digits_prompts("1234", "ja") == ["digit_1", "digit_2", "digit_3", "digit_4"]
    assert spoken(digits_prompts("1234", "ja"), "ja") == "いちにいさんよん"
    assert spoken(digits_prompts("0905", "en"), "en") == "zero nine zero five"
    assert spoken(digits_prompts("7", "ja"), "ja") == "なな"
    assert digits_prompts("", "en") == []


@pytest.mark.parametrize("bad", ["12a4", "１２３４", "12 4", "-1", None, 1234])
def test_digits_rejects_non_digits(bad: object) -> None:
    with pytest.raises(ValueError):
        digits_prompts(bad, "ja")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [-1, MAX_AMOUNT + 1, 10**12])
def test_amount_out_of_range(amount: int) -> None:
    with pytest.raises(ValueError):
        amount_prompts(amount, "ja")


@pytest.mark.parametrize("amount", [True, 1.0, "100", None])
def test_amount_not_an_int(amount: object) -> None:
    with pytest.raises(TypeError):
        amount_prompts(amount, "en")  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["fr", "JA", "", "ja_JP"])
def test_unknown_language(lang: str) -> None:
    with pytest.raises(ValueError):
        amount_prompts(100, lang)
    with pytest.raises(ValueError):
        digits_prompts("1", lang)
