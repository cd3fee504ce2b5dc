"""The last-line masker: no run of 12-19 digits survives in any logged value."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import pytest
import structlog

from ivrpay.logging import MASK, configure, mask_text


def test_mask_text_hides_card_length_runs_only() -> None:
    assert mask_text("card 4111111111111111 ok") == f"card {MASK} ok"
    assert mask_text("x378282246310005y") == f"x{MASK}y"
    assert mask_text("12345678901") == "12345678901"  # 11 digits: not a card
    assert mask_text("12345678901234567890") == "12345678901234567890"  # 20: joined digits
    assert mask_text("a1111222233334444|5555555555554444") == f"a{MASK}|{MASK}"


@pytest.fixture(autouse=True)
def _restore_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() installs the process's exception hooks: put Python's back after each test."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)


def _capture(fmt: str) -> io.StringIO:
    out = io.StringIO()
    configure(level="debug", fmt=fmt, stream=out)
    return out


def test_structlog_values_and_events_are_masked_except_allowed_ids() -> None:
    out = _capture("json")
    log = structlog.get_logger("t")
    log.info(
        "got 4111111111111111",
        nested={"k": ["5555555555554444", 3530111333300000]},
        uniqueid="1795788781123456",
        tran_id="2511271234567890123456789012",
    )
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    text = out.getvalue()
    assert "4111111111111111" not in text and "5555555555554444" not in text
    assert "3530111333300000" not in text
    assert line["uniqueid"] == "1795788781123456"
    assert line["tran_id"] == "2511271234567890123456789012"


def test_stdlib_loggers_and_tracebacks_are_masked() -> None:
    out = _capture("console")
    logging.getLogger("aiohttp.server").error("bad %s", "4111111111111111")
    try:
        raise ValueError("oops 4111111111111111")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    text = out.getvalue()
    assert "4111111111111111" not in text
    assert "ValueError" in text and MASK in text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_card_numbers_in_floats_and_keys_are_masked_in_both_formats(fmt: str) -> None:
    """product.md: every run of 12–19 digits in every logged value — a float renders as
    ``4111111111111111.0`` and a mapping's keys are rendered as well as its values."""
    out = _capture(fmt)
    structlog.get_logger("t").info(
        "values",
        amount=4111111111111111.0,
        by_card={"5555555555554444": 1, 3530111333300000: "x"},
        nested=[{"378282246310005": None}],
        **{"36227206271667": "top-level key"},
        uniqueid="1795788781123456",
        threadid=140537309042368,
    )
    logging.getLogger("asyncpg").warning("float %s", 4000000000000002.0)
    text = out.getvalue()
    for card in (
        "4111111111111111",
        "5555555555554444",
        "3530111333300000",
        "378282246310005",
        "36227206271667",
        "4000000000000002",
    ):
        assert card not in text, card
    assert text.count(MASK) >= 5  # two masked keys of one mapping become one
    # The allow-listed identifiers are left as they are, in both formats.
    assert "1795788781123456" in text and "140537309042368" in text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_an_uncaught_exception_goes_through_the_masker(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash of the process (or of a thread) prints its traceback with Python's own hook,
    around the logging chain: once configured, it is logged — masked, without locals."""
    out = _capture(fmt)

    def crash(card: str) -> None:
        raise RuntimeError(f"fatal {card}")

    try:
        crash("4111111111111111")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    thread = threading.Thread(target=crash, args=("5555555555554444",))
    thread.start()
    thread.join()
    text = out.getvalue() + capsys.readouterr().err
    assert "4111111111111111" not in text and "5555555555554444" not in text
    assert text.count("RuntimeError: fatal [card?]") == 2


def test_a_record_that_cannot_be_formatted_is_reported_without_its_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """logging's own error report prints the record's message and arguments raw on stderr; a
    library's bad format string must not put a card number there."""
    out = _capture("json")
    logging.getLogger("aiohttp.server").info("x %s %s", "4111111111111111")
    logging.getLogger("asyncpg").info("still logging %s", "fine")
    text = out.getvalue() + capsys.readouterr().err
    assert "4111111111111111" not in text
    assert "aiohttp.server" in text and "TypeError" in text  # the failure is still visible
    assert json.loads(out.getvalue().splitlines()[-1])["event"] == "still logging fine"
