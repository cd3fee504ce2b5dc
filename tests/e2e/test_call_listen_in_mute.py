"""Listen-in for a caller whose keys are tones (issue 14), with ``IVRPAY_LISTEN_IN_MUTE=on``:
the operator's leg is muted (AMI ``MuteAudio``, direction ``out``) from before each card field is
asked until it is keyed, and the mute lifted between fields; a mute the PBX refuses stops the card
entry before any key. Without the setting such a caller is refused listen-in
(tests/api/test_listen_in.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ivrpay import store
from tests.e2e.callkit import call_released, ended, pay_keys
from tests.e2e.conftest import FAST_AMI, Ivrpay
from tests.e2e.test_call_listen_in import (
    CALLER_CHANNEL,
    LISTENING,
    OPERATOR_CHANNEL,
    _ami_up,
    _redirect_runs_the_ivr,
    listened_in,
)
from tests.support.ami import AmiStandIn


@pytest.fixture
def e2e_overrides(ami_standin: AmiStandIn) -> dict[str, Any]:
    ami_standin.channels |= {OPERATOR_CHANNEL, CALLER_CHANNEL}
    ami_standin.bridges.update({OPERATOR_CHANNEL: "b-1", CALLER_CHANNEL: "b-1"})
    ami_standin.dtmf_modes[CALLER_CHANNEL] = "inband"
    return {"ami_url": ami_standin.url, "listen_in_mute": True, **FAST_AMI}


async def test_each_field_is_keyed_with_the_operator_muted(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    await _ami_up(ivrpay)
    calls = _redirect_runs_the_ivr(
        ami_standin, ivrpay, pay_keys(), pause_at="GET DATA ivrpay/enter_expiry"
    )
    payment = await ivrpay.create_payment(language="en", operator=LISTENING)
    status, body = await ivrpay.api("POST", f"/payments/{payment['id']}/listen-in")
    assert status == 202, body
    listen = body["payment"]["listen_in"]
    assert listen["dtmf_mode"] == "inband" and listen["mute"] is True
    await ami_standin.until(lambda s: len(calls) == 1)
    call, held = calls[0]
    await held.reached()
    # The expiry is being asked: muted for it, after the card number's mute was lifted.
    assert [a["State"] for a in ami_standin.named("MuteAudio")] == ["on", "off", "on"]
    held.release()
    record = await call.wait()
    ended(record, "SUCCEEDED", payment, callback="PJSIP/1001")
    mutes = [(a["Channel"], a["Direction"], a["State"]) for a in ami_standin.named("MuteAudio")]
    # card number (from before the greeting), expiry, security code: on and off each
    assert mutes == [(OPERATOR_CHANNEL, "out", s) for s in ("on", "off") * 3]
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "succeeded" and after["listen_in"]["muted"] is False
    kinds = [
        r["kind"]
        for r in await ivrpay.pool.fetch(
            "SELECT kind FROM payment_events WHERE payment_id = $1::uuid ORDER BY seq",
            payment["id"],
        )
    ]
    assert kinds.count("listen_in_muted") == 3 and kinds.count("listen_in_unmuted") == 3
    # The audit log: who listened in, and every mute and unmute.
    audit = [a["action"] for a in await store.list_audit(ivrpay.pool, payment_id=payment["id"])]
    assert sorted(audit) == sorted(
        ["payment.listen_in", "payment.listen_in_end"]
        + ["payment.listen_in_mute", "payment.listen_in_unmute"] * 3
    )


async def test_a_refused_mute_stops_the_card_entry_before_any_key(
    ivrpay: Ivrpay, ami_standin: AmiStandIn
) -> None:
    await _ami_up(ivrpay)
    ami_standin.refuse.add("muteaudio")
    payment, _, call, _ = await listened_in(ivrpay, ami_standin, pay_keys())
    record = await call.wait()
    ended(record, "OPERATOR", payment, callback="PJSIP/1001")
    assert not any(p.file.endswith("enter_card") for p in record.prompts)
    assert record.entries == []  # not one key taken
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "abandoned" and after["executions"] == []
