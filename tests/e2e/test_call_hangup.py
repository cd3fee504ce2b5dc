"""The caller hangs up (product.md, End states: "caller hung up → abandoned (step recorded)
unless the gateway call was sent"): at every step, during an error prompt, while the gateway
works — where the payment still ends as the gateway decided."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ivrpay.simulator import SimulatedCall
from tests.e2e.callkit import (
    EXPIRY,
    VISA,
    call_released,
    heard,
    held_call,
    hung_up,
    pay_keys,
    simulated,
)
from tests.e2e.conftest import Ivrpay

STEPS = [
    ("amount", ["~!"], {}),  # during the greeting and the amount
    ("card_number", ["!"], {}),
    ("card_number", ["4111111111111112#", "~!"], {"card_number": 1}),  # during the error prompt
    ("expiry", [f"{VISA}#", "!"], {}),
    ("security_code", [f"{VISA}#", EXPIRY, "!"], {}),
    ("confirm", [f"{VISA}#", EXPIRY, "123", "!"], {}),
    ("confirm", [f"{VISA}#", EXPIRY, "123", "~!"], {}),  # during "card ending 1 1 1 1"
]


@pytest.mark.parametrize(
    ("step", "keys", "attempts"), STEPS, ids=[f"{s[0]}-{i}" for i, s in enumerate(STEPS)]
)
async def test_a_hang_up_abandons_the_payment_at_its_step(
    ivrpay: Ivrpay, step: str, keys: list[str], attempts: dict[str, int]
) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(keys, code=payment["code"])

    hung_up(record)
    heard(record)
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["progress"] == {"step": step, "attempts": attempts}
    assert after["call"]["ended_at"] is not None
    assert after["executions"] == []
    assert after["error"] is None
    # A new call takes it up.
    again = await ivrpay.call(pay_keys(), code=payment["code"])
    assert again.variables["IVRPAY_STATUS"] == "SUCCEEDED"


async def test_a_hang_up_before_the_payment_is_known_touches_nothing(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(["!"])

    hung_up(record)
    assert heard(record) == ["enter_code"]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "pending"
    assert after["call"] is None


async def test_a_hang_up_at_the_decline_choice(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call([*pay_keys("4000000000000002"), "!"], code=payment["code"])

    hung_up(record)
    assert heard(record)[-2:] == ["declined", "declined_options"]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["progress"]["step"] == "result"
    assert [e["outcome"] for e in after["executions"]] == ["declined"]
    assert after["error"]["code"] == "42G020000"


async def test_a_hang_up_during_please_wait_sends_nothing(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(
        pay_keys(), code=payment["code"], hang_up_at="STREAM FILE ivrpay/please_wait"
    )

    hung_up(record)
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["progress"]["step"] == "processing"
    assert ivrpay.sandbox.state.orders(payment["order_id"]) == []
    assert all(e["outcome"] is None for e in after["executions"])
    # Nothing went to the gateway: no execution to list, none used up.
    assert after["executions"] == []


async def test_hang_ups_during_please_wait_do_not_use_up_the_executions(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    for _ in range(ivrpay.settings.max_executions_per_payment):
        record = await ivrpay.call(
            pay_keys(), code=payment["code"], hang_up_at="STREAM FILE ivrpay/please_wait"
        )
        hung_up(record)

    again = await ivrpay.call(pay_keys(), code=payment["code"])
    assert again.variables["IVRPAY_STATUS"] == "SUCCEEDED", again
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert [(e["order_id"], e["outcome"]) for e in after["executions"]] == [
        (f"{payment['order_id']}-01", "succeeded")
    ]


@pytest.mark.parametrize("exit_on_hangup", [False, True], ids=["sighup", "agiexitonhangup"])
async def test_a_hang_up_while_the_gateway_works_still_ends_succeeded(
    ivrpay: Ivrpay, exit_on_hangup: bool
) -> None:
    payment = await ivrpay.create_payment(language="en")
    call, music = await held_call(
        ivrpay, pay_keys(), "SET MUSIC ON", code=payment["code"], exit_on_hangup=exit_on_hangup
    )
    await call.hang_up()  # the caller is gone while ivrpay waits for the gateway
    music.release()
    record = await call.wait()

    hung_up(record)
    heard(record)
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "VISA", "last4": "1111"}
    assert after["result"]["approve"]
    assert [e["outcome"] for e in after["executions"]] == ["succeeded"]
    assert after["call"]["ended_at"] is not None
    assert ivrpay.sandbox.state.successes(payment["order_id"]) == 1


async def test_a_hang_up_during_processing_after_the_answer(ivrpay: Ivrpay) -> None:
    """An unprompted HANGUP line arrives while the server waits (Asterisk's AGISIGHUP)."""
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(pay_keys(), code=payment["code"], hang_up_at="SET MUSIC ON")

    hung_up(record)
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["progress"]["step"] == "result"


async def test_a_hang_up_during_processing_of_a_decline(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    keys = pay_keys("4000000000000002")
    record = await ivrpay.call(keys, code=payment["code"], hang_up_at="SET MUSIC ON")

    hung_up(record)
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["error"] == {
        "code": "42G020000",
        "category": "declined",
        "message": after["error"]["message"],
    }
    assert [e["outcome"] for e in after["executions"]] == ["declined"]


async def test_a_hang_up_during_the_result_keeps_the_success(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(
        pay_keys(), code=payment["code"], hang_up_at="STREAM FILE ivrpay/paid"
    )

    assert record.hung_up
    assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED"
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"


async def test_the_caller_gone_mid_command_with_agiexitonhangup(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    call: SimulatedCall = simulated(
        ivrpay, [f"{VISA}#", "!"], code=payment["code"], exit_on_hangup=True
    )
    await call.start()
    record = await call.wait()

    hung_up(record)
    after = await call_released(ivrpay, payment["id"])
    assert after["status"] == "abandoned"
    assert after["progress"]["step"] == "expiry"


async def test_a_missing_prompt_file_is_a_fault_not_a_hang_up(
    ivrpay: Ivrpay, tmp_path: Path
) -> None:
    """GET DATA answers -1 and no HANGUP follows: the caller is still there and hears an apology."""
    sounds = tmp_path / "sounds"
    shutil.copytree(ivrpay.settings.sounds_dir, sounds)
    (sounds / "en" / "ivrpay" / "enter_expiry.wav").unlink()
    payment = await ivrpay.create_payment(language="en")
    record = await ivrpay.call(pay_keys(), code=payment["code"], sounds_dir=sounds)

    assert record.missing_prompts == ["en/ivrpay/enter_expiry"]
    assert not record.hung_up
    assert record.protocol_errors == []
    assert record.variables["IVRPAY_STATUS"] == "ERROR"
    assert record.variables["IVRPAY_PAYMENT_ID"] == payment["id"]
    assert [p.file for p in record.prompts][-2:] == ["ivrpay/apology", "ivrpay/connecting_back"]
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "abandoned"
    assert after["progress"]["step"] == "done"


class TestAHangUpAfterTheLastExecution:
    """The payment's last gateway execution was declined and the caller hung up before being
    told: no call can take it up again, so it ends ``failed`` / ``too_many_attempts`` (Limits),
    not ``abandoned`` (which tells the core system to transfer the caller again)."""

    @pytest.fixture
    def e2e_overrides(self) -> dict[str, Any]:
        return {"max_executions_per_payment": 1}

    @pytest.mark.parametrize("where", ["SET MUSIC ON", "SET MUSIC OFF"])
    async def test_the_payment_fails_with_too_many_attempts(
        self, ivrpay: Ivrpay, where: str
    ) -> None:
        payment = await ivrpay.create_payment(language="en")
        keys = pay_keys("4000000000000002")
        record = await ivrpay.call(keys, code=payment["code"], hang_up_at=where)

        hung_up(record)
        after = await ivrpay.payment(payment["id"])
        assert after["status"] == "failed"
        assert after["error"]["code"] == "too_many_attempts"
        assert after["error"]["category"] == "declined"
        assert [e["outcome"] for e in after["executions"]] == ["declined"]
        assert after["call"]["ended_at"] is not None
