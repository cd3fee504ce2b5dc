"""Take-back end to end (issue 11): a caller in the IVR, the operator takes them back through the
API; the AMI stand-in sees the Setvar and the Redirect of the call's channel and then, as Asterisk
does after a Redirect, hangs up the AGI on the Asterisk stand-in. The payment ends ``abandoned``
with ``taken_back``, and no card digit is left in memory.

Two ``serve`` processes share the database: a take-back sent to the one whose AMI link is down
is redirected by the other, which the answer names.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from ivrpay import store
from ivrpay.card.holder import CardData
from ivrpay.metrics import TAKE_BACKS
from ivrpay.service import Service
from tests.e2e.callkit import (
    EXPIRY,
    OPERATOR,
    VISA,
    call_released,
    held_call,
    hung_up,
)
from tests.e2e.conftest import FAST_AMI, Ivrpay
from tests.support.ami import AmiStandIn


@pytest.fixture
def e2e_overrides(ami_standin: AmiStandIn) -> dict[str, Any]:
    return {"ami_url": ami_standin.url, **FAST_AMI}


def _card_data_held() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, CardData) and not o.is_empty)


async def _ami_up(ivrpay: Ivrpay) -> None:
    assert ivrpay.service.takeback is not None
    await asyncio.wait_for(ivrpay.service.takeback.link.wait_up(), 5)


def _redirects_hang_up(ami_standin: AmiStandIn, call: Any) -> None:
    async def hang_up(_headers: dict[str, str]) -> None:
        await call.hang_up()

    ami_standin.on("Redirect", hang_up)


async def test_take_back_in_the_card_number_step(ivrpay: Ivrpay, ami_standin: AmiStandIn) -> None:
    await _ami_up(ivrpay)
    before = TAKE_BACKS.labels("ok")._value.get()
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    # The card number is keyed and held; the caller is asked for the expiry.
    call, held = await held_call(
        ivrpay, [f"{VISA}#", EXPIRY], "GET DATA ivrpay/enter_expiry", code=payment["code"]
    )
    channel = (await ivrpay.payment(payment["id"]))["call"]["channel"]
    ami_standin.channels.add(channel)
    _redirects_hang_up(ami_standin, call)
    assert _card_data_held() == 1

    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/take-back")
    assert status == 202, body
    assert body["redirected_by"] == ivrpay.service.owner
    assert body["payment"]["taken_back"]["by"] == "api:e2e"
    assert body["payment"]["taken_back"]["process"] == ivrpay.service.owner

    setvar, redirect = ami_standin.actions[-2:]
    assert (setvar.name, setvar["Channel"], setvar["Variable"], setvar["Value"]) == (
        "Setvar",
        channel,
        "IVRPAY_CALLBACK",
        "PJSIP/1001",
    )
    assert redirect.name == "Redirect"
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"], redirect["Priority"]) == (
        channel,
        "ivrpay-takeback",
        "s",
        "1",
    )

    record = await call.wait()
    hung_up(record)  # the flow told the dialplan nothing: [ivrpay-takeback] dials the operator
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "abandoned"
    assert after["taken_back"]["by"] == "api:e2e" and after["taken_back"]["at"]
    assert after["progress"]["step"] == "expiry"
    assert after["executions"] == []
    assert _card_data_held() == 0
    assert ivrpay.service.deps.live_tokens == set()
    audit = await store.list_audit(ivrpay.pool, payment_id=payment["id"])
    assert [(a["action"], a["actor"]) for a in audit] == [("payment.take_back", "api:e2e")]
    assert TAKE_BACKS.labels("ok")._value.get() == before + 1
    base = f"http://127.0.0.1:{ivrpay.service.http_port}"
    async with ivrpay.http.get(base + "/metrics") as r:
        text = await r.text()
    assert 'ivrpay_take_backs_total{outcome="ok"}' in text
    assert "ivrpay_ami_reconnects_total" in text
    async with ivrpay.http.get(base + "/healthz") as r:
        assert (await r.json())["checks"]["ami"] == {"status": "ok"}
    del held


async def test_take_back_of_a_call_that_is_not_in_the_ivr_is_409(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    await _ami_up(ivrpay)
    payment = await ivrpay.create_payment(language="en")
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/take-back")
    assert status == 409 and body["type"] == "urn:ivrpay:problem:not-in-ivr"
    status, body = await ivrpay.api(
        "POST", "/payments/00000000-0000-0000-0000-000000000000/take-back"
    )
    assert status == 404
    assert ami_standin.named("Redirect") == []


async def test_a_redirect_the_pbx_refuses_leaves_the_call_going(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    """The channel is gone from the PBX's view (the stand-in does not know it): 409, the record
    is cleared, and the caller goes on to pay."""
    await _ami_up(ivrpay)
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, held = await held_call(
        ivrpay,
        [f"{VISA}#", EXPIRY, "123", "1"],
        "GET DATA ivrpay/enter_expiry",
        code=payment["code"],
    )
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/take-back")
    assert status == 409 and "The PBX refused the redirect" in body["detail"]
    assert (await ivrpay.payment(payment["id"]))["taken_back"] is None
    held.release()
    record = await call.wait()
    assert record.variables.get("IVRPAY_STATUS") == "SUCCEEDED"


async def test_take_back_is_refused_while_the_gateway_call_is_in_flight(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    await _ami_up(ivrpay)
    # ExecTran's answer is held back: the payment stays processing until the client gives up.
    ivrpay.sandbox.add_fault("ExecTran", "timeout")
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, music = await held_call(
        ivrpay, [f"{VISA}#", EXPIRY, "123", "1"], "SET MUSIC ON", code=payment["code"]
    )
    # Hold music means the gateway work has started: wait until ExecTran may be sent.
    async with asyncio.timeout(10), ivrpay.service.listener.subscribe(payment["id"]) as changes:
        while (await ivrpay.payment(payment["id"]))["status"] != "processing":
            await changes.get()
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/take-back")
    assert status == 409 and body["type"] == "urn:ivrpay:problem:execution-in-flight"
    music.release()
    record = await call.wait()
    # The charge went through (the call's own reconcile finds it): the outcome stands.
    assert record.variables.get("IVRPAY_STATUS") == "SUCCEEDED"
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "succeeded" and after["taken_back"] is None
    assert ami_standin.named("Redirect") == []


async def test_a_take_back_before_the_gateway_call_stops_it(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    """Recorded while the caller hears "please wait" (in_call, no execution sent): the call
    may not move to processing, so nothing is charged."""
    await _ami_up(ivrpay)
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, held = await held_call(
        ivrpay,
        [f"{VISA}#", EXPIRY, "123", "1"],
        "STREAM FILE ivrpay/please_wait",
        code=payment["code"],
    )
    channel = (await ivrpay.payment(payment["id"]))["call"]["channel"]
    ami_standin.channels.add(channel)
    gate = ami_standin.hold("Redirect")  # the PBX is slow to carry it out
    task = asyncio.create_task(ivrpay.api("POST", f"/payments/{payment['id']}/take-back"))
    await ami_standin.until(lambda s: bool(s.named("Redirect")))
    held.release()  # the flow reaches the gateway step meanwhile
    after = await call_released(ivrpay, payment["id"])
    gate.set()
    status, _body = await task
    assert status == 202
    assert after["status"] == "abandoned" and after["taken_back"] is not None
    assert all(e["outcome"] != "succeeded" for e in after["executions"])
    assert ivrpay.sandbox.state.executions(payment["order_id"]) == 0  # ExecTran never sent
    await call.wait()
    assert _card_data_held() == 0


async def test_no_ami_link_anywhere_is_503(ivrpay: Ivrpay, ami_standin: AmiStandIn) -> None:
    await _ami_up(ivrpay)
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, held = await held_call(
        ivrpay, [f"{VISA}#", "!"], "GET DATA ivrpay/enter_expiry", code=payment["code"]
    )
    await ami_standin.stop()  # the PBX is gone
    tb = ivrpay.service.takeback
    assert tb is not None
    tb.relay_wait_s = 0.2
    await asyncio.wait_for(tb.link.wait_down(), 5)
    doc = await (
        await ivrpay.http.get(f"http://127.0.0.1:{ivrpay.service.http_port}/healthz")
    ).json()
    assert doc["checks"]["ami"]["status"] == "down" and "since" in doc["checks"]["ami"]
    assert doc["status"] == "degraded"
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/take-back")
    assert status == 503 and body["type"] == "urn:ivrpay:problem:ami-unavailable"
    assert (await ivrpay.payment(payment["id"]))["taken_back"] is None
    held.release()
    await call.wait()


async def test_another_process_with_a_link_redirects(
    ivrpay: Ivrpay, ami_standin: AmiStandIn, second: Service
) -> None:
    await _ami_up(ivrpay)
    assert second.takeback is not None and not second.takeback.connected
    payment = await ivrpay.create_payment(language="en", operator=OPERATOR)
    call, _held = await held_call(
        ivrpay, [f"{VISA}#", EXPIRY], "GET DATA ivrpay/enter_expiry", code=payment["code"]
    )
    channel = (await ivrpay.payment(payment["id"]))["call"]["channel"]
    ami_standin.channels.add(channel)
    _redirects_hang_up(ami_standin, call)

    url = f"http://127.0.0.1:{second.http_port}/api/v1/payments/{payment['id']}/take-back"
    headers = {"Authorization": f"Bearer {ivrpay.api_key}"}
    async with ivrpay.http.post(url, headers=headers) as r:
        status, body = r.status, await r.json()
    assert status == 202, body
    assert body["redirected_by"] == ivrpay.service.owner != second.owner
    assert [a.name for a in ami_standin.actions[-2:]] == ["Setvar", "Redirect"]
    hung_up(await call.wait())
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "abandoned"
    assert after["taken_back"]["process"] == ivrpay.service.owner
