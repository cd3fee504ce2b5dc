"""The operator's screen in a real browser (chromium, headless): sign in, register a payment, follow
its call live to the end, cancel, capture; what the screenshots under tests/artifacts/ show is
asserted through the DOM."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import future_expiry
from tests.web.conftest import CONSOLE_ERRORS, Screen, shot, signed_in_page

pytestmark = pytest.mark.asyncio(loop_scope="module")

VISA = "4111111111111111"
DECLINED = "4000000000000002"
EXPIRY = future_expiry()


async def register(page: Any, order_id: str, amount: str = "12800", **fields: str) -> str:
    """Fill and send the new-payment form; the live page's payment id."""
    await page.goto(page.url.split("/payments")[0].split("/signin")[0] + "/payments/new")
    await page.fill("#order_id", order_id)
    await page.fill("#amount", amount)
    for name, value in fields.items():
        if name in ("job", "operation", "language", "method"):
            await page.select_option(f"#{name}", value)
        elif name == "listen_in":
            await (page.check if value == "on" else page.uncheck)("#listen_in")
        else:
            await page.fill(f"#{name}", value)
    if "callback" not in fields:
        await page.fill("#callback", "PJSIP/1001")
    await page.click("#register")
    await page.wait_for_selector("#code")
    m = re.search(r"/payments/([0-9a-f-]{36})$", page.url)
    assert m, page.url
    return m.group(1)


async def state(page: Any, step: str) -> str:
    return await page.get_attribute(f"#step-{step}", "data-state")


async def wait_state(page: Any, step: str, wanted: str) -> None:
    await page.wait_for_selector(f"#step-{step}[data-state={wanted}]")


def no_card_digits(text: str, number: str) -> None:
    """Nothing of the card but its last 4: no run of 5+ of its digits, no first 6."""
    digits = re.sub(r"\D", " ", text)
    for run in digits.split():
        if len(run) >= 5:
            assert run not in number, run
    assert number[:6] not in text
    assert number not in text


async def test_sign_in_in_japanese_lands_on_new_payment(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "opera", "ja")
    assert page.url.endswith("/payments/new")
    assert await page.get_attribute("html", "lang") == "ja"
    assert await page.inner_text("h1") == "新規決済の登録"
    assert "サインアウト" in await page.inner_text("header")
    await page.screenshot(path=shot("signin-ja-new-payment"))
    await page.context.close()


async def test_sign_in_in_english_and_the_choice_is_remembered(
    browser: Any, screen: Screen
) -> None:
    page = await signed_in_page(browser, screen, "opera2", "en")
    assert await page.inner_text("h1") == "Register a payment"
    await page.click("#signout")
    await page.wait_for_selector("#signin")
    await page.context.clear_cookies()  # a new browser: the user's choice comes from the server
    await page.goto(screen.url + "/signin")
    assert await page.get_attribute("html", "lang") == "ja"
    await page.fill("#name", "opera2")
    await page.fill("#password", "operator-pass-2")
    await page.click("#signin")
    await page.wait_for_selector("#who")
    assert await page.inner_text("h1") == "Register a payment"
    await page.context.close()


async def test_the_form_shows_the_api_s_own_words(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "opera", "en")
    await page.goto(screen.url + "/payments/new")
    await page.fill("#order_id", "bad order!")
    await page.fill("#amount", "12.5")
    await page.fill("#callback", "DAHDI/1")
    await page.click("#register")
    await page.wait_for_selector("#form-errors")
    assert await page.inner_text("#error-order_id") == "must be 1–24 of A-Z a-z 0-9 -"
    assert await page.inner_text("#error-amount") == "must be an integer"
    assert "IVRPAY_CALLBACK_PATTERN" in await page.inner_text("#error-callback")
    await page.screenshot(path=shot("new-payment-errors"))
    # In Japanese: the same words of the API, after their Japanese sense.
    await page.click("#switch-lang")
    await page.wait_for_selector("html[lang=ja]")
    await page.fill("#order_id", "web-form-1")
    await page.fill("#amount", "abc")
    await page.fill("#callback", "PJSIP/1001")
    await page.click("#register")
    await page.wait_for_selector("#form-errors")
    assert await page.inner_text("#error-amount") == "整数で入力してください（must be an integer）"
    assert await page.query_selector("#error-order_id") is None
    await page.context.close()


