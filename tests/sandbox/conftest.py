"""Every sandbox test runs with its logs captured and checked for card numbers."""

from __future__ import annotations

import pytest

from tests.support.gateway import LogCapture


@pytest.fixture(autouse=True)
def _no_card_numbers_in_logs(card_safe_logs: LogCapture) -> LogCapture:
    return card_safe_logs
