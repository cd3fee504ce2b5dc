"""The last-line masker: no run of 12-19 digits survives in any logged value."""

from __future__ import annotations

import io
import json
import logging

import structlog

from ivrpay.logging import MASK, configure, mask_text


def test_mask_text_hides_card_length_runs_only() -> None:
    assert mask_text("card 4111111111111111 ok") == f"card {MASK} ok"
    assert mask_text("x378282246310005y") == f"x{MASK}y"
    assert mask_text("12345678901") == "12345678901"  # 11 digits: not a card
    assert mask_text("12345678901234567890") == "12345678901234567890"  # 20: joined digits
    assert mask_text("a1111222233334444|5555555555554444") == f"a{MASK}|{MASK}"


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