async def test_a_call_followed_live_to_approved(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "opera", "ja")
    pid = await register(page, "web-live-1")
    code = await page.inner_text("#code")
    assert re.fullmatch(r"[0-9]{6}", code)
    assert await page.inner_text("#transfer-to") == "8" + code
    assert await page.inner_text("#total") == "¥12,800"
    assert await state(page, "waiting") == "current"
    await page.screenshot(path=shot("live-1-waiting"))

    call = screen.call([f"{VISA}#", EXPIRY, "123", "1"], code=code)
    holds = [
        ("GET DATA ivrpay/enter_card", "connected", "done", "live-2-connected"),
        ("GET DATA ivrpay/enter_expiry", "card_number", "done", "live-3-card-number"),
        ("GET DATA ivrpay/enter_security_code", "expiry", "done", "live-4-expiry"),
        ("GET DATA ivrpay/confirm", "security_code", "done", "live-5-security-code"),
        ("STREAM FILE ivrpay/please_wait", "processing", "current", "live-6-processing"),
    ]
    points = [call.pause_at(match) for match, *_ in holds]
    await call.start()
    for point, (_match, step, wanted, name) in zip(points, holds, strict=True):
        await point.reached()
        await wait_state(page, step, wanted)
        await page.screenshot(path=shot(name))
        if step == "connected":
            assert await state(page, "card_number") == "current"
        if step in ("card_number", "expiry", "security_code"):
            assert await page.inner_text(f"#attempts-{step}") == "1回目"
        assert await page.query_selector("#result") is None
        point.release()
    record = await call.wait()
    assert record.variables.get("IVRPAY_STATUS") == "SUCCEEDED"

    await page.wait_for_selector("#result[data-outcome=succeeded]")
    await page.screenshot(path=shot("live-7-approved"))
    assert await page.inner_text("#result h2") == "承認されました"
    assert await page.inner_text("#brand") == "VISA"
    assert await page.inner_text("#last4") == "1111"
    assert re.fullmatch(r"\S+", await page.inner_text("#approve"))
    for step in ("waiting", "connected", "card_number", "expiry", "security_code", "processing"):
        assert await state(page, step) == "done", step
    no_card_digits(await page.content(), VISA)
    assert pid in page.url
    assert CONSOLE_ERRORS[page] == []  # the CSP refused nothing, no file was missing
    await page.context.close()


async def test_a_decline_is_shown_with_its_reason(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "opera", "en")
    await register(page, "web-decline-1")
    code = await page.inner_text("#code")
    # Declined; the caller then asks for the operator (2).
    call = screen.call([f"{DECLINED}#", EXPIRY, "123", "1", "2"], code=code)
    await call.start()
    record = await call.wait()
    assert record.variables.get("IVRPAY_STATUS") == "FAILED"
    await page.wait_for_selector("#result[data-outcome=failed]")
    await page.screenshot(path=shot("live-declined"))
    assert await page.inner_text("#error-code") == "42G020000"
    assert "Insufficient balance." in await page.inner_text("#reason")
    assert await page.query_selector("#brand") is None
    no_card_digits(await page.content(), DECLINED)
    await page.context.close()


async def test_a_cancel_from_the_live_page(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "opera", "en")
    pid = await register(page, "web-cancel-1")
    assert await page.is_disabled("#take-back")
    assert "AMI" in await page.inner_text("#take-back-why")
    await page.click("#cancel")
    await page.wait_for_selector("#result[data-outcome=canceled]")
    assert await page.inner_text("#done") == "Canceled."
    await page.screenshot(path=shot("live-canceled"))
    assert await page.query_selector("#cancel") is None
    payment = await _payment(screen, pid)
    assert payment["status"] == "canceled"
    await page.context.close()


