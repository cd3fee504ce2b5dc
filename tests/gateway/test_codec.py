"""The wire format: cp932 requests, key-aware answers, CheckString, dates, masked dumps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from ivrpay.gateway.codec import (
    ENDPOINTS,
    EncodeError,
    MalformedAnswer,
    byte_length,
    check_string,
    decode_answer,
    encode_request,
    masked,
    parse_gateway_time,
)

EXEC = ENDPOINTS["ExecTran"]
TRADE = ENDPOINTS["SearchTrade"]
MEMBER = ENDPOINTS["SearchMember"]


def test_request_is_cp932_then_percent_encoded() -> None:
    body = encode_request({"MemberName": "髙橋①", "OrderID": "A-1", "Tax": None, "Amount": 100})
    assert body.isascii()
    assert b"Tax" not in body
    assert "髙橋①".encode("cp932") == dict(parse_qsl(body.decode(), encoding="latin-1"))[
        "MemberName"
    ].encode("latin-1")
    assert dict(parse_qsl(body.decode(), encoding="cp932"))["MemberName"] == "髙橋①"


def test_unencodable_value_names_the_key_only() -> None:
    with pytest.raises(EncodeError) as caught:
        encode_request({"HolderName": "emoji \U0001f600 secret"})
    assert "HolderName" in str(caught.value) and "secret" not in str(caught.value)


def test_length_counts_bytes() -> None:
    assert byte_length("ABC") == 3 and byte_length("髙橋") == 4


def test_answer_values_may_hold_ampersand_equals_and_spaces() -> None:
    body = "MemberID=m1&MemberName=A&B=C Co. & Sons&DeleteFlag=0".encode("cp932")
    answer = decode_answer(body, MEMBER)
    assert answer.fields == {"MemberID": "m1", "MemberName": "A&B=C Co. & Sons", "DeleteFlag": "0"}


def test_client_field_keeps_an_url_with_query() -> None:
    body = (
        "ACS=0&OrderID=O-1&Forward=2a99661&Method=1&PayTimes=&Approve=1234567"
        "&TranID=1&TranDate=20240102030405&CheckString=x"
        "&ClientField1=https://x.example/?a=1&Foo=2&ClientField2=①"
    ).encode("cp932")
    answer = decode_answer(body, EXEC)
    assert answer.fields["ClientField1"] == "https://x.example/?a=1&Foo=2"
    assert answer.fields["ClientField2"] == "①"
    assert answer.fields["PayTimes"] == ""


def test_unknown_key_after_a_structured_field_is_kept_aside() -> None:
    body = b"OrderID=O-1&Status=CAPTURE&NewField=x&Amount=100"
    answer = decode_answer(body, TRADE)
    assert answer.fields == {"OrderID": "O-1", "Status": "CAPTURE", "Amount": "100"}
    assert answer.extra == {"NewField": "x"}


def test_several_errors_are_paired_by_position() -> None:
    answer = decode_answer(b"ErrCode=E01|E01|G02&ErrInfo=E01090008|E01100008|42G020000", EXEC)
    assert answer.is_error
    assert answer.errors() == (
        ("E01", "E01090008"),
        ("E01", "E01100008"),
        ("G02", "42G020000"),
    )


def test_uneven_error_lists_are_padded() -> None:
    answer = decode_answer(b"ErrCode=E01&ErrInfo=E01090008|E01100008", EXEC)
    assert answer.errors() == (("E01", "E01090008"), ("", "E01100008"))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "empty"),
        (b"  \r\n", "empty"),
        (b"\x85\x40AccessID=1&\x81 ", "cp932"),
        (b"<html><body>502 Bad Gateway</body></html>", "markup"),
        (b"hello world", "start with a key"),
        (b"Foo=1&Bar=2", "no ExecTran keys"),
        (b"OrderID=1&OrderID=2", "repeated"),
    ],
)
def test_malformed_answers_are_reported_without_the_body(body: bytes, why: str) -> None:
    with pytest.raises(MalformedAnswer) as caught:
        decode_answer(body, EXEC)
    assert why in str(caught.value)
    assert "502" not in str(caught.value) and "hello" not in str(caught.value)


def test_check_string_is_md5_of_the_documented_fields() -> None:
    # Independent formulation: md5 of the concatenation, from hashlib directly.
    import hashlib

    parts = ["O-1", "2a99661", "1", "", "1234567", "123", "20240102030405", "pass"]
    assert check_string(*parts) == hashlib.md5("".join(parts).encode()).hexdigest()
    assert check_string(*parts[:-1], "other") != check_string(*parts)


def test_gateway_time_is_jst() -> None:
    when = parse_gateway_time("20240102030405")
    assert when is not None and when.utcoffset() == timedelta(hours=9)
    assert when == datetime(2024, 1, 1, 18, 4, 5, tzinfo=UTC)
    assert parse_gateway_time("2024010203040") is None
    assert parse_gateway_time("20241302030405") is None
    assert parse_gateway_time(None) is None


def test_masked_dump_hides_card_data_and_passwords() -> None:
    dump = masked(
        {
            "CardNo": "4111111111111111",
            "Expire": "3012",
            "SecurityCode": "123",
            "ShopPass": "p",
            "AccessPass": "ap",
            "OrderID": "O-1",
            "Tax": None,
        }
    )
    assert dump == {
        "CardNo": "*1111",
        "Expire": "***",
        "SecurityCode": "***",
        "ShopPass": "***",
        "AccessPass": "***",
        "OrderID": "O-1",
    }
    assert masked({"CardNo": "************1111|************4444"})["CardNo"] == "*1111|*4444"
