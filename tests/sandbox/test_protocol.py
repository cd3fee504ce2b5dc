"""The sandbox gateway over raw HTTP (no ivrpay client): every protocol endpoint, its formats,
cp932, error codes, test cards, member and card storage."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest

from ivrpay.sandbox import Sandbox
from tests.support.gateway import GATEWAY_TIMEOUT_CARD, LOST_ANSWER_CARD, future_expiry

SHOP = {"ShopID": "shop1", "ShopPass": "pw1"}
SITE = {"SiteID": "site1", "SitePass": "spw1"}
VISA = "4111111111111111"


def yymm() -> str:
    mmyy = future_expiry()
    return mmyy[2:] + mmyy[:2]


def _exec_of(e: dict[str, str], order_id: str) -> dict[str, object]:
    """The ExecTran fields every payment (Method 1) of the order ``e`` opened starts with."""
    return dict(AccessID=e["AccessID"], AccessPass=e["AccessPass"], OrderID=order_id, Method=1)


def card_exec(e: dict[str, str], order_id: str, card: str = VISA) -> dict[str, object]:
    """The ExecTran fields of a payment with a keyed card."""
    return {**_exec_of(e, order_id), "CardNo": card, "Expire": yymm()}


def member_exec(e: dict[str, str], order_id: str, member_id: str) -> dict[str, object]:
    """The ExecTran fields of a payment with a card stored for ``member_id``; the caller adds
    CardSeq (and SecurityCode)."""
    return {**_exec_of(e, order_id), **SITE, "MemberID": member_id, "SeqMode": 0}


class Raw:
    """POSTs form bodies (cp932) and splits answers naively: these tests choose their values."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def post_raw(self, name: str, body: bytes) -> tuple[int, bytes, str]:
        async with self.session.post(
            f"{self.url}/payment/{name}.idPass",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as resp:
            return resp.status, await resp.read(), resp.headers.get("Content-Type", "")

    async def post(self, name: str, **params: object) -> dict[str, str]:
        body = urlencode({k: str(v) for k, v in params.items()}, encoding="cp932").encode()
        status, raw, content_type = await self.post_raw(name, body)
        assert status == 200 and "Windows-31J" in content_type
        return dict(p.split("=", 1) for p in raw.decode("cp932").split("&"))

    async def entry(self, order_id: str, amount: int = 1000, job: str = "AUTH") -> dict[str, str]:
        ans = await self.post("EntryTran", **SHOP, OrderID=order_id, JobCd=job, Amount=amount)
        assert "ErrCode" not in ans, ans
        return ans

    async def charge(self, order_id: str, card: str = VISA, **extra: object) -> dict[str, str]:
        params = card_exec(await self.entry(order_id), order_id, card)
        params.update(extra)
        return await self.post("ExecTran", **params)


@pytest.fixture
async def raw(sandbox: Sandbox) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield Raw(session, sandbox.url)


def errinfo(ans: dict[str, str]) -> list[str]:
    return ans["ErrInfo"].split("|")


# -- EntryTran ------------------------------------------------------------------------------------
async def test_entry_tran(raw: Raw) -> None:
    ans = await raw.entry("E-01")
    assert set(ans) == {"AccessID", "AccessPass"}
    assert re.fullmatch(r"[0-9a-f]{32}", ans["AccessID"])
    assert re.fullmatch(r"[0-9a-f]{32}", ans["AccessPass"])


async def test_entry_reports_every_parameter_error_at_once(raw: Raw) -> None:
    ans = await raw.post("EntryTran")
    assert ans["ErrCode"] == "E01|E01|E01|E01|E01"
    assert errinfo(ans) == ["E01010001", "E01020001", "E01040001", "E01050001", "E01060001"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"OrderID": "A" * 28}, "E01040003"),
        ({"OrderID": "A_1"}, "E01040013"),
        ({"OrderID": "髙"}, "E01040013"),
        ({"JobCd": "SALES"}, "E01050002"),
        ({"Amount": "12a"}, "E01060006"),
        ({"Amount": "12345678"}, "E01060005"),
        ({"Tax": "x"}, "E01070006"),
        ({"Amount": "0"}, "E01490005"),
        ({"Amount": "9999999", "Tax": "1"}, "E01490005"),
        ({"ShopID": "s" * 14}, "E01010008"),
    ],
)
async def test_entry_parameter_errors(raw: Raw, params: dict[str, str], code: str) -> None:
    base = {**SHOP, "OrderID": "E-02", "JobCd": "AUTH", "Amount": "100", **params}
    assert errinfo(await raw.post("EntryTran", **base)) == [code]


