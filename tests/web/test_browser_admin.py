"""The admin's screen in a real browser: prompts replaced (and a bad upload refused, and the old
file restored), users and API keys managed; an operator refused from every admin page."""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivrpay import store
from ivrpay.sounds.catalogue import prompt_file
from tests.web.conftest import CONSOLE_ERRORS, Screen, shot, signed_in_page

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_PAGES = ["/admin/users", "/admin/keys", "/admin/prompts", "/admin/reviews", "/admin/audit"]


def wav(seconds: float, rate: int = 8000, width: int = 2, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(seconds * rate) * channels * (width // 2 or 1))
    return out.getvalue()


async def test_an_operator_is_refused_from_every_admin_page(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "opera", "en")
    assert await page.query_selector("a[href='/admin/users']") is None  # not even linked
    for path in ADMIN_PAGES:
        response = await page.goto(screen.url + path)
        assert response.status == 403, path
        assert await page.inner_text("#error") == "This page is for administrators only."
    await page.screenshot(path=shot("admin-refused-operator"))
    await page.context.close()


async def test_a_prompt_is_replaced_a_bad_upload_refused_and_the_old_one_restored(
    browser: Any, screen: Screen, tmp_path: Path
) -> None:
    sounds = screen.settings.sounds_dir
    target = prompt_file(sounds, "ja", "welcome")
    shipped = target.read_bytes()
    page = await signed_in_page(browser, screen, "admin", "ja")
    await page.goto(screen.url + "/admin/prompts")
    assert "ありません" in await page.inner_text("#missing")  # every prompt is there
    cell = "#cell-ja-welcome"
    assert await page.get_attribute(f"{cell} audio", "src") == "/admin/prompts/ja/welcome.wav"
    audio = await page.request.get(screen.url + "/admin/prompts/ja/welcome.wav")
    assert audio.status == 200 and await audio.body() == shipped  # what the player plays

    refused = [
        ("stereo.wav", wav(1.0, channels=2), "2 channels, not mono"),
        ("fast.wav", wav(1.0, rate=16000), "16000 Hz, not 8000 Hz"),
        ("long.wav", wav(screen.settings.prompt_max_s + 1), "longer than"),
        ("notes.wav", b"just some text, not audio", "not a WAV file"),
    ]
    for name, data, words in refused:
        path = tmp_path / name
        path.write_bytes(data)
        await page.set_input_files(f"{cell} input[type=file]", str(path))
        await page.click(f"{cell} form.upload button")
        await page.wait_for_selector("#prompt-error")
        assert words in await page.inner_text("#prompt-error-detail"), name
        assert "このファイルは使えません" in await page.inner_text("#prompt-error")
        assert target.read_bytes() == shipped  # nothing changed
    await page.screenshot(path=shot("prompt-refused"))

    good = tmp_path / "welcome.wav"
    good.write_bytes(wav(1.5))
    await page.set_input_files(f"{cell} input[type=file]", str(good))
    await page.click(f"{cell} form.upload button")
    await page.wait_for_selector("#done")
    assert target.read_bytes() == good.read_bytes()
    backup = sounds / "ja" / "ivrpay-backup" / "welcome.wav"
    assert backup.read_bytes() == shipped
    assert await page.query_selector(f"{cell} button.restore") is not None
    await page.screenshot(path=shot("prompt-replaced"))

    await page.click(f"{cell} button.restore")
    await page.wait_for_selector("#done")
    assert target.read_bytes() == shipped
    actions = [a["action"] for a in (await store.screen.search_audit(screen.pool))[0]]
    assert actions[:2] == ["prompt_restored", "prompt_replaced"]
    assert [e for e in CONSOLE_ERRORS[page] if "status of 422" not in e] == []  # the refusals
    await page.context.close()


async def test_users_and_api_keys_are_managed(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "admin", "en")
    await page.goto(screen.url + "/admin/users")
    await page.fill("#new-name", "newbie")
    await page.select_option("#new-role", "operator")
    await page.fill("#new-password", "short")
    await page.click("#add")
    await page.wait_for_selector("#admin-error")
    assert "at least 8" in await page.inner_text("#admin-error")
    await page.fill("#new-name", "newbie")
    await page.fill("#new-password", "newbie-pass-1")
    await page.click("#add")
    await page.wait_for_selector("tr[data-user=newbie]")
    assert await store.authenticate_user(screen.pool, "newbie", "newbie-pass-1") is not None
    await page.click("tr[data-user=newbie] button.danger")  # disable
    await page.wait_for_selector("#done")
    assert await store.authenticate_user(screen.pool, "newbie", "newbie-pass-1") is None

    await page.goto(screen.url + "/admin/keys")
    await page.fill("#key-name", "core-system")
    await page.fill("#key-webhook", "https://core.example/hooks")
    await page.click("#create")
    await page.wait_for_selector("#new-key")
    key = await page.inner_text("#new-key")
    assert re.fullmatch(r"ivp_\S+", key)
    client = await store.get_api_client_by_key(screen.pool, key)
    assert client is not None and client["webhook_url"] == "https://core.example/hooks"
    await page.screenshot(path=shot("admin-key-created"))
    await page.goto(screen.url + "/admin/keys")  # shown once: not on the next visit
    assert key not in await page.content()
    assert await page.query_selector("tr[data-client=core-system]") is not None

    # Revoked with a second click: the API refuses the key from the next request on.
    api = f"{screen.url}/api/v1/payments?order_id=none"
    bearer = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=bearer) as http:
        async with http.get(api) as r:
            assert r.status == 200
        await page.click("tr[data-client=core-system] button[data-revoke]")
        await page.wait_for_selector("#confirm-revoke")
        async with http.get(api) as r:
            assert r.status == 200  # not before the second click
        await page.click("#confirm-revoke-button")
        await page.wait_for_selector("#done")
        assert "revoked" in await page.inner_text("tr[data-client=core-system]")
        assert await page.query_selector("tr[data-client=core-system] button[data-revoke]") is None
        async with http.get(api) as r:
            assert r.status == 401
    await page.context.close()
