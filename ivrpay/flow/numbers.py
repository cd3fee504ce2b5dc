"""Amounts and digits as lists of ivrpay's own number prompts, composed per language.

Asterisk's ``SAY NUMBER`` is never used: without Japanese core sounds it silently speaks English.
The prompts are ids in ``sounds/prompts.csv`` (``sounds/<lang>/ivrpay/<id>.wav``); one id has one
meaning in both languages, but each language composes with the ids that sound natural in it:

* Japanese counts in 万 (10,000) groups and bakes the sound changes into whole prompts:
  ``num_3000`` さんぜん, ``num_8000`` はっせん, ``num_300`` さんびゃく, ``num_600`` ろっぴゃく,
  ``num_800`` はっぴゃく; 1 before 千・百・十 is not said (せん, ひゃく, じゅう) but it is before
  万 (いちまん); 円 fuses with a last digit (``yen_4`` よえん, ``yen_9`` きゅうえん, ``yen_7``
  ななえん).
  12,800 → いちまん にせん はっぴゃく えん.
* English counts in thousands: 12,800 → twelve thousand eight hundred yen.

Zero is ``digit_0`` (ぜろ / zero) + yen. Card-ending digits use ``digit_N`` (ja いち, にい, …,
ごお: lengthened as Japanese reads digits one by one).
"""

from __future__ import annotations

LANGUAGES = ("ja", "en")
MAX_AMOUNT = 9_999_999  # amount + tax limit of a charge

DIGIT_PROMPTS = tuple(f"digit_{d}" for d in range(10))
NUMBER_PROMPTS = (
    *(f"num_{n}" for n in range(1, 20)),
    *(f"num_{n}" for n in range(20, 100, 10)),
    *(f"num_{n}" for n in range(100, 1000, 100)),
    *(f"num_{n}" for n in range(1000, 10000, 1000)),
    "unit_man",  # 万 / ten thousand
    "unit_thousand",  # 千 / thousand
    "unit_million",  # 百万 / million
    "yen",
    *(f"yen_{d}" for d in range(1, 10)),
)
# Every id that amount_prompts and digits_prompts may return, in either language.
ALL_NUMBER_PROMPTS = DIGIT_PROMPTS + NUMBER_PROMPTS


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"no number prompts for language {lang!r}")


def amount_prompts(amount: int, lang: str) -> list[str]:
    """The prompt ids that say ``amount`` yen (0…9,999,999) in ``lang`` (``ja`` or ``en``)."""
    _check_lang(lang)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int")
    if not 0 <= amount <= MAX_AMOUNT:
        raise ValueError(f"amount {amount} is outside 0…{MAX_AMOUNT}")
    if amount == 0:
        return ["digit_0", "yen"]
    return _ja(amount) if lang == "ja" else _en(amount)


def digits_prompts(digits: str, lang: str) -> list[str]:
    """One prompt per digit, e.g. for "card ending 1 2 3 4" (the last four may be spoken)."""
    _check_lang(lang)
    if not isinstance(digits, str) or any(c not in "0123456789" for c in digits):
        raise ValueError("digits_prompts takes ASCII digits only")
    return [f"digit_{d}" for d in digits]


def _ja_group(n: int) -> list[str]:
    """1…9999 in a 万 group: 千・百・十 carry their digit (and its sound change) in one prompt."""
    out = [f"num_{d * unit}" for unit in (1000, 100, 10) if (d := n // unit % 10)]
    if n % 10:
        out.append(f"num_{n % 10}")
    return out


def _ja(amount: int) -> list[str]:
    man, rest = divmod(amount, 10_000)
    out = [*_ja_group(man), "unit_man"] if man else []
    out += _ja_group(rest)
    if rest % 10:
        out[-1] = f"yen_{rest % 10}"  # the last digit and 円 as one word: よえん, きゅうえん
    else:
        out.append("yen")
    return out


def _en_group(n: int) -> list[str]:
    """1…999: "three hundred" is one prompt; below twenty one word; then tens and ones."""
    hundreds, rest = divmod(n, 100)
    out = [f"num_{hundreds * 100}"] if hundreds else []
    if rest >= 20:
        out.append(f"num_{rest - rest % 10}")
        if rest % 10:
            out.append(f"num_{rest % 10}")
    elif rest:
        out.append(f"num_{rest}")
    return out


def _en(amount: int) -> list[str]:
    out: list[str] = []
    for scale, unit in ((1_000_000, "unit_million"), (1000, "unit_thousand")):
        group = amount // scale % 1000
        if group:
            out += [*_en_group(group), unit]
    out += _en_group(amount % 1000)
    out.append("yen")
    return out