async def test_entry_check_needs_no_amount_and_order_ids_are_single_use(raw: Raw) -> None:
    assert "AccessID" in await raw.post("EntryTran", **SHOP, OrderID="E-03", JobCd="CHECK")
    again = await raw.post("EntryTran", **SHOP, OrderID="E-03", JobCd="CHECK")
    assert (again["ErrCode"], again["ErrInfo"]) == ("E01", "E01040010")
    # OrderIDs are per shop.
    other = await raw.post(
        "EntryTran", ShopID="shop2", ShopPass="pw", OrderID="E-03", JobCd="CHECK"
    )
    assert "AccessID" in other


# -- ExecTran -------------------------------------------------------------------------------------
async def test_exec_tran_answer_and_check_string(raw: Raw, sandbox: Sandbox) -> None:
    ans = await raw.charge("X-01", SecurityCode="123")
    assert list(ans) == [
        "ACS",
        "OrderID",
        "Forward",
        "Method",
        "PayTimes",
        "Approve",
        "TranID",
        "TranDate",
        "CheckString",
    ]
    assert (ans["ACS"], ans["OrderID"], ans["Method"], ans["PayTimes"]) == ("0", "X-01", "1", "")
    assert re.fullmatch(r"\d{7}", ans["Approve"]) and re.fullmatch(r"\d{28}", ans["TranID"])
    assert re.fullmatch(r"20\d{12}", ans["TranDate"])
    joined = "".join(
        ans[k] for k in ("OrderID", "Forward", "Method", "PayTimes", "Approve", "TranID")
    )
    expected = hashlib.md5((joined + ans["TranDate"] + SHOP["ShopPass"]).encode()).hexdigest()
    assert ans["CheckString"] == expected
    assert sandbox.state.order("X-01")["status"] == "AUTH"  # type: ignore[index]


async def test_exec_with_wrong_access_pass(raw: Raw) -> None:
    e = await raw.entry("X-02")
    ans = await raw.post(
        "ExecTran", AccessID=e["AccessID"], AccessPass="0" * 32, OrderID="X-02", Method=1
    )
    assert errinfo(ans) == ["E01110002"]
    assert errinfo(await raw.post("ExecTran")) == ["E01090001", "E01100001"]


@pytest.mark.parametrize(
    ("card", "expire", "code", "expected"),
    [
        ("", None, None, ["E01170001"]),
        ("4111x", None, None, ["E01170006"]),
        ("411111111", None, None, ["E01170011"]),
        ("41111111111111111", None, None, ["E01170011"]),
        (VISA, "", None, ["E01180001"]),
        (VISA, "301", None, ["E01180003"]),
        (VISA, "30a1", None, ["E01180006"]),
        (VISA, "3013", None, ["E01180008"]),
        (VISA, None, "12", ["E01460008"]),
        (VISA, None, "1234", ["E01460008"]),
        ("378282246310005", None, "123", ["E01460008"]),
        ("4111111111111112", None, None, ["E41170099"]),
        ("9999999999999995", None, None, ["E41170002"]),
        (VISA, "2001", None, ["42G830000"]),
        ("4000000000000002", None, None, ["42G020000"]),
        ("4000000000009995", None, None, ["42G030000"]),
        ("4000000000000069", None, None, ["42G830000"]),
        ("4000000000000127", None, None, ["42G440000"]),
        (GATEWAY_TIMEOUT_CARD, None, None, ["E91020001"]),
        ("", "", "1", ["E01170001", "E01180001", "E01460008"]),
    ],
)
async def test_exec_card_errors(
    raw: Raw,
    sandbox: Sandbox,
    card: str,
    expire: str | None,
    code: str | None,
    expected: list[str],
) -> None:
    extra: dict[str, object] = {"Expire": yymm() if expire is None else expire}
    if code is not None:
        extra["SecurityCode"] = code
    ans = await raw.charge("X-03", card, **extra)
    assert errinfo(ans) == expected
    card_company = [c[2:5] for c in expected if c[:2].isdigit()]
    if card_company:
        assert ans["ErrCode"] == card_company[0]  # e.g. G02 for 42G020000
    order = sandbox.state.order("X-03")
    assert order is not None and (order["status"], order["successes"]) == ("UNPROCESSED", 0)


