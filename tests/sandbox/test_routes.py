"""The sandbox's test routes: faults switched on over HTTP, the orders view with execution counts,
double charges impossible to miss, latency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from ivrpay.sandbox import Sandbox, start_sandbox
from tests.support.gateway import (
    charge,
    check_no_double_charges,
    future_expiry,
    make_card,
    make_gateway_client,
)

SHOP = {"ShopID": "shop1", "ShopPass": "pw1"}
VISA = "4111111111111111"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield session


async def _post_form(
    http: aiohttp.ClientSession, url: str, name: str, **params: object
) -> tuple[int, bytes]:
    async with http.post(
        f"{url}/payment/{name}.idPass", data=urlencode({k: str(v) for k, v in params.items()})
    ) as resp:
        return resp.status, await resp.read()


def _fields(body: bytes) -> dict[str, str]:
    return dict(p.split("=", 1) for p in body.decode("cp932").split("&"))


async def _charge(http: aiohttp.ClientSession, url: str, order_id: str) -> dict[str, str]:
    _, body = await _post_form(
        http, url, "EntryTran", **SHOP, OrderID=order_id, JobCd="AUTH", Amount=100
    )
    e = _fields(body)
    mmyy = future_expiry()
    _, body = await _post_form(
        http,
        url,
        "ExecTran",
        AccessID=e["AccessID"],
        AccessPass=e["AccessPass"],
        OrderID=order_id,
        Method=1,
        CardNo=VISA,
        Expire=mmyy[2:] + mmyy[:2],
    )
    return _fields(body)


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as resp:
        return resp.status, await resp.json()


async def test_fault_switches_validate_their_input(
    http: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    url = f"{sandbox.url}/_sandbox/faults"
    for bad in (
        {"endpoint": "Nope", "kind": "busy", "count": 1},
        {"endpoint": "ExecTran", "kind": "explode", "count": 1},
        {"endpoint": "ExecTran", "kind": "busy", "count": 0},
        {"endpoint": "ExecTran", "kind": "busy", "count": "2"},
        {"endpoint": "ExecTran", "kind": "busy", "count": True},
        ["not", "an", "object"],
    ):
        status, answer = await _json(http, "POST", url, json=bad)
        assert status == 400 and answer["error"]
    status, answer = await _json(http, "POST", url, data=b"{nope")
    assert status == 400
    assert sandbox.faults.view() == []


async def test_faults_apply_in_order_and_can_be_cleared(
    http: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    url = f"{sandbox.url}/_sandbox/faults"
    status, answer = await _json(
        http, "POST", url, json={"endpoint": "SearchTrade", "kind": "busy", "count": 2}
    )
    assert status == 201 and answer["faults"] == [
        {"endpoint": "SearchTrade", "kind": "busy", "remaining": 2}
    ]
    await _json(http, "POST", url, json={"endpoint": "*", "kind": "http500", "count": 1})
    for _ in range(2):
        status, body = await _post_form(http, sandbox.url, "SearchTrade", **SHOP, OrderID="F-1")
        assert _fields(body)["ErrInfo"] == "E92000001"
    status, body = await _post_form(http, sandbox.url, "SearchTrade", **SHOP, OrderID="F-1")
    assert status == 500 and body.startswith(b"<!DOCTYPE html>")
    status, body = await _post_form(http, sandbox.url, "SearchTrade", **SHOP, OrderID="F-1")
    assert _fields(body)["ErrInfo"] == "E01110002"  # faults used up
    await _json(http, "POST", url, json={"endpoint": "*", "kind": "busy", "count": 5})
    status, answer = await _json(http, "GET", url)
    assert answer["faults"][0]["remaining"] == 5
    status, answer = await _json(http, "DELETE", url)
    assert status == 200 and answer == {"faults": []} and sandbox.faults.view() == []


@pytest.mark.parametrize(
    ("kind", "processed"),
    [
        ("refuse", False),
        ("http500", False),
        ("busy", False),
        ("drop_answer", True),
        ("garbage", True),
        ("timeout", True),
    ],
)
async def test_each_fault_kind(sandbox: Sandbox, kind: str, processed: bool) -> None:
    sandbox.add_fault("EntryTran", kind, 1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as short:
        try:
            status, body = await _post_form(
                short, sandbox.url, "EntryTran", **SHOP, OrderID="K-1", JobCd="CHECK"
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            assert kind in ("refuse", "drop_answer", "timeout"), exc
            assert kind != "timeout" or isinstance(exc, TimeoutError)
        else:
            if kind == "http500":
                assert status == 500
            elif kind == "busy":
                assert _fields(body) == {"ErrCode": "E92", "ErrInfo": "E92000001"}
            else:
                assert kind == "garbage" and status == 200
                with pytest.raises(UnicodeDecodeError):
                    body.decode("cp932")
    assert (sandbox.state.order("K-1") is not None) == processed
    assert sandbox.state.requests["EntryTran"] == 1


async def test_orders_view_counts_executions_and_successes(
    http: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    await _charge(http, sandbox.url, "PAY-7-01")
    await _post_form(
        http, sandbox.url, "EntryTran", **SHOP, OrderID="PAY-7-02", JobCd="AUTH", Amount=100
    )
    await _charge(http, sandbox.url, "PAY-70-01")  # another payment, same leading characters
    status, view = await _json(http, "GET", f"{sandbox.url}/_sandbox/orders?prefix=PAY-7")
    assert status == 200
    assert [(o["order_id"], o["status"], o["executions"]) for o in view["orders"]] == [
        ("PAY-7-01", "AUTH", 1),
        ("PAY-7-02", "UNPROCESSED", 0),
    ]
    assert view["orders"][0]["card_no"] == "************1111"
    assert (view["executions"], view["successful_executions"], view["double_charges"]) == (
        1,
        1,
        {},
    )
    _, everything = await _json(http, "GET", f"{sandbox.url}/_sandbox/orders")
    assert len(everything["orders"]) == 3 and everything["prefix"] is None


async def test_a_second_success_for_one_payment_cannot_be_missed(
    http: aiohttp.ClientSession, sandbox: Sandbox, card_safe_logs: Any
) -> None:
    sandbox.expected_double_charges.add("TWICE")  # on purpose: the fixture would fail it
    await _charge(http, sandbox.url, "TWICE-01")
    await _charge(http, sandbox.url, "TWICE-02")
    _, view = await _json(http, "GET", f"{sandbox.url}/_sandbox/orders?prefix=TWICE")
    assert view["successful_executions"] == 2
    assert view["double_charges"] == {"TWICE": 2}
    assert sandbox.state.double_charges() == {"TWICE": 2}
    assert sandbox.state.successes("TWICE") == 2
    assert card_safe_logs.events("sandbox_double_charge")
    _, overview = await _json(http, "GET", f"{sandbox.url}/_sandbox/state")
    assert overview["double_charges"] == {"TWICE": 2}
    assert overview["requests"] == {"EntryTran": 2, "ExecTran": 2}


async def test_members_view_is_masked(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    site = {"SiteID": "s", "SitePass": "p"}
    await _post_form(http, sandbox.url, "SaveMember", **site, MemberID="v1", MemberName="N")
    mmyy = future_expiry()
    await _post_form(
        http,
        sandbox.url,
        "SaveCard",
        **site,
        MemberID="v1",
        CardNo=VISA,
        Expire=mmyy[2:] + mmyy[:2],
    )
    _, view = await _json(http, "GET", f"{sandbox.url}/_sandbox/members")
    assert view == {
        "members": [
            {
                "site_id": "s",
                "member_id": "v1",
                "name": "N",
                "cards": [
                    {
                        "card_seq": 0,
                        "card_no": "************1111",
                        "default": True,
                        "deleted": False,
                    }
                ],
            }
        ]
    }


async def test_latency_delays_every_answer() -> None:
    slow = await start_sandbox(latency_ms=400, jitter_ms=50)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as short:
            with pytest.raises(TimeoutError):
                await _post_form(short, slow.url, "SearchTrade", **SHOP, OrderID="L-1")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as patient:
            status, body = await _post_form(patient, slow.url, "SearchTrade", **SHOP, OrderID="L")
            assert status == 200 and _fields(body)["ErrInfo"] == "E01110002"
            _, view = await _json(patient, "GET", f"{slow.url}/_sandbox/state")  # no delay
            assert view["requests"]["SearchTrade"] == 2
    finally:
        await slow.stop()


async def test_stop_releases_held_answers(sandbox: Sandbox) -> None:
    sandbox.add_fault("EntryTran", "timeout", 1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as short:
        with pytest.raises(TimeoutError):
            await _post_form(short, sandbox.url, "EntryTran", **SHOP, OrderID="H-1", JobCd="CHECK")
    await sandbox.stop()  # returns although a handler was holding its answer
    assert sandbox.state.order("H-1") is not None


async def test_a_double_charge_fails_the_test_that_made_it(sandbox: Sandbox) -> None:
    """product.md: "a second success for one payment is a test failure" — the shared ``sandbox``
    fixture runs :func:`check_no_double_charges` after every test that used it."""
    async with make_gateway_client(sandbox) as client:
        for order_id in ("ONE-01", "TWO-01"):
            assert (await charge(client, order_id, make_card(VISA), amount=1)).ok
        check_no_double_charges(sandbox)  # two payments, one success each: fine
        assert (await charge(client, "ONE-02", make_card(VISA), amount=1)).ok
    with pytest.raises(AssertionError, match=r"double charge.*ONE"):
        check_no_double_charges(sandbox)
    sandbox.expected_double_charges.add("ONE")  # a test that means it says so
    check_no_double_charges(sandbox)
