"""The whole service with its screen, for browser tests (Playwright driving Debian's chromium) and
HTTP tests of the screen.

One service and one browser per test module (``loop_scope="module"``): starting chromium costs
about a second, and each test opens its own browser context (fresh cookies). The tables are
emptied when a module's service starts; tests use order ids of their own.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from ivrpay import store
from ivrpay.config import REPO_ROOT, HostPort, Settings
from ivrpay.sandbox import Sandbox, start_sandbox
from ivrpay.service import Service
from ivrpay.simulator import SimulatedCall
from tests.support.db import _empty_all

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CONSOLE_ERRORS: dict[Any, list[str]] = {}
PASSWORDS = {"opera": "operator-pass-1", "admin": "admin-pass-1", "opera2": "operator-pass-2"}


@dataclass
class Screen:
    service: Service
    sandbox: Sandbox
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.service.settings

    @property
    def pool(self) -> Any:
        return self.service.db.pool

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    def call(self, keys: list[str], *, code: str, language: str = "en") -> SimulatedCall:
        """A caller transferred with ``code``, not yet started."""
        return SimulatedCall(
            "127.0.0.1",
            self.service.agi.port,
            args=(code, ""),
            keys=keys,
            language=language,
            sounds_dir=self.settings.sounds_dir,
        )


def screen_settings(database_url: str, sounds_dir: Path, **changes: Any) -> Settings:
    base = Settings.from_env({}).replace(
        database_url=database_url,
        agi_listen=HostPort("127.0.0.1", 0),
        http_listen=HostPort("127.0.0.1", 0),
        gateway_timeout_s=2.0,
        gateway_connect_timeout_s=1.0,
        digit_timeout_ms=3000,
        drain_s=1.0,
        worker_interval_s=0.2,
        secret_key="test-secret-key-of-the-screen",
        sounds_dir=sounds_dir,
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def screen_overrides() -> dict[str, Any]:
    """Settings a test module wants changed (override this fixture)."""
    return {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def screen(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, screen_overrides: dict[str, Any]
) -> AsyncIterator[Screen]:
    tmp = tmp_path_factory.mktemp("screen")
    # The prompts tests replace files: they work on a copy of the shipped sounds.
    sounds = tmp / "sounds"
    shutil.copytree(REPO_ROOT / "sounds", sounds)
    pool = await store.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await _empty_all(conn)
    finally:
        await pool.close()
    sandbox = await start_sandbox("127.0.0.1", 0)
    service = Service(
        screen_settings(database_url, sounds, **screen_overrides),
        var_dir=tmp,
        gateway_url=sandbox.url,
    )
    await service.start()
    try:
        s = Screen(service, sandbox)
        for name, password in PASSWORDS.items():
            role = "admin" if name == "admin" else "operator"
            s.users[name] = await store.create_user(service.db.pool, name, role, password)
        yield s
    finally:
        await service.stop()
        await sandbox.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    playwright = pytest.importorskip("playwright.async_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does it)")
    async with playwright.async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            yield b
        finally:
            await b.close()


async def signed_in_page(browser: Any, screen: Screen, name: str, lang: str = "ja") -> Any:
    """A fresh browser context signed in as ``name`` (screen language ``lang``)."""
    context = await browser.new_context(locale="ja-JP", viewport={"width": 1200, "height": 900})
    context.set_default_timeout(15000)
    page = await context.new_page()
    # Every console error (a CSP refusal, a missing file) is kept: tests assert there are none.
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    CONSOLE_ERRORS[page] = errors
    await page.goto(screen.url + "/")
    if lang != "ja":
        await page.click("#switch-lang")
        await page.wait_for_selector(f"html[lang={lang}]")
    await page.fill("#name", name)
    await page.fill("#password", PASSWORDS[name])
    await page.click("#signin")
    try:
        await page.wait_for_selector("#who")
    except Exception:
        await page.screenshot(path=shot(f"failed-signin-{name}"))
        raise AssertionError(
            f"not signed in: {page.url}\n{await page.inner_text('body')}"
        ) from None
    if await page.get_attribute("html", "lang") != lang:  # the user's own choice of before
        await page.click("#switch-lang")
        await page.wait_for_selector(f"html[lang={lang}]")
    return page


def shot(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"


@pytest_asyncio.fixture(loop_scope="module")
async def http(screen: Screen) -> AsyncIterator[aiohttp.ClientSession]:
    """A cookie-keeping HTTP client (no redirects followed unless asked)."""
    jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1 is an IP address
    async with aiohttp.ClientSession(base_url=screen.url, cookie_jar=jar) as session:
        yield session


async def form_csrf(session: aiohttp.ClientSession, path: str) -> str:
    async with session.get(path) as r:
        text = await r.text()
    m = re.search(r'name="csrf" value="([^"]+)"', text)
    assert m, text[:500]
    return m.group(1)


async def http_sign_in(
    session: aiohttp.ClientSession, name: str, password: str | None = None
) -> int:
    csrf = await form_csrf(session, "/signin")
    data = {"csrf": csrf, "name": name, "password": password or PASSWORDS[name]}
    async with session.post("/signin", data=data, allow_redirects=False) as r:
        return r.status