@pytest.mark.parametrize(
    "card", ["5555555555554444", "3530111333300000", "378282246310005", "36227206271667"]
)
async def test_other_brands_are_approved(raw: Raw, card: str) -> None:
    code = "1234" if len(card) == 15 else "123"
    assert "TranID" in await raw.charge("X-04", card, SecurityCode=code)


async def test_exec_twice_is_already_settled_and_counted(raw: Raw, sandbox: Sandbox) -> None:
    e = await raw.entry("X-05")
    params = card_exec(e, "X-05")
    assert "TranID" in await raw.post("ExecTran", **params)
    assert errinfo(await raw.post("ExecTran", **params)) == ["E11010001"]
    order = sandbox.state.order("X-05")
    assert order is not None and (order["executions"], order["successes"]) == (2, 1)


async def test_exec_method_rules(raw: Raw) -> None:
    assert errinfo(await raw.charge("X-06", Method=2)) == ["E01270001"]
    assert errinfo(await raw.charge("X-07", Method=9)) == ["E01260002"]
    ans = await raw.charge("X-08", Method=2, PayTimes=6)
    assert (ans["Method"], ans["PayTimes"]) == ("2", "6")
    assert errinfo(await raw.charge("X-09", ClientField1="髙" * 51)) == ["E01320012"]


async def test_exec_order_id_must_match(raw: Raw) -> None:
    e = await raw.entry("X-10")
    ans = await raw.post("ExecTran", **card_exec(e, "X-99"))
    assert errinfo(ans) == ["E01110002"]


async def test_lost_answer_card_is_charged_but_not_answered(raw: Raw, sandbox: Sandbox) -> None:
    e = await raw.entry("X-11")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as short:
        with pytest.raises(TimeoutError):
            await Raw(short, sandbox.url).post("ExecTran", **card_exec(e, "X-11", LOST_ANSWER_CARD))
    order = sandbox.state.order("X-11")
    assert order is not None and (order["status"], order["successes"]) == ("AUTH", 1)


# -- AlterTran and SearchTrade --------------------------------------------------------------------
async def _alter(raw: Raw, e: dict[str, str], job: str, **extra: object) -> dict[str, str]:
    return await raw.post(
        "AlterTran",
        **SHOP,
        AccessID=e["AccessID"],
        AccessPass=e["AccessPass"],
        JobCd=job,
        **extra,
    )


async def test_alter_tran_transitions(raw: Raw) -> None:
    e = await raw.entry("A-01", 5000)
    assert errinfo(await _alter(raw, e, "VOID")) == ["E01050004"]  # not executed yet
    await raw.post("ExecTran", **card_exec(e, "A-01"))
    assert errinfo(await _alter(raw, e, "SALES")) == ["E01060001"]
    assert errinfo(await _alter(raw, e, "SALES", Amount=4000)) == ["E01060010"]
    assert errinfo(await _alter(raw, e, "RETURN")) == ["E01050004"]  # an AUTH is voided
    assert errinfo(await _alter(raw, e, "CANCEL")) == ["E01050002"]
    sold = await _alter(raw, e, "SALES", Amount=5000)
    assert list(sold) == ["AccessID", "AccessPass", "Forward", "Approve", "TranID", "TranDate"]
    assert (await raw.post("SearchTrade", **SHOP, OrderID="A-01"))["Status"] == "SALES"
    assert "TranID" in await _alter(raw, e, "RETURNX")
    assert (await raw.post("SearchTrade", **SHOP, OrderID="A-01"))["Status"] == "RETURNX"
    assert errinfo(await _alter(raw, e, "VOID")) == ["E01050004"]
    other_shop = await raw.post(
        "AlterTran",
        ShopID="shop9",
        ShopPass="pw",
        AccessID=e["AccessID"],
        AccessPass=e["AccessPass"],
        JobCd="VOID",
    )
    assert errinfo(other_shop) == ["E01110002"]


