"""The AMI link over a real socket against the stand-in: login, actions, drops, refusals, delays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import structlog

from ivrpay.ami import (
    AmiLink,
    AmiRefused,
    AmiTimeout,
    AmiUnavailable,
    parse_ami_url,
)
from ivrpay.config import ConfigError
from tests.support.ami import AmiStandIn

CALLER = "PJSIP/caller-00000001"


class Pauses:
    """Stands in for the link's waits between attempts: records each delay, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
async def make_link(ami_standin: AmiStandIn) -> AsyncIterator[Callable[..., AmiLink]]:
    links: list[AmiLink] = []

    def make(url: str | None = None, **kw: object) -> AmiLink:
        kw.setdefault("backoff_s", (0.01,))
        kw.setdefault("refused_backoff_s", (0.02,))
        kw.setdefault("ping_s", 30.0)
        link = AmiLink(parse_ami_url(url or ami_standin.url), **kw)  # type: ignore[arg-type]
        links.append(link)
        return link

    yield make
    for link in links:
        await link.close()


@pytest.fixture
async def link(make_link: Callable[..., AmiLink]) -> AsyncIterator[AmiLink]:
    link = make_link()
    await link.start()
    await asyncio.wait_for(link.wait_up(), 5)
    yield link
    await link.close()


