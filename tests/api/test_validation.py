"""The create-payment and list validators, without HTTP: every rule of product.md, and a property
test that no JSON value whatever makes them do anything but accept or raise a 422 problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from ivrpay.api.problems import Problem
from ivrpay.api.validation import (
    check_idempotency_key,
    parse_empty_body,
    parse_list_query,
    parse_new_payment,
    parse_rfc3339,
)
from ivrpay.config import Settings

S = Settings()


def ok(**body: Any):
    return parse_new_payment({"order_id": "A-1", "amount": 1000, **body}, S)


def field_errors(body: Any, s: Settings = S) -> dict[str, str]:
    with pytest.raises(Problem) as info:
        parse_new_payment(body, s)
    assert info.value.status == 422
    return {e.field: e.message for e in info.value.errors}


def test_defaults_for_a_charge() -> None:
    p = ok()
    assert (p.operation, p.job, p.method, p.pay_times, p.tax) == ("charge", "AUTH", 1, None, 0)
    assert (p.language, p.expires_in, p.metadata, p.operator) == ("ja", 1800, {}, None)


def test_every_field_accepted() -> None:
    p = ok(
        tax=80,
        job="CAPTURE",
        method=2,
        pay_times=3,
        operation="charge_and_register",
        member_id="m_1.a@b-c",
        operator={"id": "op-7", "callback": "PJSIP/1001"},
        language="en",
        expires_in=600,
        metadata={"k": ["v", 1, None, True]},
    )
    assert p.member_id == "m_1.a@b-c" and p.pay_times == 3 and p.language == "en"
    assert p.operator == {"id": "op-7", "callback": "PJSIP/1001", "listen_in": False}


def test_null_counts_as_not_given() -> None:
    p = ok(tax=None, job=None, operator=None, metadata=None, language=None)
    assert (p.tax, p.job, p.operator, p.metadata, p.language) == (0, "AUTH", None, {}, "ja")


@pytest.mark.parametrize(
    "order_id", ["", "x" * 25, "a b", "a_b", "ａ", "a\n", "注文1", 123, None, True]
)
def test_order_id_rules(order_id: Any) -> None:
    errs = field_errors({"order_id": order_id, "amount": 1})
    assert "order_id" in errs


def test_order_id_limits() -> None:
    assert ok(order_id="x" * 24).order_id == "x" * 24
    assert ok(order_id="Ab-09").order_id == "Ab-09"


@pytest.mark.parametrize(
    ("amount", "tax", "bad"),
    [
        (0, 0, "amount"),
        (-1, 0, "amount"),
        (10_000_000, 0, "amount"),
        (9_999_999, 1, "tax"),
        (1, -1, "tax"),
        (True, 0, "amount"),
        (1.0, 0, "amount"),
        ("100", 0, "amount"),
        (100, False, "tax"),
        (100, 1.5, "tax"),
    ],
)
def test_amount_and_tax(amount: Any, tax: Any, bad: str) -> None:
    assert bad in field_errors({"order_id": "A", "amount": amount, "tax": tax})


def test_amount_boundaries_accepted() -> None:
    assert ok(amount=1).amount == 1
    assert ok(amount=9_999_998, tax=1).tax == 1
    assert ok(amount=9_999_999).amount == 9_999_999


def test_amount_required_for_charges() -> None:
    assert field_errors({"order_id": "A"})["amount"] == "is required"
    errs = field_errors({"order_id": "A", "operation": "charge_and_register", "member_id": "m"})
    assert errs == {"amount": "is required"}


def test_job_method_pay_times() -> None:
    assert "job" in field_errors({"order_id": "A", "amount": 1, "job": "SALES"})
    assert "job" in field_errors({"order_id": "A", "amount": 1, "job": "auth"})
    for m in (3, 4, 0, True, "1", 1.0):
        assert "method" in field_errors({"order_id": "A", "amount": 1, "method": m})
    assert field_errors({"order_id": "A", "amount": 1, "method": 2}) == {
        "pay_times": "is required with method 2 (instalments)"
    }
    assert "pay_times" in field_errors({"order_id": "A", "amount": 1, "method": 1, "pay_times": 3})
    for n in (1, 100, True, 3.0):
        assert "pay_times" in field_errors(
            {"order_id": "A", "amount": 1, "method": 2, "pay_times": n}
        )
    assert ok(method=5).method == 5


def test_register_ignores_amount_tax_and_job() -> None:
    # A core system that always sends amount and job is not refused for a register.
    base = {"order_id": "R", "operation": "register", "member_id": "m"}
    for extra in (
        {"amount": 5},
        {"amount": 0, "tax": 0, "job": "AUTH"},
        {"amount": 12_000, "tax": 800, "job": "CAPTURE"},
        {"amount": -1, "tax": 99_999_999, "job": "SALES"},
    ):
        p = parse_new_payment({**base, **extra}, S)
        assert (p.amount, p.tax, p.job, p.method, p.pay_times) == (None,) * 5, extra
    # Only their JSON types are checked, as the document says.
    assert field_errors({**base, "amount": "5", "tax": 1.5, "job": 1}) == {
        "amount": "must be an integer",
        "tax": "must be an integer",
        "job": "must be a string",
    }
    # method and pay_times are the charge's, not ignored: a register refuses them.
    errs = field_errors({**base, "method": 1, "pay_times": 3})
    assert errs == {
        "method": "applies only to charge and charge_and_register",
        "pay_times": "applies only to charge and charge_and_register",
    }
    assert "member_id" in field_errors({"order_id": "R", "operation": "register"})


def test_member_id_rules() -> None:
    base = {"order_id": "R", "operation": "register"}
    for bad in ("", "x" * 61, "a b", "a/b", 7):
        assert "member_id" in field_errors({**base, "member_id": bad})
    assert parse_new_payment({**base, "member_id": "x" * 60}, S).member_id == "x" * 60
    assert "member_id" in field_errors({"order_id": "A", "amount": 1, "member_id": "m"})


def test_operator_rules() -> None:
    for op, bad in [
        ("PJSIP/1001", "operator"),
        ({"id": "a"}, "operator.callback"),
        ({"callback": "PJSIP/1001"}, "operator.id"),
        ({"id": "a", "callback": "DAHDI/1"}, "operator.callback"),
        ({"id": "a", "callback": "PJSIP/1001\n"}, "operator.callback"),
        ({"id": "a", "callback": "PJSIP/1001", "x": 1}, "operator.x"),
        ({"id": "a\x00", "callback": "PJSIP/1001"}, "operator.id"),
        ({"id": 5, "callback": "PJSIP/1001"}, "operator.id"),
    ]:
        assert bad in field_errors({"order_id": "A", "amount": 1, "operator": op}), op


def test_callback_pattern_from_settings() -> None:
    s = S.replace(callback_pattern=r"^Local/\d+@ops$")
    body = {"order_id": "A", "amount": 1, "operator": {"id": "a", "callback": "Local/12@ops"}}
    assert parse_new_payment(body, s).operator is not None
    assert "operator.callback" in field_errors(
        {**body, "operator": {"id": "a", "callback": "PJSIP/1001"}}, s
    )


def test_language_from_settings() -> None:
    assert "language" in field_errors({"order_id": "A", "amount": 1, "language": "fr"})
    en_only = S.replace(languages=("en",))
    assert parse_new_payment({"order_id": "A", "amount": 1}, en_only).language == "en"
    assert "language" in field_errors({"order_id": "A", "amount": 1, "language": "ja"}, en_only)


def test_expires_in_bounds() -> None:
    assert ok(expires_in=60).expires_in == 60
    assert ok(expires_in=86_400).expires_in == 86_400
    for bad in (59, 86_401, 0, -5, 1800.5, True, "1800"):
        assert "expires_in" in field_errors({"order_id": "A", "amount": 1, "expires_in": bad})


def test_metadata_rules() -> None:
    assert "metadata" in field_errors({"order_id": "A", "amount": 1, "metadata": [1]})
    assert "metadata" in field_errors({"order_id": "A", "amount": 1, "metadata": "x"})
    assert "metadata" in field_errors({"order_id": "A", "amount": 1, "metadata": {"a": "\x00"}})
    assert "metadata" in field_errors({"order_id": "A", "amount": 1, "metadata": {"\ud800": 1}})
    # 4096 bytes as compact JSON: {"k":"…"} is 8 bytes of framing.
    assert ok(metadata={"k": "x" * 4088}).metadata
    assert "metadata" in field_errors({"order_id": "A", "amount": 1, "metadata": {"k": "x" * 4089}})
    # Bytes, not characters: 3 bytes each in UTF-8.
    assert "metadata" in field_errors(
        {"order_id": "A", "amount": 1, "metadata": {"k": "あ" * 1400}}
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", "4111111111111111"),
        ("order_id", "x-4111-1111-1111-1111"),
        ("member_id", "m5555555555554444"),
        ("operator", {"id": "378282246310005", "callback": "PJSIP/1001"}),
        ("operator", {"id": "\ud800", "callback": "PJSIP/1001"}),
        ("metadata", {"note": "card 3530 1113 3330 0000 please"}),
        ("metadata", {"n": 36227206271667}),
        ("metadata", {"4111111111111111": 1}),
    ],
)
def test_nothing_may_carry_a_card_number(field: str, value: Any) -> None:
    b: dict[str, Any] = {"order_id": "A", "amount": 1, field: value}
    if field == "member_id":
        b["operation"] = "charge_and_register"
    errs = field_errors(b)
    assert any(k.startswith(field) for k in errs), errs


def test_long_numbers_that_are_not_cards_pass() -> None:
    # Order numbers, phone numbers and Luhn failures are not card numbers.
    p = ok(
        order_id="202411270001234",
        metadata={"tel": "09012345678", "ref": "4111111111111112", "n": 1234567890123},
    )
    assert p.metadata["ref"] == "4111111111111112"


def test_unknown_fields_are_named() -> None:
    errs = field_errors({"order_id": "A", "amount": 1, "card_number": "x", "Amount": 2})
    assert errs == {"card_number": "unknown field", "Amount": "unknown field"}


def test_every_error_at_once() -> None:
    errs = field_errors({"order_id": "", "amount": 0, "language": "xx", "expires_in": 1})
    assert set(errs) == {"order_id", "amount", "language", "expires_in"}


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_body_must_be_an_object(body: Any) -> None:
    assert field_errors(body) == {"body": "must be a JSON object"}


def test_empty_body_for_actions() -> None:
    parse_empty_body(None)
    parse_empty_body({})
    with pytest.raises(Problem) as info:
        parse_empty_body({"reason": "x"})
    assert info.value.errors[0].field == "reason"
    with pytest.raises(Problem):
        parse_empty_body([])


def test_rfc3339() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert parse_rfc3339("2025-01-02T03:04:05+09:00") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=tokyo)
    assert parse_rfc3339("2025-01-02T03:04:05Z") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_rfc3339("2025-01-02t03:04:05.123456789z").microsecond == 123456
    # An unencoded "+" in a query string arrives as a space.
    assert parse_rfc3339("2025-01-02T03:04:05 09:00") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=tokyo)
    for bad in (
        "2025-01-02",
        "2025-01-02T03:04:05",
        "٢025-01-02T03:04:05Z",
        "2025-13-02T03:04:05Z",
        "yesterday",
        "",
    ):
        assert parse_rfc3339(bad) is None


def _query(**params: str) -> MultiDict[str]:
    return MultiDict(params)


def test_list_query() -> None:
    q = parse_list_query(_query(status="pending", limit="200", order_id="A-1"))
    assert (q.status, q.limit, q.order_id) == ("pending", 200, "A-1")
    md = MultiDict([("status", "x"), ("limit", "٣"), ("foo", "1"), ("order_id", "a b")])
    with pytest.raises(Problem) as info:
        parse_list_query(md)
    assert {e.field for e in info.value.errors} == {"status", "limit", "foo", "order_id"}
    md = MultiDict([("status", "pending"), ("status", "failed")])
    with pytest.raises(Problem):
        parse_list_query(md)


def test_idempotency_key_shape() -> None:
    assert check_idempotency_key(None) is None
    assert check_idempotency_key("k-1") == "k-1"
    for bad in ("", "a b", "x" * 256, "é"):
        with pytest.raises(Problem):
            check_idempotency_key(bad)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_fields = st.sampled_from(
    ["order_id", "amount", "tax", "job", "method", "pay_times", "operation", "member_id",
     "operator", "language", "expires_in", "metadata", "other"]
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(_fields, _json, max_size=8) | _json)
def test_any_json_is_accepted_or_refused_cleanly(body: Any) -> None:
    try:
        p = parse_new_payment(body, S)
    except Problem as exc:
        assert exc.status == 422 and exc.errors
        return
    assert p.operation in ("charge", "register", "charge_and_register")
    if p.operation != "register":
        assert p.amount is not None and p.tax is not None
        assert 1 <= p.amount + p.tax <= 9_999_999


# -- the document and the validator are one declaration -----------------------------------------

# Values at and around every rule of every create field, of every JSON type: what a client could
# send. (No integral floats such as 1.0: JSON Schema counts them as integers, the API wants 1.)
CANDIDATES: dict[str, list[Any]] = {
    "order_id": ["A-1", "x" * 24, "x" * 25, "", "a b", "注文", "4111111111111111", 7, None],
    "amount": [1, 12_000, 9_999_999, 10_000_000, 0, -1, "100", 1.5, True, None],
    "tax": [0, 800, 9_999_998, 9_999_999, -1, "8", False, None],
    "job": ["AUTH", "CAPTURE", "CHECK", "SALES", "auth", 1, None],
    "method": [1, 2, 5, 3, 0, "1", True, None],
    "pay_times": [2, 3, 99, 1, 100, "3", None],
    "operation": ["charge", "register", "charge_and_register", "refund", 1, None],
    "member_id": ["m-1", "x" * 60, "x" * 61, "a b", "m5555555555554444", 3, None],
    "operator": [
        {"id": "op-1", "callback": "PJSIP/1001"},
        {"id": "op-1"},
        {"id": "op-1", "callback": "DAHDI/1"},
        {"id": "op-1", "callback": "PJSIP/1001", "x": 1},
        {"id": "x" * 65, "callback": "PJSIP/1001"},
        {"id": None, "callback": "PJSIP/1001"},
        "PJSIP/1001",
        None,
    ],
    "language": ["ja", "en", "fr", "", 1, None],
    "expires_in": [60, 1800, 86_400, 59, 86_401, "60", None],
    "metadata": [{}, {"k": ["v", 1]}, {"k": "x" * 4089}, {"n": "4111 1111 1111 1111"}, [], "x"],
    "surprise": [1],
}
# What JSON Schema cannot say, and the validator checks beyond the document.
DOMAIN_ONLY = (
    "must not contain a card number (card data never passes through the API)",
    "must be at most 4096 bytes as compact JSON",
    "amount + tax must not exceed 9999999",
)


def _create_schema(s: Settings = S) -> Any:
    from jsonschema_rs import Draft202012Validator

    from ivrpay.api.openapi import build_openapi

    components = build_openapi(s)["components"]
    return Draft202012Validator(
        {"$ref": "#/components/schemas/PaymentCreate", "components": components}
    )


def test_every_create_field_is_documented_and_every_documented_one_read() -> None:
    from dataclasses import fields

    from ivrpay.api.models import NewPayment
    from ivrpay.api.openapi import build_openapi

    schema = build_openapi(S)["components"]["schemas"]["PaymentCreate"]
    declared = {f.name for f in fields(NewPayment)}
    assert set(schema["properties"]) == declared == set(CANDIDATES) - {"surprise"}
    # Each documented field has a value the document refuses and the validator refuses naming
    # that field: no property is published without a check behind it.
    validator = _create_schema()
    for name in declared:
        refused = []
        for value in CANDIDATES[name]:
            b = {"order_id": "A-1", "amount": 100, name: value}
            if b[name] is None or validator.is_valid(b):
                continue
            with pytest.raises(Problem) as info:
                parse_new_payment(b, S)
            refused.append({e.field.split(".")[0] for e in info.value.errors})
        assert any(name in f for f in refused), name


@settings(max_examples=600, suppress_health_check=list(HealthCheck), deadline=None)
@given(
    st.fixed_dictionaries(
        {}, optional={name: st.sampled_from(values) for name, values in CANDIDATES.items()}
    )
)
def test_the_document_and_the_validator_agree(body: dict[str, Any]) -> None:
    documented = _VALIDATOR.is_valid(body)
    try:
        parse_new_payment(body, S)
    except Problem as exc:
        # Refused while the document accepts it: only for a rule JSON Schema cannot state.
        if documented:
            assert all(e.message in DOMAIN_ONLY for e in exc.errors), (body, exc.errors)
        return
    assert documented, f"accepted but the document refuses it: {body}"


_VALIDATOR = _create_schema()


def test_the_document_follows_the_settings() -> None:
    s = S.replace(languages=("en",), callback_pattern=r"^Local/\d+@ops$")
    validator = _create_schema(s)
    good = {"order_id": "A", "amount": 1, "language": "en"}
    good["operator"] = {"id": "a", "callback": "Local/12@ops"}
    assert validator.is_valid(good) and parse_new_payment(good, s)
    for bad in ({"language": "ja"}, {"operator": {"id": "a", "callback": "PJSIP/1001"}}):
        assert not validator.is_valid({**good, **bad})
        with pytest.raises(Problem):
            parse_new_payment({**good, **bad}, s)
