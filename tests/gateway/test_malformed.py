"""Answers the sandbox never gives, from a scripted gateway over real HTTP: malformed bodies, 3-D
Secure, forged CheckStrings, several errors, cp932 values. Nothing escapes as an exception."""

from __future__ import annotations

import hashlib

import pytest

from ivrpay.gateway import GatewayClient
from tests.gateway.conftest import ScriptedGateway
from tests.support.gateway import (
    SHOP_ID,
    SHOP_PASS,
    SITE_ID,
    SITE_PASS,
    future_expiry,
    make_card,
)

VISA = "4111111111111111"
EXEC_FIELDS = {
    "ACS": "0",
    "OrderID": "M-01",
    "Forward": "2a99661",
    "Method": "1",
    "PayTimes": "",
    "Approve": "1234567",
    "TranID": "1" * 28,
    "TranDate": "20240102030405",
}


def _exec_answer(shop_pass: str = SHOP_PASS, **changes: str) -> str:
    f = {**EXEC_FIELDS, **{k: v for k, v in changes.items() if k != "CheckString"}}
    check = hashlib.md5(
        "".join(
            f[k]
            for k in ("OrderID", "Forward", "Method", "PayTimes", "Approve", "TranID", "TranDate")
        ).encode()
        + shop_pass.encode()
    ).hexdigest()
    f["CheckString"] = changes.get("CheckString", check)
    return "&".join(f"{k}={v}" for k, v in f.items())


def _client(gw: ScriptedGateway) -> GatewayClient:
    return GatewayClient(
        gw.url, SHOP_ID, SHOP_PASS, SITE_ID, SITE_PASS, timeout_s=1.0, retry_backoff_s=(0.0,)
    )


async def _exec(gw: ScriptedGateway) -> object:
    async with _client(gw) as client:
        return await client.exec_tran("M-01", "a" * 32, "b" * 32, make_card(VISA))


async def test_a_good_scripted_answer_is_a_success(scripted_gateway: ScriptedGateway) -> None:
    scripted_gateway.script("ExecTran", _exec_answer())
    out = await _exec(scripted_gateway)
    assert out.ok and out.approve == "1234567"  # type: ignore[attr-defined]
    sent = scripted_gateway.requests[0][1]
    keyed = future_expiry()  # MMYY as keyed; the gateway wants YYMM
    assert (sent["CardNo"], sent["Expire"], sent["SecurityCode"]) == (
        VISA,
        keyed[2:] + keyed[:2],
        "123",
    )
    assert sent["AccessID"] == "a" * 32 and sent["Method"] == "1" and "PayTimes" not in sent


@pytest.mark.parametrize(
    ("body", "status", "content_type"),
    [
        (b"", 200, "text/plain"),
        (b"<html><body><h1>503 Service Unavailable</h1></body></html>", 200, "text/html"),
        (b"<html><body>Internal Server Error</body></html>", 500, "text/html"),
        (b"\x85\x40ACS=0&\x81 ", 200, "text/plain"),  # not cp932
        (_exec_answer().rsplit("&CheckString", 1)[0].encode(), 200, "text/plain"),  # key missing
        (b"AccessID=abc", 200, "text/plain"),  # another endpoint's keys
        (b"ErrCode=E01", 200, "text/plain"),  # an error without ErrInfo
        (b"moved", 302, "text/plain"),
        (b"A" * 300_000, 200, "text/plain"),  # far too large
    ],
)
async def test_unreadable_exec_answers_are_unknown(
    scripted_gateway: ScriptedGateway, body: bytes, status: int, content_type: str
) -> None:
    scripted_gateway.script("ExecTran", body, status, content_type)
    out = await _exec(scripted_gateway)
    assert out.kind == "unknown" and out.sent  # type: ignore[attr-defined]
    assert out.tran_id is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"CheckString": "0" * 32}, "CheckString mismatch"),
        ({"OrderID": "OTHER-01"}, "another OrderID"),
        ({"TranDate": "20241399999999"}, "TranDate unreadable"),
    ],
)
async def test_unverifiable_exec_success_is_unknown(
    scripted_gateway: ScriptedGateway, changes: dict[str, str], why: str
) -> None:
    scripted_gateway.script("ExecTran", _exec_answer(**changes))
    out = await _exec(scripted_gateway)
    assert out.kind == "unknown" and why in out.message  # type: ignore[attr-defined]


async def test_three_d_secure_is_a_system_error(scripted_gateway: ScriptedGateway) -> None:
    scripted_gateway.script(
        "ExecTran", "ACS=1&ACSUrl=https://acs.example/?a=1&b=2&PaReq=xyz&MD=abc"
    )
    out = await _exec(scripted_gateway)
    assert out.kind == "system" and "3-D Secure" in out.message  # type: ignore[attr-defined]


async def test_several_errors_card_company_wins(scripted_gateway: ScriptedGateway) -> None:
    scripted_gateway.script("ExecTran", "ErrCode=E01|G02&ErrInfo=E01090008|42G020000")
    out = await _exec(scripted_gateway)
    assert (out.kind, out.err_code) == ("declined", "42G020000")  # type: ignore[attr-defined]
    assert out.err_info == (("E01", "E01090008"), ("G02", "42G020000"))  # type: ignore[attr-defined]


