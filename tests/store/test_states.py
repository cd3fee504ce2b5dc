"""The state machine table and the device helper (pure)."""

from __future__ import annotations

import pytest

from ivrpay.store.states import (
    CLAIMABLE_STATUSES,
    FINAL_STATUSES,
    STATUSES,
    TRANSITIONS,
    can_transition,
    device_of,
    sources_of,
)


def test_final_statuses_lead_nowhere() -> None:
    for status in FINAL_STATUSES:
        assert TRANSITIONS[status] == frozenset()
    assert set(TRANSITIONS) == set(STATUSES)


def test_product_status_line() -> None:
    # product.md "Status", written out pair by pair.
    expected = {
        ("pending", "in_call"),
        ("in_call", "processing"),
        ("processing", "succeeded"),
        ("processing", "failed"),
        ("processing", "unknown"),
        ("processing", "in_call"),
        ("in_call", "abandoned"),
        ("in_call", "canceled"),
        ("in_call", "failed"),  # attempts or executions used up inside the call
        ("unknown", "succeeded"),
        ("unknown", "failed"),
    }
    for src in ("pending", "failed", "abandoned"):
        expected |= {(src, "canceled"), (src, "expired"), (src, "in_call")}
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert allowed == expected
    assert all(can_transition(a, b) for a, b in expected)
    assert not can_transition("succeeded", "refunded")
    assert not can_transition("processing", "abandoned")
    assert not can_transition("in_call", "expired")


def test_claimable_are_the_sources_of_in_call_besides_processing() -> None:
    assert set(sources_of("in_call")) - {"processing"} == CLAIMABLE_STATUSES


@pytest.mark.parametrize(
    ("channel", "device"),
    [
        ("PJSIP/1001-0000002a", "PJSIP/1001"),
        ("PJSIP/1001-0000002a;2", "PJSIP/1001"),
        ("SIP/op-desk.3-00000abc", "SIP/op-desk.3"),
        ("Local/1001@from-internal-0000000b;1", "Local/1001@from-internal"),
        ("PJSIP/1001", "PJSIP/1001"),
        ("IAX2/trunk-1-deadbeef", "IAX2/trunk-1"),
        ("  PJSIP/1001-0000002a ", "PJSIP/1001"),
        ("PJSIP/a-b", "PJSIP/a-b"),
        ("", ""),
    ],
)
def test_device_of(channel: str, device: str) -> None:
    assert device_of(channel) == device