async def test_login_as_the_configured_user_with_system_events_only(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    (login,) = ami_standin.named("Login")
    assert login["Username"] == "ivrpay" and login["Secret"] == "s3cret"
    assert login["Events"] == "system"  # never call/dtmf/agi events: nothing of a key press
    assert "ActionID" in login.headers
    assert link.status() == {"status": "ok"} and link.version == "9.0.0"


async def test_redirect_sets_the_variables_then_redirects(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    await link.redirect(
        CALLER, context="ivrpay-takeback", variables={"IVRPAY_CALLBACK": "PJSIP/1001"}
    )
    setvar, redirect = ami_standin.actions[-2:]
    assert setvar.name == "Setvar"
    assert {k: setvar[k] for k in ("Channel", "Variable", "Value")} == {
        "Channel": CALLER,
        "Variable": "IVRPAY_CALLBACK",
        "Value": "PJSIP/1001",
    }
    assert redirect.name == "Redirect"
    assert {k: redirect[k] for k in ("Channel", "Context", "Exten", "Priority")} == {
        "Channel": CALLER,
        "Context": "ivrpay-takeback",
        "Exten": "s",
        "Priority": "1",
    }
    ids = [a["ActionID"] for a in ami_standin.actions]
    assert len(set(ids)) == len(ids)  # every action its own ActionID


async def test_an_error_answer_is_refused_with_asterisks_words(link: AmiLink) -> None:
    with pytest.raises(AmiRefused) as info:
        await link.redirect("PJSIP/gone-00000009", context="ivrpay-takeback")
    assert info.value.message == "Channel does not exist: PJSIP/gone-00000009"


async def test_header_injection_is_refused_before_sending(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    before = len(ami_standin.actions)
    with pytest.raises(Exception, match="cannot carry"):
        await link.redirect(CALLER + "\r\nAction: Originate", context="ivrpay-takeback")
    assert len(ami_standin.actions) == before


async def test_a_delayed_redirect_answer_does_not_block_the_loop(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    gate = ami_standin.hold("Redirect")
    redirect = asyncio.create_task(link.redirect(CALLER, context="ivrpay-takeback"))
    await ami_standin.until(lambda s: bool(s.named("Redirect")))
    # While the PBX sits on the Redirect, the link and the loop go on.
    pong = await link.action({"Action": "Ping"})
    assert pong["Ping"] == "Pong"
    assert not redirect.done()
    gate.set()
    await redirect


async def test_a_delayed_originate_does_not_block_and_is_sent_async(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    gate = ami_standin.hold("Originate")
    originate = asyncio.create_task(
        link.action({"Action": "Originate", "Channel": "PJSIP/1001", "Application": "Wait"})
    )
    await ami_standin.until(lambda s: bool(s.named("Originate")))
    assert (await link.action({"Action": "Ping"}))["Ping"] == "Pong"
    gate.set()
    await originate
    # Without Async the answer "successfully queued" would leave the future waiting forever.
    assert ami_standin.named("Originate")[0]["Async"] == "true"


async def test_an_answer_that_never_comes_times_out(
    make_link: Callable[..., AmiLink], ami_standin: AmiStandIn
) -> None:
    link = make_link(action_timeout_s=0.05)
    await link.start()
    await link.wait_up()
    ami_standin.hold("Redirect")
    with pytest.raises(AmiTimeout):
        await link.redirect(CALLER, context="ivrpay-takeback")
    await link.close()


async def test_reconnects_after_the_pbx_drops_the_link(
    make_link: Callable[..., AmiLink], ami_standin: AmiStandIn
) -> None:
    counted: list[int] = []
    link = make_link(on_reconnect=lambda: counted.append(1))
    pauses = Pauses()
    link.pause = pauses
    await link.start()
    await link.wait_up()
    await ami_standin.drop()
    await ami_standin.until(lambda s: s.logins == 2)
    await link.wait_up()
    assert link.connected and link.reconnects == 1 and counted == [1]
    assert pauses.delays == [0.01]
    # The new link works.
    await link.redirect(CALLER, context="ivrpay-takeback")
    await link.close()


async def test_an_action_in_flight_when_the_link_drops_fails_and_is_never_resent(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    ami_standin.hold("Redirect")
    redirect = asyncio.create_task(link.redirect(CALLER, context="ivrpay-takeback"))
    await ami_standin.until(lambda s: bool(s.named("Redirect")))
    await ami_standin.drop()
    with pytest.raises(AmiTimeout):  # it may have been done: the answer is what was lost
        await redirect
    await ami_standin.until(lambda s: s.logins == 2)
    await link.wait_up()
    await link.action({"Action": "Ping"})
    # panoramisk alone would have sent the Redirect again after the new login.
    assert len(ami_standin.named("Redirect")) == 1


async def test_a_shutdown_event_takes_the_link_down_and_it_comes_back(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    await ami_standin.send_event("Shutdown", Shutdown="Cleanly", Restart="True")
    await ami_standin.until(lambda s: s.logins == 2)
    await link.wait_up()
    assert link.reconnects == 1


async def test_a_refused_login_is_reported_and_retried_slowly(
    make_link: Callable[..., AmiLink], ami_standin: AmiStandIn
) -> None:
    ami_standin.refuse_logins = True
    link = make_link(backoff_s=(0.01,), refused_backoff_s=(30, 60, 120))
    pauses = Pauses()
    link.pause = pauses
    with structlog.testing.capture_logs() as logs:
        await link.start()
        await ami_standin.until(lambda s: s.refused == 4)
    status = link.status()
    assert status["status"] == "down" and status["detail"] == "login refused"
    assert "since" in status
    # The slow schedule, its last entry repeating: never the 2-second loop of panoramisk.
    assert pauses.delays[:3] == [30, 60, 120]
    refused = [e for e in logs if e["event"] == "ami.login_refused"]
    assert refused and refused[0]["log_level"] == "error"
    assert all("s3cret" not in str(e) for e in logs)
    with pytest.raises(AmiUnavailable):
        await link.redirect(CALLER, context="ivrpay-takeback")
    # Fixed on the PBX: the next attempt logs in, and the schedule starts over.
    ami_standin.refuse_logins = False
    await link.wait_up()
    assert link.failures == 0 and link.reconnects == 0
    await link.close()


async def test_no_pbx_at_all_backs_off_and_says_why(
    make_link: Callable[..., AmiLink], ami_standin: AmiStandIn
) -> None:
    await ami_standin.stop()
    link = make_link(backoff_s=(0.5, 1, 2))
    delays: list[float] = []
    three = asyncio.Event()

    async def pause(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= 4:
            three.set()
            await asyncio.Event().wait()

    link.pause = pause
    await link.start()
    await three.wait()
    assert delays == [0.5, 1, 2, 2]
    assert link.status()["detail"] == "connection refused"
    await link.close()


def test_the_url_is_checked_and_the_secret_never_shown() -> None:
    target = parse_ami_url("ami://ivrpay:p%40ss@pbx.internal:5039")
    assert (target.host, target.port, target.username, target.secret) == (
        "pbx.internal",
        5039,
        "ivrpay",
        "p@ss",
    )
    assert "p@ss" not in repr(target) and "p@ss" not in str(target)
    assert parse_ami_url("ami://u:s@127.0.0.1").port == 5038
    for bad in ("http://u:s@h:1", "ami://h:5038", "ami://u@h", "ami://u:s@h:1/x", "ami://u:s@h:x"):
        with pytest.raises(ConfigError, match="IVRPAY_AMI_URL"):
            parse_ami_url(bad)
