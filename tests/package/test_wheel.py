"""The wheel as a site installs it: built from the sources, installed into a fresh venv outside the
checkout, then migrate, serve with the sandbox gateway, one call to a succeeded payment, and
``sounds install``, all through the installed ``ivrpay`` command.

The wheel is built and installed once per run (module fixture). Its dependencies come from a
wheelhouse under ``var/wheelhouse`` that later runs reuse (filled from the index with the exact
versions of ``constraints.txt`` only when it lacks one).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

import ivrpay
from ivrpay.config import REPO_ROOT
from ivrpay.sounds.catalogue import load_prompts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WHEELHOUSE = REPO_ROOT / "var" / "wheelhouse"
# What a build must not see: local state, caches and the checkout's own venv.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", "artifacts",
)  # fmt: skip


@dataclass(frozen=True)
class Installed:
    bin: Path  # the venv's bin/
    home: Path  # a working folder outside the checkout
    seconds: float  # build + install

    def env(self, **extra: str) -> dict[str, str]:
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("IVRPAY_", "PYTHON", "VIRTUAL_ENV"))
        }
        return {**keep, "IVRPAY_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **extra}


def _run(*cmd: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, check=False, **kw
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    started = time.monotonic()
    base = tmp_path_factory.mktemp("wheel")
    src, dist, venv, home = base / "src", base / "dist", base / "venv", base / "home"
    # A copy of the sources as git would give them (links kept), so no stale build/ gets in.
    shutil.copytree(REPO_ROOT, src, symlinks=True, ignore=_NOT_SOURCES)
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    _run(*pip, "wheel", "--no-deps", "--wheel-dir", dist, src)
    wheel = next(dist.glob("ivrpay-*.whl"))
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    install = (*pip, "--python", venv / "bin" / "python", "install", "--no-index")
    links = ("--find-links", WHEELHOUSE, "--find-links", dist, f"ivrpay=={ivrpay.__version__}")
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    try:
        _run(*install, *links)
    except AssertionError:  # the wheelhouse lacks a dependency: fetch the pinned versions
        constraints = REPO_ROOT / "constraints.txt"
        _run(*pip, "download", "--only-binary", ":all:", "-c", constraints, "-d", WHEELHOUSE, wheel)
        for own in WHEELHOUSE.glob("ivrpay-*"):
            own.unlink()
        _run(*install, *links)
    home.mkdir()
    yield Installed(venv / "bin", home, time.monotonic() - started)


def test_the_installed_package_is_not_the_checkout(installed: Installed) -> None:
    print(f"wheel built and installed in {installed.seconds:.1f} s")
    where = _run(
        installed.bin / "python",
        "-c",
        "import ivrpay, ivrpay.config as c; print(ivrpay.__file__); print(c.SQL_DIR)",
        cwd=installed.home,
        env=installed.env(),
    ).stdout.split()
    assert all(str(REPO_ROOT) not in p for p in where), where
    assert all(str(installed.bin.parent) in p for p in where), where
    version = _run(installed.bin / "ivrpay", "--version", env=installed.env()).stdout
    assert version.strip() == f"ivrpay {ivrpay.__version__}"
    typed = installed.bin.parent.glob("lib/python*/site-packages/ivrpay/py.typed")
    assert next(typed, None) is not None


def test_sounds_install_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    target = tmp_path / "asterisk-sounds"
    out = _run(
        installed.bin / "ivrpay", "sounds", "install", target, cwd=installed.home,
        env=installed.env(IVRPAY_LANGUAGES="ja,en"),
    ).stdout  # fmt: skip
    ids = load_prompts(REPO_ROOT / "sounds")
    assert out.splitlines()[0].endswith(
        f"{1 + 2 * len(ids)} new, 0 updated, 0 unchanged, 0 kept, 0 overwritten"
    )
    for lang in ("ja", "en"):
        assert sorted(p.stem for p in (target / lang / "ivrpay").glob("*.wav")) == sorted(ids)


async def _ivrpay(inst: Installed, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        inst.bin / "ivrpay",
        *args,
        cwd=inst.home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _event(proc: asyncio.subprocess.Process, name: str) -> dict[str, Any]:
    """The first JSON log line of ``name`` on the process's stderr."""
    assert proc.stderr is not None
    while True:
        line = await proc.stderr.readline()
        assert line, f"the process ended before logging {name}"
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if name in (event.get("event"), event.get("msg")):
            return dict(event)


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in reversed(started):
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_migrate_serve_and_one_paid_call(
    installed: Installed, empty_schema: Any, processes: list[asyncio.subprocess.Process]
) -> None:
    url = await empty_schema()  # a database schema with nothing in it
    env = installed.env(IVRPAY_DATABASE_URL=url)

    rc, out, err = await _ivrpay(installed, env, "migrate")
    shipped = sorted(p.name for p in (REPO_ROOT / "sql").glob("[0-9][0-9][0-9]_*.sql"))
    assert rc == 0, err[-2000:]
    assert out.strip() == "applied: " + ", ".join(shipped)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM payments") == 0
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert recorded == len(shipped)
    finally:
        await conn.close()

    async def start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            installed.bin / "ivrpay", *args, cwd=installed.home, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        processes.append(proc)
        return proc

    gateway = await start("sandbox-gateway", "--listen", "127.0.0.1:0", env=env)
    async with asyncio.timeout(60):
        gateway_url = (await _event(gateway, "sandbox_gateway_listening"))["url"]
    env.update(
        IVRPAY_GATEWAY_URL=gateway_url,
        IVRPAY_SHOP_ID="tshop00000001",
        IVRPAY_SHOP_PASS="pass",
        IVRPAY_SITE_ID="tsite00000001",
        IVRPAY_SITE_PASS="pass",
        IVRPAY_SECRET_KEY="wheel-test",
        IVRPAY_AGI_LISTEN="127.0.0.1:0",
        IVRPAY_HTTP_LISTEN="127.0.0.1:0",
    )
    server = await start("serve", env=env)
    async with asyncio.timeout(60):
        started = await _event(server, "ivrpay.started")
    agi, http = started["agi"], started["http"]

    rc, out, err = await _ivrpay(installed, env, "apikey", "create", "wheel")
    assert rc == 0, err[-2000:]
    key = out.splitlines()[0]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        async with session.post(
            f"http://{http}/api/v1/payments", json={"order_id": "wheel-1", "amount": 1200}
        ) as resp:
            assert resp.status == 201, await resp.text()
            payment = await resp.json()
        keys = "4111111111111111# 1230 123 1"
        rc, out, err = await _ivrpay(
            installed, env, "call", "--code", payment["code"], "--keys", keys, "--agi", agi
        )
        assert rc == 0, out + err[-2000:]
        assert "IVRPAY_STATUS=SUCCEEDED" in out
        async with session.get(f"http://{http}/api/v1/payments/{payment['id']}") as resp:
            assert (await resp.json())["status"] == "succeeded"