async def test_search_trade(raw: Raw) -> None:
    await raw.charge("S-01", "5555555555554444", ClientField1="memo")
    ans = await raw.post("SearchTrade", **SHOP, OrderID="S-01")
    assert (ans["OrderID"], ans["Status"], ans["JobCd"], ans["Amount"]) == (
        "S-01",
        "AUTH",
        "AUTH",
        "1000",
    )
    assert ans["CardNo"] == "************4444" and ans["TranID"] and ans["Approve"]
    assert re.fullmatch(r"\d{14}", ans["ProcessDate"])
    fresh = await raw.entry("S-02")
    unprocessed = await raw.post("SearchTrade", **SHOP, OrderID="S-02")
    assert unprocessed["Status"] == "UNPROCESSED"
    assert unprocessed["AccessID"] == fresh["AccessID"] and unprocessed["CardNo"] == ""
    assert errinfo(await raw.post("SearchTrade", **SHOP, OrderID="S-03")) == ["E01110002"]
    assert errinfo(await raw.post("SearchTrade", **SHOP)) == ["E01040001"]


async def test_answers_keep_ampersands_in_values(raw: Raw) -> None:
    # ClientField may not hold ``&`` (gmo-pg.md); free-text names may, and come back verbatim.
    await raw.charge("S-04", ClientField1="a b=c")
    status, body, _ = await raw.post_raw(
        "SearchTrade", urlencode({**SHOP, "OrderID": "S-04"}).encode()
    )
    assert status == 200 and b"&ClientField1=a b=c&ClientField2=" in body
    await raw.post("SaveMember", **SITE, MemberID="amp", MemberName="a&b=c")
    status, body, _ = await raw.post_raw(
        "SearchMember", urlencode({**SITE, "MemberID": "amp"}).encode()
    )
    assert status == 200 and body == b"MemberID=amp&MemberName=a&b=c&DeleteFlag=0"


@pytest.mark.parametrize("char", list("{}|^`~&<>\"'"))
async def test_client_fields_refuse_the_forbidden_characters(
    raw: Raw, sandbox: Sandbox, char: str
) -> None:
    """gmo-pg.md: ClientField1..3 ≤ 100 bytes, none of {}|^`~&<>"'."""
    for i, code in ((1, "E01320012"), (2, "E01330012"), (3, "E01340012")):
        ans = await raw.charge(f"CF-0{i}", **{f"ClientField{i}": f"a{char}b"})
        assert errinfo(ans) == [code]
        assert sandbox.state.successes(f"CF-0{i}") == 0
    assert "TranID" in await raw.charge("CF-04", ClientField1="髙橋 ① a=b,c.d/e:f")


# -- members and cards ----------------------------------------------------------------------------
async def test_members(raw: Raw) -> None:
    saved = await raw.post("SaveMember", **SITE, MemberID="m.1@x", MemberName="髙橋①")
    assert saved == {"MemberID": "m.1@x"}
    assert errinfo(await raw.post("SaveMember", **SITE, MemberID="m.1@x")) == ["E01390010"]
    found = await raw.post("SearchMember", **SITE, MemberID="m.1@x")
    assert found == {"MemberID": "m.1@x", "MemberName": "髙橋①", "DeleteFlag": "0"}
    assert errinfo(await raw.post("SearchMember", **SITE, MemberID="m2")) == ["E01390002"]
    assert errinfo(await raw.post("SaveMember", **SITE, MemberID="m 3")) == ["E01220008"]
    assert errinfo(await raw.post("SaveMember", **SITE, MemberID="m" * 61)) == ["E01220005"]
    assert errinfo(await raw.post("SaveMember", **SITE)) == ["E01220001"]
    assert errinfo(await raw.post("SaveMember", MemberID="m4")) == ["E01210002"]
    long_name = await raw.post("SaveMember", **SITE, MemberID="m5", MemberName="髙" * 128)
    assert errinfo(long_name) == ["E01430012"]


