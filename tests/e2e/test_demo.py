"""The README's walk-through, as a newcomer runs it: ``ivrpay demo`` on the embedded database in
one process, then the API and ``ivrpay call`` from another."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not under pytest's tmp dir: as root the embedded server runs as another user, which must
    # be able to reach its data folder.
    path = Path(tempfile.mkdtemp(prefix="ivrpay-demo-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVRPAY_")}
    env.update(IVRPAY_AGI_LISTEN="127.0.0.1:0", IVRPAY_HTTP_LISTEN="127.0.0.1:0")
    return env


async def test_the_readme_walk_through(workdir: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        "demo",
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_demo_env(),
    )
    assert demo.stdout is not None
    try:
        printed = ""
        async with asyncio.timeout(90):
            while "curl" not in printed:
                line = await demo.stdout.readline()
                assert line, "the demo ended before it was ready"
                printed += line.decode()
        agi_port = re.search(r"agi://127\.0\.0\.1:(\d+)/pay", printed)
        sign_in = re.search(r"sign-in: (\S+) / (\S+)\)", printed)
        assert agi_port and sign_in

        env = dict(
            line.split("=", 1) for line in (workdir / "var" / "demo.env").read_text().splitlines()
        )
        headers = {"Authorization": f"Bearer {env['IVRPAY_API_KEY']}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            body = {"order_id": "demo-1", "amount": 12800}
            async with http.post(f"{env['IVRPAY_HTTP']}/api/v1/payments", json=body) as r:
                assert r.status == 201
                code = (await r.json())["code"]

            call = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ivrpay",
                "call",
                "--agi",
                f"127.0.0.1:{agi_port.group(1)}",
                "--code",
                code,
                "--keys",
                "4111111111111111# 1230 123 1",
                stdout=subprocess.PIPE,
                env=_demo_env(),
            )
            out, _ = await call.communicate()
            assert call.returncode == 0
            assert "IVRPAY_STATUS=SUCCEEDED" in out.decode()
            assert "4111111111111111" not in out.decode()

            url = f"{env['IVRPAY_HTTP']}/api/v1/payments?order_id=demo-1"
            async with http.get(url) as r:
                items = (await r.json())["items"]
        assert [(p["status"], p["card"]) for p in items] == [
            ("succeeded", {"brand": "VISA", "last4": "1111"})
        ]
        await _screen_sign_in(env["IVRPAY_HTTP"], *sign_in.groups())
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                await demo.wait()
    assert demo.returncode == 0


async def _screen_sign_in(base: str, name: str, password: str) -> None:
    """The printed sign-in opens the screen: / leads to sign-in, the admin lands on the list."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as web:
        async with web.get("/") as r:
            assert r.status == 200 and str(r.url).endswith("/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert csrf
        form = {"csrf": csrf.group(1), "name": name, "password": password}
        async with web.post("/signin", data=form) as r:
            assert r.status == 200 and str(r.url).endswith("/payments")
            assert "demo-1" in await r.text()
