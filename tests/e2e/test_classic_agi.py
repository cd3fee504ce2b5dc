"""Classic AGI: ``ivrpay agi`` as Asterisk starts it, one process per call over stdin/stdout, the
caller stand-in's conversation over the pipes, to a succeeded payment."""

from __future__ import annotations

import asyncio
import os
import sys

from ivrpay.simulator.call import SimulatedCall
from ivrpay.simulator.env import ChannelSpec
from tests.e2e.conftest import Ivrpay

KEYS = ["4111111111111111#", "1230", "123", "1"]


async def classic_call(ivrpay: Ivrpay, keys: list[str], code: str) -> tuple[int, SimulatedCall]:
    """One ``ivrpay agi`` process for one call; its exit status and the call."""
    env = {
        **os.environ,
        "IVRPAY_DATABASE_URL": ivrpay.settings.database_url or "",
        "IVRPAY_GATEWAY_URL": ivrpay.sandbox.url,
        "IVRPAY_SHOP_ID": ivrpay.settings.shop_id,
        "IVRPAY_SHOP_PASS": ivrpay.settings.shop_pass,
        "IVRPAY_SITE_ID": ivrpay.settings.site_id,
        "IVRPAY_SITE_PASS": ivrpay.settings.site_pass,
        "IVRPAY_SOUNDS_DIR": str(ivrpay.settings.sounds_dir),
        "IVRPAY_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        "agi",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    call = SimulatedCall(
        "localhost",
        0,
        args=(code, ""),
        keys=keys,
        channel=ChannelSpec(language="en", request="/usr/local/bin/ivrpay-agi"),
        sounds_dir=ivrpay.settings.sounds_dir,
    )
    await call.start(streams=(proc.stdout, proc.stdin))
    await call.wait()
    return await asyncio.wait_for(proc.wait(), 30), call


async def test_a_classic_agi_process_takes_a_payment(ivrpay: Ivrpay) -> None:
    payment = await ivrpay.create_payment(language="en")
    status, call = await classic_call(ivrpay, KEYS, payment["code"])

    assert call.record.variables["IVRPAY_STATUS"] == "SUCCEEDED", call.record
    assert status == 0
    after = await ivrpay.payment(payment["id"])
    assert after["status"] == "succeeded"
    assert after["card"] == {"brand": "VISA", "last4": "1111"}
    assert after["call"]["ended_at"] is not None  # the process released its claim
    assert ivrpay.sandbox.state.successes(payment["order_id"]) == 1


async def test_a_classic_agi_process_without_a_call_exits_non_zero(ivrpay: Ivrpay) -> None:
    env = {**os.environ, "IVRPAY_DATABASE_URL": ivrpay.settings.database_url or ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivrpay", "agi", stdin=asyncio.subprocess.PIPE, env=env
    )
    await proc.communicate(b"not an agi environment\n")
    assert proc.returncode == 1
