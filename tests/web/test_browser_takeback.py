"""The live page's AMI buttons with a link to the stand-in: take-back (issue 11) — the operator
clicks it while the caller keys the card, the PBX redirects the call, the page shows it — and
listen-in (issue 14)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ivrpay import store
from ivrpay.simulator.call import SimulatedCall
from ivrpay.simulator.env import ChannelSpec
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


async def test_the_operator_listens_in_to_an_approved_payment(
    browser: Any, screen: Screen, standin: AmiStandIn
) -> None:
    """Listen-in (issue 14): registered with the box ticked, started from the live page while
    the operator's phone is talking to the caller; the page follows the call to approved."""
    assert screen.service.takeback is not None
    await screen.service.takeback.link.wait_up()
    operator, caller = "PJSIP/1001-0000007a", "PJSIP/trunk-0000007b"
    standin.channels |= {operator, caller}
    standin.bridges.update({operator: "b-7", caller: "b-7"})
    page = await signed_in_page(browser, screen, "opera", "en")
    pid = await register(page, "web-listen-1", listen_in="on")
    assert "stay on the line" in (await page.inner_text("#panel")).lower()
    code = await page.inner_text("#code")
    calls: list[Any] = []

    async def run_ivr(headers: dict[str, str]) -> None:
        call = SimulatedCall(
            "127.0.0.1",
            screen.service.agi.port,
            args=(headers["Exten"][1:], operator),
            keys=[f"{VISA}#", EXPIRY, "123", "1"],
            channel=ChannelSpec(channel=caller, language="en"),
            sounds_dir=screen.settings.sounds_dir,
        )
        await call.start()
        calls.append(call)

    standin.on("Redirect", run_ivr)
    await page.screenshot(path=shot("live-listen-in-ready"))
    await page.click("#listen-in")
    await page.wait_for_selector("#done")
    assert "listening in" in await page.inner_text("#done")
    await standin.until(lambda s: len(calls) == 1)
    record = await calls[0].wait()
    assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED"
    await page.wait_for_selector("#result[data-outcome=succeeded]")
    assert await page.is_visible("#listening")
    await page.screenshot(path=shot("live-listen-in-approved"))
    after = await store.get_payment(screen.pool, pid)
    assert after is not None and after["status"] == "succeeded"
    assert after["listen_in"]["by"] == "screen:opera"
    assert after["listen_in"]["caller_channel"] == caller and code == after["code"]
    redirect = standin.named("Redirect")[-1]
    assert (redirect["Channel"], redirect["ExtraChannel"]) == (caller, operator)
    no_card_digits(await page.content(), VISA)
    assert CONSOLE_ERRORS[page] == []
    await page.context.close()