async def test_cards(raw: Raw, sandbox: Sandbox) -> None:
    await raw.post("SaveMember", **SITE, MemberID="c1")
    assert errinfo(await raw.post("SearchCard", **SITE, MemberID="c1", SeqMode=0)) == ["E01240002"]
    first = await raw.post("SaveCard", **SITE, MemberID="c1", CardNo=VISA, Expire=yymm())
    assert first == {"CardSeq": "0", "CardNo": "************1111", "Forward": "2a99661"}
    second = await raw.post(
        "SaveCard",
        **SITE,
        MemberID="c1",
        CardNo="5555555555554444",
        Expire=yymm(),
        DefaultFlag=1,
        HolderName="TARO YAMADA",
        CardName="main",
    )
    assert second["CardSeq"] == "1"
    listed = await raw.post("SearchCard", **SITE, MemberID="c1", SeqMode=0)
    assert listed == {
        "CardSeq": "0|1",
        "DefaultFlag": "0|1",
        "CardName": "|main",
        "CardNo": "************1111|************4444",
        "Expire": f"{yymm()}|{yymm()}",
        "HolderName": "|TARO YAMADA",
        "DeleteFlag": "0|0",
    }
    one = await raw.post("SearchCard", **SITE, MemberID="c1", SeqMode=0, CardSeq=1)
    assert one["CardSeq"] == "1" and one["CardNo"] == "************4444"
    assert await raw.post("DeleteCard", **SITE, MemberID="c1", SeqMode=0, CardSeq=0) == {
        "CardSeq": "0"
    }
    deleted = await raw.post("DeleteCard", **SITE, MemberID="c1", SeqMode=0, CardSeq=0)
    assert errinfo(deleted) == ["E01240002"]
    after = await raw.post("SearchCard", **SITE, MemberID="c1", SeqMode=0)
    assert after["DeleteFlag"] == "1|0" and after["CardSeq"] == "0|1"
    assert errinfo(await raw.post("DeleteCard", **SITE, MemberID="c1", SeqMode=0)) == ["E01230001"]
    view = sandbox.state.members()
    assert view[0]["cards"][0]["card_no"] == "************1111"  # type: ignore[index]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"CardNo": "4111111111111112"}, ["E41170099"]),
        ({"Expire": "2001"}, ["42G830000"]),
        ({"CardNo": "4000000000000002"}, ["42G020000"]),
        ({"CardNo": GATEWAY_TIMEOUT_CARD}, ["E91020001"]),
        ({"DefaultFlag": "2"}, ["E01250008"]),
        ({"HolderName": "髙" * 26}, ["E01480008"]),
        ({"MemberID": "nobody"}, ["E01390002"]),
    ],
)
async def test_save_card_errors(raw: Raw, params: dict[str, str], expected: list[str]) -> None:
    await raw.post("SaveMember", **SITE, MemberID="c2")
    base = {**SITE, "MemberID": "c2", "CardNo": VISA, "Expire": yymm(), **params}
    assert errinfo(await raw.post("SaveCard", **base)) == expected


async def test_at_most_five_cards(raw: Raw) -> None:
    await raw.post("SaveMember", **SITE, MemberID="c3")
    for i in range(5):
        ans = await raw.post("SaveCard", **SITE, MemberID="c3", CardNo=VISA, Expire=yymm())
        assert ans["CardSeq"] == str(i)
    full = await raw.post("SaveCard", **SITE, MemberID="c3", CardNo=VISA, Expire=yymm())
    assert errinfo(full) == ["E01230009"]
    await raw.post("DeleteCard", **SITE, MemberID="c3", SeqMode=0, CardSeq=2)
    again = await raw.post("SaveCard", **SITE, MemberID="c3", CardNo=VISA, Expire=yymm())
    assert again["CardSeq"] == "5"  # sequence numbers are never reused


async def test_traded_card_and_stored_card_exec(raw: Raw, sandbox: Sandbox) -> None:
    await raw.post("SaveMember", **SITE, MemberID="c4")
    await raw.charge("T-01", "3530111333300000")
    traded = await raw.post("TradedCard", **SHOP, **SITE, OrderID="T-01", MemberID="c4")
    assert traded == {"CardSeq": "0", "CardNo": "************0000", "Forward": "2a99661"}
    await raw.entry("T-02")
    not_done = await raw.post("TradedCard", **SHOP, **SITE, OrderID="T-02", MemberID="c4")
    assert errinfo(not_done) == ["E01110010"]
    missing = await raw.post("TradedCard", **SHOP, **SITE, OrderID="T-09", MemberID="c4")
    assert errinfo(missing) == ["E01110002"]
    e = await raw.entry("T3-01")
    stored_exec = member_exec(e, "T3-01", "c4")
    assert errinfo(await raw.post("ExecTran", **stored_exec, CardSeq=4)) == ["E01240002"]
    assert errinfo(await raw.post("ExecTran", **stored_exec)) == ["E01230001"]
    assert errinfo(await raw.post("ExecTran", **stored_exec, CardSeq=0, SecurityCode=12)) == [
        "E01460008"
    ]
    ans = await raw.post("ExecTran", **stored_exec, CardSeq=0, SecurityCode=123)
    assert "TranID" in ans
    order = sandbox.state.order("T3-01")
    assert order is not None and (order["card_no"], order["member_id"]) == (
        "************0000",
        "c4",
    )
    nobody = await raw.post(
        "ExecTran", **{**stored_exec, "OrderID": "T3-01", "MemberID": "zz"}, CardSeq=0
    )
    assert errinfo(nobody) == ["E01390002"]  # parameter errors come before the order's state