async def test_entry_answer_missing_a_key_is_unknown(scripted_gateway: ScriptedGateway) -> None:
    scripted_gateway.script("EntryTran", "AccessID=" + "a" * 32)
    async with _client(scripted_gateway) as client:
        out = await client.entry_tran("M-02", "AUTH", 100)
    assert out.kind == "unknown" and "AccessPass" in out.message


async def test_lookup_answers_that_cannot_be_read_are_system(
    scripted_gateway: ScriptedGateway,
) -> None:
    scripted_gateway.script("SearchTrade", b"<html>oops</html>", 200, "text/html")
    scripted_gateway.script("SearchTrade", "OrderID=ELSE-01&Status=CAPTURE")
    scripted_gateway.script("SearchCard", "CardSeq=x|1&CardNo=*1111|*2222")
    async with _client(scripted_gateway) as client:
        html = await client.search_trade("M-03")
        other = await client.search_trade("M-03")
        cards = await client.search_card("m")
    assert html.kind == "system" and "markup" in html.message
    assert other.kind == "system" and "another OrderID" in other.message
    assert cards.kind == "system" and "CardSeq" in cards.message


async def test_search_trade_answer_with_cp932_and_unknown_keys(
    scripted_gateway: ScriptedGateway,
) -> None:
    scripted_gateway.script(
        "SearchTrade",
        "OrderID=M-04&Status=CAPTURE&ProcessDate=20240102030405&JobCd=CAPTURE"
        "&AccessID=a&AccessPass=b&Amount=1000&Tax=80&CardNo=************1111&Expire=3012"
        "&TranID=123&Approve=7654321&ClientField1=髙橋①&Future=new&ClientField2=a&b",
    )
    async with _client(scripted_gateway) as client:
        out = await client.search_trade("M-04")
    assert out.ok and out.status == "CAPTURE" and out.amount == 1000 and out.tax == 80
    assert out.card_last4 == "1111" and out.approve == "7654321"
    assert out.process_date is not None and out.process_date.hour == 3


async def test_member_name_in_cp932(scripted_gateway: ScriptedGateway) -> None:
    scripted_gateway.script("SearchMember", "MemberID=m1&MemberName=髙橋 & ①&DeleteFlag=0")
    async with _client(scripted_gateway) as client:
        out = await client.search_member("m1")
    assert out.ok and out.member_name == "髙橋 & ①"
    assert scripted_gateway.requests[0][1]["SiteID"] == SITE_ID


async def test_concurrent_site_call_is_retried_once(scripted_gateway: ScriptedGateway) -> None:
    for _ in range(3):
        scripted_gateway.script("SaveMember", "ErrCode=E82&ErrInfo=E82010001")
    async with GatewayClient(
        scripted_gateway.url, SHOP_ID, SHOP_PASS, SITE_ID, SITE_PASS, retry_backoff_s=(0, 0, 0)
    ) as client:
        out = await client.save_member("m1")
    assert (out.kind, out.err_code, out.attempts) == ("system", "E82010001", 2)


async def test_errors_never_carry_the_request(scripted_gateway: ScriptedGateway) -> None:
    scripted_gateway.script("ExecTran", b"<html>" + VISA.encode() + b"</html>", 500, "text/html")
    out = await _exec(scripted_gateway)
    assert VISA not in repr(out) and VISA not in out.message  # type: ignore[attr-defined]


async def test_digits_other_than_ascii_in_answers_never_raise(
    scripted_gateway: ScriptedGateway,
) -> None:
    """``①`` passes ``str.isdigit`` but not ``int``: an odd answer is read, never an exception."""
    scripted_gateway.script(
        "SearchTrade", "OrderID=M-05&Status=UNPROCESSED&Amount=1①&Tax=②&AccessID=a&AccessPass=b"
    )
    scripted_gateway.script("SaveCard", "CardSeq=①&CardNo=*1111&Forward=2a99661")
    scripted_gateway.script("SearchCard", "CardSeq=0|①&CardNo=*1111|*2222")
    async with _client(scripted_gateway) as client:
        trade = await client.search_trade("M-05")
        saved = await client.save_card("m", make_card(VISA, code=None))
        listed = await client.search_card("m")
    assert trade.ok and (trade.amount, trade.tax) == (None, None)
    assert saved.kind == "unknown" and "CardSeq" in saved.message  # a store that may have happened
    assert listed.kind == "system" and "CardSeq" in listed.message


async def test_save_card_unknown_is_not_resent_when_search_card_cannot_tell(
    scripted_gateway: ScriptedGateway,
) -> None:
    """product.md: a SaveCard timeout is reconciled by SearchCard against the list read before.
    When that SearchCard fails, nobody knows whether the card was stored: sending SaveCard again
    could store it twice, so the outcome stays unknown."""
    scripted_gateway.script("SearchMember", "MemberID=m6&MemberName=&DeleteFlag=0")
    scripted_gateway.script("SearchCard", "ErrCode=E01&ErrInfo=E01240002")  # the list before
    scripted_gateway.script("SaveCard", b"<html>502</html>", 502, "text/html")  # may be stored
    scripted_gateway.script("SearchCard", b"<html>503</html>", 503, "text/html")  # cannot look
    scripted_gateway.script("SaveCard", "CardSeq=1&CardNo=*1111&Forward=2a99661")  # must not go
    async with _client(scripted_gateway) as client:
        out = await client.register("m6", make_card(VISA, code=None))
    assert out.kind == "unknown" and out.card_seq is None
    assert [name for name, _ in scripted_gateway.requests].count("SaveCard") == 1