async def _payment(screen: Screen, pid: str) -> dict[str, Any]:
    from ivrpay import store

    payment = await store.get_payment(screen.pool, pid)
    assert payment is not None
    return payment


async def paid(screen: Screen, page: Any, order_id: str, **fields: str) -> str:
    """A payment registered on the page and paid with the VISA test card; its id."""
    pid = await register(page, order_id, **fields)
    call = screen.call([f"{VISA}#", EXPIRY, "123", "1"], code=await page.inner_text("#code"))
    await call.start()
    record = await call.wait()
    assert record.variables.get("IVRPAY_STATUS") == "SUCCEEDED"
    await page.wait_for_selector("#result[data-outcome=succeeded]")
    return pid


async def test_a_capture_is_confirmed_by_a_second_click(browser: Any, screen: Screen) -> None:
    page = await signed_in_page(browser, screen, "opera", "en")
    pid = await paid(screen, page, "web-capture-1")
    assert await page.inner_text("#settlement") == "authorized"
    await page.click("#capture")
    await page.wait_for_selector("#confirm")
    assert (await _payment(screen, pid))["settlement"] == "authorized"  # nothing done yet
    await page.screenshot(path=shot("live-capture-confirm"))
    await page.click("#confirm-capture")
    await page.wait_for_selector("#done")
    assert await page.inner_text("#done") == "Captured."
    assert await page.inner_text("#settlement") == "captured"
    assert await page.query_selector("#capture") is None
    assert await page.query_selector("#refund") is not None
    await page.screenshot(path=shot("live-captured"))
    assert (await _payment(screen, pid))["settlement"] == "captured"
    await page.context.close()


async def test_todays_list_filters_and_exports_csv_in_both_encodings(
    browser: Any, screen: Screen
) -> None:
    page = await signed_in_page(browser, screen, "opera2", "ja")
    await paid(screen, page, "web-csv-1")
    await register(page, "web-csv-2", amount="500")
    await page.goto(screen.url + "/payments")
    await page.fill("#f-order", "web-csv")
    await page.click("#filter")
    await page.wait_for_selector("#payments tbody tr[data-order='web-csv-2']")
    orders = await page.eval_on_selector_all(
        "#payments tbody tr", "rows => rows.map(r => r.dataset.order)"
    )
    assert orders == ["web-csv-2", "web-csv-1"]  # newest first
    assert "2件" in await page.inner_text("#count")
    await page.screenshot(path=shot("list-filtered"))

    for link, encoding, newline in (
        ("#csv-utf8", "utf-8-sig", "\n"),
        ("#csv-sjis", "cp932", "\r\n"),
    ):
        async with page.expect_download() as info:
            await page.click(link)
        download = await info.value
        raw = await asyncio.to_thread(Path(await download.path()).read_bytes)
        if encoding == "utf-8-sig":
            assert raw.startswith(b"\xef\xbb\xbf")
        else:
            assert not raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\r\n") == 3
        rows = list(csv.reader(io.StringIO(raw.decode(encoding), newline="")))
        assert rows[0][:3] == ["created_at", "order_id", "status"], rows[0]
        by_order = {r[1]: r for r in rows[1:]}
        assert set(by_order) == {"web-csv-1", "web-csv-2"}
        assert by_order["web-csv-1"][2] == "succeeded" and by_order["web-csv-1"][10] == "VISA"
        assert by_order["web-csv-2"][5] == "500"
        text = raw.decode(encoding)
        assert newline in text
        # No card digits at all: not the number, not its last 4.
        assert VISA[:6] not in text and all(cell != VISA[-4:] for r in rows for cell in r)
    await page.context.close()
