"""docs/asterisk.rst covers what issue 11 asks of it, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivrpay.api.takeback import TAKEBACK_CONTEXT

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "asterisk.rst"


@pytest.mark.parametrize(
    "topic",
    [
        r"sounds/<lang>/ivrpay/",
        r"CHANNEL\(language\)",
        r"blindxfer",
        r"BLINDTRANSFER",
        r"read=call,system",
        r"write=call",
        r"hagi://",
        r"_agi\._tcp\.",
        r"dies mid-call",
        r"agi set debug off",
        r"``dtmf`` \*\*logger channel",
        r"``dtmf``, ``agi`` or ``all``",
        r"StopMixMonitor\(\)",
        r"swapon --show",
        r"login refused",
        "\\[" + TAKEBACK_CONTEXT + "\\]",
        # listen-in (issue 14)
        r"ChanSpy\(<caller's channel>,qwE\)",
        r"transmit_silence = *\n? *yes",
        r"PJSIP_DTMF_MODE\(\)",
        r"never ``include`` it",
        r"\[ivrpay-spy\]",
    ],
)
def test_the_guide_covers(topic: str) -> None:
    assert re.search(topic, GUIDE.read_text(encoding="utf-8")), topic


def test_the_readme_links_the_guide() -> None:
    assert "docs/asterisk.rst" in (ROOT / "README.rst").read_text(encoding="utf-8")
