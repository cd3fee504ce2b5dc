"""Listen-in end to end (issue 14): the operator is on the phone with the caller; the API starts
the card entry. The AMI stand-in lists the operator's call, takes the one dual Redirect and then,
as Asterisk does when [ivrpay] runs the AGI, the caller's channel calls ivrpay's FastAGI server
with the payment's code and the listening operator's channel as the transferrer. The payment
ends as after a transfer, with ``listen_in`` on it; the caller goes back to the listener (the
dialplan's Bridge, tested in tests/dialplan/test_listen_in.py). A take-back during a listen-in
works as ever.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivrpay import store
from ivrpay.service import Service
from ivrpay.simulator.env import ChannelSpec
from tests.e2e.callkit import EXPIRY, VISA, call_released, ended, hung_up, pay_keys, simulated
from tests.e2e.conftest import FAST_AMI, Ivrpay
from tests.support.ami import AmiStandIn

OPERATOR_CHANNEL = "PJSIP/1001-0000002a"
CALLER_CHANNEL = "PJSIP/trunk-00000031"
LISTENING = {"id": "op-1", "callback": "PJSIP/1001", "listen_in": True}


@pytest.fixture
def e2e_overrides(ami_standin: AmiStandIn) -> dict[str, Any]:
    ami_standin.channels |= {OPERATOR_CHANNEL, CALLER_CHANNEL}
    ami_standin.bridges.update({OPERATOR_CHANNEL: "b-1", CALLER_CHANNEL: "b-1"})
    return {"ami_url": ami_standin.url, **FAST_AMI}


async def _ami_up(ivrpay: Ivrpay) -> None:
    assert ivrpay.service.takeback is not None
    await asyncio.wait_for(ivrpay.service.takeback.link.wait_up(), 5)


def _redirect_runs_the_ivr(
    ami_standin: AmiStandIn, ivrpay: Ivrpay, keys: list[str], pause_at: str | None = None
) -> list[Any]:
    """On the dual Redirect, [ivrpay] runs the AGI for the caller's channel: the list gets
    (call, its breakpoint at ``pause_at`` or None)."""
    calls: list[Any] = []

    async def run_ivr(headers: dict[str, str]) -> None:
        assert headers["Context"] == "ivrpay" and headers["ExtraContext"] == "ivrpay-spy"
        call = simulated(
            ivrpay,
            keys,
            code=headers["Exten"][1:],
            # [ivrpay] sets BLINDTRANSFER to the listener before the AGI
            transferrer=ami_standin.variables[(CALLER_CHANNEL, "IVRPAY_LISTEN_NEXT")],
            channel=ChannelSpec(channel=CALLER_CHANNEL, language="en"),
        )
        held = call.pause_at(pause_at) if pause_at else None
        await call.start()
        calls.append((call, held))

    ami_standin.on("Redirect", run_ivr)
    return calls


async def listened_in(
    ivrpay: Ivrpay, ami_standin: AmiStandIn, keys: list[str], pause_at: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """A listen-in started through the API and its caller's call started by the Redirect:
    (payment, the API's answer, the call, its breakpoint at ``pause_at`` or None)."""
    calls = _redirect_runs_the_ivr(ami_standin, ivrpay, keys, pause_at)
    payment = await ivrpay.create_payment(language="en", operator=LISTENING)
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/listen-in")
    assert status == 202, body
    await ami_standin.until(lambda s: len(calls) == 1)
    call, held = calls[0]
    return payment, body, call, held


async def test_listen_in_to_a_succeeded_payment(ivrpay: Ivrpay, ami_standin: AmiStandIn) -> None:
    await _ami_up(ivrpay)
    calls = _redirect_runs_the_ivr(ami_standin, ivrpay, pay_keys())
    payment = await ivrpay.create_payment(language="en", operator=LISTENING)
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/listen-in")
    assert status == 202, body
    assert body["redirected_by"] == ivrpay.service.owner
    await ami_standin.until(lambda s: len(calls) == 1)
    record = await calls[0][0].wait()
    # The flow's usual end: the dialplan then bridges the caller with the listener.
    ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "succeeded"
    assert after["call"]["channel"] == CALLER_CHANNEL
    listen = after["listen_in"]
    assert (listen["operator_channel"], listen["caller_channel"]) == (
        OPERATOR_CHANNEL,
        CALLER_CHANNEL,
    )
    assert listen["by"] == "api:e2e" and listen["process"] == ivrpay.service.owner
    assert listen["ended_at"] == after["call"]["ended_at"]  # from when to when
    audit = await store.list_audit(ivrpay.pool, payment_id=payment["id"])
    actions = {a["action"]: a for a in audit}
    assert set(actions) == {"payment.listen_in", "payment.listen_in_end"}
    assert actions["payment.listen_in"]["actor"] == "api:e2e"
    assert actions["payment.listen_in"]["data"]["operator_channel"] == OPERATOR_CHANNEL


async def test_a_decline_during_listen_in_ends_as_ever(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    await _ami_up(ivrpay)
    declined = "4000000000000002"  # the sandbox's generic decline (product.md test cards)
    keys = [f"{declined}#", EXPIRY, "123", "1", "2"]
    payment, _, call, _ = await listened_in(ivrpay, ami_standin, keys)
    record = await call.wait()
    ended(record, "FAILED", payment, callback="PJSIP/1001")
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "failed" and after["error"]["code"] == "42G020000"
    assert after["listen_in"]["ended_at"]


async def test_take_back_during_a_listen_in(ivrpay: Ivrpay, ami_standin: AmiStandIn) -> None:
    await _ami_up(ivrpay)
    payment, _, call, held = await listened_in(
        ivrpay, ami_standin, [f"{VISA}#", EXPIRY], pause_at="GET DATA ivrpay/enter_expiry"
    )
    await held.reached()

    async def hang_up(_headers: dict[str, str]) -> None:
        await call.hang_up()

    ami_standin.on("Redirect", hang_up)
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/take-back")
    assert status == 202, body
    hung_up(await call.wait())
    del held
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "abandoned" and after["taken_back"] and after["listen_in"]
    redirect = ami_standin.named("Redirect")[-1]
    assert (redirect["Channel"], redirect["Context"]) == (CALLER_CHANNEL, "ivrpay-takeback")


async def test_a_listener_who_left_stops_the_card_entry(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    """Keys are taken only while the operator is on the spy leg: gone after the expiry was
    asked, the security code is never asked; the caller goes back (the dialplan rings the
    operator's phone) and nothing is sent to the gateway."""
    await _ami_up(ivrpay)
    payment, _, call, held = await listened_in(
        ivrpay, ami_standin, pay_keys(), pause_at="GET DATA ivrpay/enter_expiry"
    )
    await held.reached()
    ami_standin.channels.discard(OPERATOR_CHANNEL)  # the operator hung up the spy leg
    held.release()
    record = await call.wait()
    ended(record, "OPERATOR", payment, callback="PJSIP/1001")
    files = [p.file for p in record.prompts]
    assert "ivrpay/enter_expiry" in files and "ivrpay/enter_security_code" not in files
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "abandoned" and after["executions"] == []
    assert ami_standin.named("MuteAudio") == []  # an RFC 4733 caller: nothing to mute


async def test_the_caller_hanging_up_during_a_listen_in(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    """The caller hangs up while keying: abandoned as after any hang-up (ChanSpy's E option then
    ends the operator's spy leg); the listen-in's end is the call's."""
    await _ami_up(ivrpay)
    payment, _, call, held = await listened_in(
        ivrpay, ami_standin, [f"{VISA}#"], pause_at="GET DATA ivrpay/enter_expiry"
    )
    await held.reached()
    await call.hang_up()
    held.release()
    hung_up(await call.wait())
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "abandoned" and after["executions"] == []
    assert after["listen_in"]["ended_at"] == after["call"]["ended_at"] is not None


async def _listen_in_at(ivrpay: Ivrpay, service: Service, payment_id: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{service.http_port}/api/v1/payments/{payment_id}/listen-in"
    headers = {"Authorization": f"Bearer {ivrpay.api_key}"}
    async with ivrpay.http.post(url, headers=headers) as r:
        return r.status, await r.json()


async def test_a_process_without_a_link_hands_the_listen_in_over(
    ivrpay: Ivrpay, ami_standin: AmiStandIn, second: Service
) -> None:
    await _ami_up(ivrpay)
    assert second.takeback is not None and not second.takeback.connected
    calls = _redirect_runs_the_ivr(ami_standin, ivrpay, pay_keys())
    payment = await ivrpay.create_payment(language="en", operator=LISTENING)
    status, body = await _listen_in_at(ivrpay, second, payment["id"])
    assert status == 202, body
    assert body["redirected_by"] == ivrpay.service.owner != second.owner
    assert body["payment"]["listen_in"]["process"] == ivrpay.service.owner
    await ami_standin.until(lambda s: len(calls) == 1)
    ended(await calls[0][0].wait(), "SUCCEEDED", payment, callback="PJSIP/1001")
    # A refusal made by the other process comes back as it is.
    plain = await ivrpay.create_payment(
        language="en", operator={"id": "op-1", "callback": "PJSIP/1003", "listen_in": True}
    )
    status, body = await _listen_in_at(ivrpay, second, plain["id"])
    assert status == 409 and body["type"] == "urn:ivrpay:problem:operator-not-on-a-call", body
    assert len(ami_standin.named("Redirect")) == 1


async def test_no_link_anywhere_is_503(
    ivrpay: Ivrpay, ami_standin: AmiStandIn, second: Service
) -> None:
    await _ami_up(ivrpay)
    await ami_standin.stop()
    tb = ivrpay.service.takeback
    assert tb is not None
    await asyncio.wait_for(tb.link.wait_down(), 5)
    assert second.takeback is not None
    second.takeback.relay_wait_s = 0.2
    payment = await ivrpay.create_payment(language="en", operator=LISTENING)
    status, body = await _listen_in_at(ivrpay, second, payment["id"])
    assert status == 503 and body["type"] == "urn:ivrpay:problem:ami-unavailable", body
    assert (await ivrpay.payment(payment["id"]))["listen_in"] is None
