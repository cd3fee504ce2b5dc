"""``ivrpay sandbox-gateway``: logs its URL, answers the protocol, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import aiohttp

from ivrpay.config import REPO_ROOT


def _env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("IVRPAY_")}
    return {**keep, "IVRPAY_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}


async def _read_url(stream: asyncio.StreamReader) -> str:
    while True:
        line = await stream.readline()
        assert line, "the sandbox ended before logging its URL"
        text = line.decode(errors="replace")
        if "sandbox_gateway_listening" in text:
            return str(json.loads(text)["url"])


async def test_sandbox_gateway_command() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        "sandbox-gateway",
        "--listen",
        "127.0.0.1:0",
        "--latency-ms",
        "1",
        "--jitter-ms",
        "1",
        cwd=REPO_ROOT,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        url = await asyncio.wait_for(_read_url(proc.stdout), 30)
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{url}/payment/EntryTran.idPass",
                data={"ShopID": "s", "ShopPass": "p", "OrderID": "CLI-01", "JobCd": "CHECK"},
            ) as resp:
                body = await resp.read()
        assert body.startswith(b"AccessID=")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_negative_latency_is_refused_clearly() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        "sandbox-gateway",
        "--latency-ms",
        "-5",
        cwd=REPO_ROOT,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0
    assert b"--latency-ms" in err and b"Traceback" not in err
