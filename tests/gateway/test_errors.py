"""The error table (gateway/errors.py) against gmo-pg.md and product.md's rules."""

from __future__ import annotations

import pytest

from ivrpay.gateway.errors import classify, is_card_company, rule_for


@pytest.mark.parametrize(
    ("info", "kind", "field"),
    [
        # listed in gmo-pg.md
        ("E01090008", "system", None),
        ("E01040010", "system", None),  # the raw code: only charge() knows it sent the EntryTran
        ("E01170003", "input", "card_number"),
        ("E01170011", "input", "card_number"),
        ("E01180003", "input", "expiry"),
        ("E01190008", "input", "security_code"),
        ("E01460008", "input", "security_code"),
        ("E41170002", "input", "card_number"),
        ("E41170099", "input", "card_number"),
        ("42G650000", "input", "card_number"),
        ("42G830000", "input", "expiry"),
        ("42G440000", "input", "security_code"),
        ("42G450000", "input", "security_code"),
        ("42G020000", "declined", None),
        ("42G040000", "declined", None),
        ("42G030000", "declined", None),
        ("42G050000", "declined", None),
        ("42G550000", "declined", None),
        ("42G120000", "declined", None),
        ("42G950000", "declined", None),
        ("42G990000", "declined", None),
        ("E61040001", "system", None),
        ("E82010001", "busy", None),
        ("E92000001", "busy", None),
        ("E92000002", "busy", None),
        ("E90010001", "unknown", None),
        ("E91020001", "unknown", None),
        ("E11010001", "unknown", None),
        # the unlisted-code rules
        ("42G770000", "declined", None),
        ("42C010000", "unknown", None),
        ("42C780000", "unknown", None),
        ("E90099999", "unknown", None),
        ("E91099996", "unknown", None),
        ("E21010001", "system", None),
        ("M01004010", "system", None),
        ("XYZ", "system", None),
    ],
)
def test_one_code(info: str, kind: str, field: str | None) -> None:
    verdict = classify([("E01", info)])
    assert (verdict.kind, verdict.field, verdict.code) == (kind, field, info)
    assert rule_for(info.lower()).kind == kind  # codes are read case-insensitively


def test_card_company_code_wins_over_parameter_errors() -> None:
    verdict = classify([("E01", "E01090008"), ("G02", "42G020000"), ("E01", "E01100008")])
    assert (verdict.kind, verdict.code) == ("declined", "42G020000")


def test_most_cautious_wins_among_deciding_codes() -> None:
    assert classify([("E01", "E01170003"), ("E01", "E01090008")]).kind == "system"
    assert classify([("E01", "E01090008"), ("E91", "E91020001")]).kind == "unknown"
    assert classify([("G44", "42G440000"), ("C01", "42C010000")]).kind == "unknown"
    assert classify([("G44", "42G440000"), ("G02", "42G020000")]).kind == "declined"


def test_first_input_field_is_kept_when_only_inputs() -> None:
    verdict = classify([("E01", "E01170003"), ("E01", "E01180003")])
    assert (verdict.kind, verdict.field) == ("input", "card_number")


def test_an_error_answer_without_errinfo_is_unknown() -> None:
    assert classify([]).kind == "unknown"
    assert classify([("E01", "")]).kind == "unknown"


def test_card_company_codes_are_recognised() -> None:
    assert is_card_company("42G020000") and is_card_company("42C010000")
    assert not is_card_company("E01090008") and not is_card_company("")


@pytest.mark.parametrize("info", ["E92000003", "E92099999", "E82010002", "E82000001"])
def test_unlisted_busy_class_codes_are_system(info: str) -> None:
    """product.md "Gateway client shape": only the listed E82010001, E92000001 and E92000002 are
    busy; every other unlisted code (not 42G/42C/E90/E91) is a system error, never retried."""
    verdict = classify([("E92", info)])
    assert (verdict.kind, verdict.code) == ("system", info)
