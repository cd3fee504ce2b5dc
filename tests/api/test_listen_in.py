"""POST /api/v1/payments/{id}/listen-in over real HTTP, PostgreSQL and the AMI stand-in (the
call that follows is in tests/e2e/test_call_listen_in.py, the dialplan in
tests/dialplan/test_listen_in.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ivrpay import store
from ivrpay.ami import AmiLink, parse_ami_url
from ivrpay.api.listenin import find_call
from ivrpay.api.takeback import TakeBack
from ivrpay.config import Settings
from tests.api.conftest import MakeClient, body
from tests.support.ami import AmiStandIn

OPERATOR = "PJSIP/1001-0000002a"
CALLER = "PJSIP/trunk-00000031"
LISTEN_IN = "/api/v1/payments/{}/listen-in"
LISTENING = {"id": "op-1", "callback": "PJSIP/1001", "listen_in": True}


@pytest.fixture
async def on_a_call(ami_standin: AmiStandIn) -> AsyncIterator[tuple[AmiStandIn, TakeBack]]:
    """The operator's phone PJSIP/1001 talking to the caller, and this process's AMI link."""
    ami_standin.channels |= {OPERATOR, CALLER, "PJSIP/1002-00000040"}
    ami_standin.bridges.update({OPERATOR: "b-1", CALLER: "b-1"})
    link = AmiLink(parse_ami_url(ami_standin.url), backoff_s=(0.01,))
    tb = TakeBack(link, None, owner="proc-a")
    await link.start()
    try:
        await asyncio.wait_for(link.wait_up(), 5)
        yield ami_standin, tb
    finally:
        await link.close()


async def test_listen_in_moves_both_channels_in_one_redirect(
    make_client: MakeClient,
    auth: dict[str, str],
    pool: Any,
    on_a_call: tuple[AmiStandIn, TakeBack],
) -> None:
    standin, tb = on_a_call
    client = await make_client(ami=tb)
    r = await client.post("/api/v1/payments", json=body(operator=LISTENING), headers=auth)
    payment = await r.json()
    assert payment["operator"]["listen_in"] is True and payment["listen_in"] is None
    headers = {**auth, "Idempotency-Key": "li-1"}
    r = await client.post(LISTEN_IN.format(payment["id"]), headers=headers)
    doc = await r.json()
    assert r.status == 202, doc
    assert doc["redirected_by"] == "proc-a"
    record = doc["payment"]["listen_in"]
    assert record["by"] == "api:core system" and record["process"] == "proc-a"
    assert (record["operator_channel"], record["caller_channel"]) == (OPERATOR, CALLER)
    assert doc["payment"]["status"] == "pending"  # the IVR's call claims it as after a transfer
    # The variables first, on each channel, then one Redirect for both.
    setvars = {(a["Channel"], a["Variable"]): a["Value"] for a in standin.named("Setvar")}
    assert setvars == {
        (CALLER, "IVRPAY_LISTEN_NEXT"): OPERATOR,
        (OPERATOR, "IVRPAY_SPY_TARGET"): CALLER,
    }
    (redirect,) = standin.named("Redirect")
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"], redirect["Priority"]) == (
        CALLER,
        "ivrpay",
        payment["transfer_to"],
        "1",
    )
    assert (redirect["ExtraChannel"], redirect["ExtraContext"], redirect["ExtraExten"]) == (
        OPERATOR,
        "ivrpay-spy",
        "s",
    )
    # Replayed with the same key; a second start is refused and sends nothing.
    again = await client.post(LISTEN_IN.format(payment["id"]), headers=headers)
    assert again.status == 202 and again.headers.get("Idempotent-Replayed") == "true"
    r = await client.post(LISTEN_IN.format(payment["id"]), headers=auth)
    assert r.status == 409
    assert (await r.json())["type"] == "urn:ivrpay:problem:already-listening"
    assert len(standin.named("Redirect")) == 1
    # Audited: who, both channels, which process.
    (row,) = await pool.fetch("SELECT actor, data FROM audit WHERE action = 'payment.listen_in'")
    assert row["actor"] == "api:core system"


async def test_refusals_before_any_redirect(
    make_client: MakeClient,
    auth: dict[str, str],
    pool: Any,
    on_a_call: tuple[AmiStandIn, TakeBack],
) -> None:
    standin, tb = on_a_call
    client = await make_client(ami=tb)

    async def start(operator: dict[str, Any] | None, order: str) -> tuple[int, str]:
        extra = {"operator": operator} if operator else {}
        r = await client.post("/api/v1/payments", json=body(order_id=order, **extra), headers=auth)
        p = await r.json()
        r = await client.post(LISTEN_IN.format(p["id"]), headers=auth)
        return r.status, (await r.json())["type"].rsplit(":", 1)[1]

    # registered for a plain transfer
    assert await start({"id": "op-1", "callback": "PJSIP/1001"}, "A-1") == (409, "not-listen-in")
    assert await start(None, "A-2") == (409, "not-listen-in")
    # the operator's phone is on no call
    assert await start({**LISTENING, "callback": "PJSIP/1003"}, "A-3") == (
        409,
        "operator-not-on-a-call",
    )
    # a phone that is on two calls, and a conference
    standin.channels |= {"PJSIP/1002-00000041", "PJSIP/trunk-00000050", "PJSIP/trunk-00000051"}
    standin.bridges.update(
        {"PJSIP/1002-00000040": "b-2", "PJSIP/1002-00000041": "b-3", "PJSIP/trunk-00000050": "b-2"}
    )
    assert await start({**LISTENING, "callback": "PJSIP/1002"}, "A-4") == (
        409,
        "operator-on-several-calls",
    )
    # a caller whose keys arrive as tones (or whose line cannot say)
    for n, mode in enumerate(["inband", "auto", "(null)"]):
        standin.dtmf_modes[CALLER] = mode
        assert await start(LISTENING, f"A-5{n}") == (409, "in-band-dtmf")
    assert standin.named("Redirect") == [] and standin.named("Setvar") == []
    r = await client.post(LISTEN_IN.format("nope"), headers=auth)
    assert r.status == 404


async def test_a_redirect_the_pbx_refuses_clears_the_record(
    make_client: MakeClient,
    auth: dict[str, str],
    pool: Any,
    on_a_call: tuple[AmiStandIn, TakeBack],
) -> None:
    standin, tb = on_a_call
    client = await make_client(ami=tb)
    r = await client.post("/api/v1/payments", json=body(operator=LISTENING), headers=auth)
    payment = await r.json()
    # the caller hung up between the listing and the Redirect
    standin.on("setvar", lambda h: standin.channels.discard(CALLER))
    r = await client.post(LISTEN_IN.format(payment["id"]), headers=auth)
    assert r.status == 409, await r.json()
    snap = await store.get_payment(pool, payment["id"])
    assert snap is not None and snap["listen_in"] is None and snap["status"] == "pending"
    kinds = await pool.fetch(
        "SELECT kind FROM payment_events WHERE payment_id = $1::uuid ORDER BY seq", payment["id"]
    )
    assert [k["kind"] for k in kinds][-2:] == ["listen_in", "listen_in_failed"]


async def test_without_ami_listen_in_is_503(
    make_client: MakeClient, auth: dict[str, str], pool: Any
) -> None:
    client = await make_client()
    r = await client.post("/api/v1/payments", json=body(operator=LISTENING), headers=auth)
    payment = await r.json()
    r = await client.post(LISTEN_IN.format(payment["id"]), headers=auth)
    assert r.status == 503 and (await r.json())["type"] == "urn:ivrpay:problem:ami-unavailable"
    snap = await store.get_payment(pool, payment["id"])
    assert snap is not None and snap["listen_in"] is None


async def test_the_setting_makes_listen_in_the_default(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    client = await make_client(settings=Settings(listen_in=True))
    plain = {"id": "op-1", "callback": "PJSIP/1001"}
    r = await client.post("/api/v1/payments", json=body(operator=plain), headers=auth)
    assert (await r.json())["operator"]["listen_in"] is True
    off = {**plain, "listen_in": False}
    r = await client.post("/api/v1/payments", json=body(order_id="B-2", operator=off), headers=auth)
    assert (await r.json())["operator"]["listen_in"] is False
    r = await client.post(
        "/api/v1/payments",
        json=body(order_id="B-3", operator={**plain, "listen_in": "yes"}),
        headers=auth,
    )
    assert r.status == 422
    errors = (await r.json())["errors"]
    assert errors == [{"field": "operator.listen_in", "message": "must be true or false"}]


@pytest.mark.parametrize(
    ("channels", "found"),
    [
        (
            [("PJSIP/1001-0000002a", "b"), ("PJSIP/trunk-1", "b")],
            ("PJSIP/1001-0000002a", "PJSIP/trunk-1"),
        ),
        # a ringing second line of the same phone is not in a bridge
        (
            [("PJSIP/1001-0000002a", "b"), ("PJSIP/1001-0000002b", ""), ("PJSIP/t-1", "b")],
            ("PJSIP/1001-0000002a", "PJSIP/t-1"),
        ),
        # PJSIP/10011 is another phone
        ([("PJSIP/10011-0000002a", "b"), ("PJSIP/t-1", "b")], "operator_not_on_a_call"),
        ([("PJSIP/1001-0000002a", "b")], "operator_not_on_a_call"),
        (
            [("PJSIP/1001-0000002a", "b"), ("PJSIP/t-1", "b"), ("PJSIP/t-2", "b")],
            "not_a_two_party_call",
        ),
    ],
)
def test_find_call(channels: list[tuple[str, str]], found: Any) -> None:
    events = [{"Channel": c, "BridgeID": b} for c, b in channels]
    if isinstance(found, tuple):
        assert find_call(events, "PJSIP/1001") == found
    else:
        with pytest.raises(ValueError, match=found):
            find_call(events, "PJSIP/1001")


async def test_with_the_mute_setting_a_tone_caller_is_listened_to_muted(
    make_client: MakeClient,
    auth: dict[str, str],
    on_a_call: tuple[AmiStandIn, TakeBack],
) -> None:
    standin, tb = on_a_call
    standin.dtmf_modes[CALLER] = "inband"
    client = await make_client(ami=tb, settings=Settings(listen_in_mute=True))
    r = await client.post("/api/v1/payments", json=body(operator=LISTENING), headers=auth)
    payment = await r.json()
    r = await client.post(LISTEN_IN.format(payment["id"]), headers=auth)
    doc = await r.json()
    assert r.status == 202, doc
    listen = doc["payment"]["listen_in"]
    assert (listen["dtmf_mode"], listen["mute"], listen["muted"]) == ("inband", True, False)
    assert len(standin.named("Redirect")) == 1
