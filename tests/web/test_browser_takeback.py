"""The live page's take-back button (issue 11) with an AMI link to the stand-in: the operator
clicks it while the caller keys the card, the PBX redirects the call, the page shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ivrpay import store
from tests.support.ami import AmiStandIn
from tests.web.conftest import CONSOLE_ERRORS, Screen, shot, signed_in_page
from tests.web.test_browser_operator import EXPIRY, VISA, no_card_digits, register, wait_state

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def standin() -> AsyncIterator[AmiStandIn]:
    s = AmiStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture(scope="module")
def screen_overrides(standin: AmiStandIn) -> dict[str, Any]:
    return {"ami_url": standin.url, "ami_backoff_s": (0.01,)}


async def test_the_operator_takes_the_caller_back(
    browser: Any, screen: Screen, standin: AmiStandIn
) -> None:
    assert screen.service.takeback is not None
    await screen.service.takeback.link.wait_up()
    page = await signed_in_page(browser, screen, "opera", "en")
    pid = await register(page, "web-takeback-1")
    code = await page.inner_text("#code")
    assert await page.is_disabled("#take-back")  # nobody in the IVR yet

    call = screen.call([f"{VISA}#", EXPIRY], code=code)
    held = call.pause_at("GET DATA ivrpay/enter_expiry")
    await call.start()
    await held.reached()
    await wait_state(page, "card_number", "done")
    channel = (await store.get_payment(screen.pool, pid))["call"]["channel"]  # type: ignore[index]
    standin.channels.add(channel)

    async def hang_up(_headers: dict[str, str]) -> None:
        await call.hang_up()

    standin.on("Redirect", hang_up)
    await page.wait_for_selector("#take-back:not([disabled])")
    await page.screenshot(path=shot("live-takeback-ready"))
    await page.click("#take-back")
    await page.wait_for_selector("#done")
    assert "Taken back" in await page.inner_text("#done")
    record = await call.wait()
    assert record.hung_up
    await page.wait_for_selector("#taken-back")
    await page.screenshot(path=shot("live-taken-back"))
    after = await store.get_payment(screen.pool, pid)
    assert after is not None and after["status"] == "abandoned"
    assert after["taken_back"]["by"] == "screen:opera"
    assert [a.name for a in standin.actions[-2:]] == ["Setvar", "Redirect"]
    no_card_digits(await page.content(), VISA)
    assert CONSOLE_ERRORS[page] == []
    await page.context.close()