async def test_unknown_endpoint_and_bad_bodies(raw: Raw) -> None:
    status, body, _ = await raw.post_raw("FooTran", b"a=1")
    assert (status, body) == (200, b"ErrCode=E91&ErrInfo=E91099997")
    status, body, _ = await raw.post_raw("EntryTran", b"ShopID=%85%40")
    assert body == b"ErrCode=E01&ErrInfo=E01700001"
    status, body, _ = await raw.post_raw("EntryTran", b"\x85\x40")
    assert body == b"ErrCode=E01&ErrInfo=E01700001"
    async with raw.session.get(f"{raw.url}/payment/EntryTran.idPass") as resp:
        assert resp.status == 405


# -- bad input never crashes the sandbox; limits count cp932 bytes --------------------------------
async def test_digits_other_than_ascii_are_format_errors_not_crashes(
    raw: Raw, sandbox: Sandbox
) -> None:
    """``①`` and ``１`` pass ``str.isdigit``; the gateway wants ASCII digits and must answer a
    parameter error, never an HTTP 500 (nor accept full-width digits as a number)."""
    base = {**SHOP, "JobCd": "AUTH"}
    assert errinfo(await raw.post("EntryTran", **base, OrderID="D-01", Amount="1①")) == [
        "E01060006"
    ]
    assert errinfo(await raw.post("EntryTran", **base, OrderID="D-02", Amount="１００")) == [
        "E01060006"
    ]
    assert errinfo(await raw.post("EntryTran", **base, OrderID="D-03", Amount="100", Tax="①")) == [
        "E01070006"
    ]
    assert (await raw.charge("D-04", VISA, Expire="3①12"))["ErrInfo"] == "E01180006"
    assert (await raw.charge("D-05", "４１１１１１１１１１１１１１１１"))["ErrInfo"] == "E01170006"
    assert (await raw.charge("D-06", VISA, SecurityCode="１２３"))["ErrInfo"] == "E01460008"
    assert (await raw.charge("D-07", VISA, Method=2, PayTimes="③"))["ErrInfo"] == "E01270006"
    await raw.post("SaveMember", **SITE, MemberID="d1")
    listed = await raw.post("SearchCard", **SITE, MemberID="d1", SeqMode=0, CardSeq="①")
    assert errinfo(listed) == ["E01230006"]
    deleted = await raw.post("DeleteCard", **SITE, MemberID="d1", SeqMode=0, CardSeq="①")
    assert errinfo(deleted) == ["E01230006"]
    e = await raw.entry("D-08")
    stored = await raw.post("ExecTran", **member_exec(e, "D-08", "d1"), CardSeq="①")
    assert errinfo(stored) == ["E01230006"]
    assert sandbox.state.successes("D") == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"ShopID": "髙" * 7}, "E01010008"),  # 7 characters, 14 bytes: over 13
        ({"ShopPass": "髙" * 6}, "E01020008"),  # 12 bytes: over 10
        ({"ShopID": "shop-1"}, "E01010008"),
    ],
)
async def test_shop_credentials_are_ascii_and_limited_in_bytes(
    raw: Raw, params: dict[str, str], code: str
) -> None:
    base = {**SHOP, "OrderID": "B-01", "JobCd": "AUTH", "Amount": "100", **params}
    assert errinfo(await raw.post("EntryTran", **base)) == [code]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"SiteID": "s" * 14}, "E01210002"),  # SiteID ≤ 13
        ({"SitePass": "p" * 21}, "E01210002"),  # SitePass ≤ 20
        ({"MemberID": "髙" * 31}, "E01220005"),  # 62 bytes: over 60
    ],
)
async def test_site_credentials_and_member_id_limits(
    raw: Raw, params: dict[str, str], code: str
) -> None:
    assert errinfo(await raw.post("SaveMember", **{**SITE, "MemberID": "b1", **params})) == [code]
    assert "MemberID" in await raw.post("SaveMember", **SITE, MemberID="b" * 60)
    assert "MemberID" in await raw.post(
        "SaveMember", SiteID="s" * 13, SitePass="p" * 20, MemberID="b2"
    )
