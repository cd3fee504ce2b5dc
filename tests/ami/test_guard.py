"""The listen-in keypad guard (ivrpay.ami.guard) against the AMI stand-in over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ivrpay.ami import AmiLink, parse_ami_url
from ivrpay.ami.guard import SpyGuard, spy_guards
from tests.support.ami import AmiStandIn

OPERATOR = "PJSIP/1001-0000002a"


@pytest.fixture
async def link(ami_standin: AmiStandIn) -> AsyncIterator[AmiLink]:
    ami_standin.channels.add(OPERATOR)
    ami_standin.applications[OPERATOR] = "ChanSpy"
    link = AmiLink(parse_ami_url(ami_standin.url), backoff_s=(0.01,))
    await link.start()
    await asyncio.wait_for(link.wait_up(), 5)
    try:
        yield link
    finally:
        await link.close()


class Recorded(list[tuple[str, str]]):
    async def __call__(self, payment_id: str, event: str) -> None:
        self.append((payment_id, event))


def mutes(standin: AmiStandIn) -> list[tuple[str, str, str]]:
    return [(a["Channel"], a["Direction"], a["State"]) for a in standin.named("MuteAudio")]


async def test_a_field_opens_while_the_operator_spies(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    recorded = Recorded()
    guard = SpyGuard(link, "p-1", OPERATOR, mute=False, record=recorded)
    assert await guard.open("card_number")
    assert await guard.open("card_number")  # already open: nothing asked
    assert len(ami_standin.named("Status")) == 1
    await guard.close()
    assert mutes(ami_standin) == [] and recorded == []
    # bridged back with the caller (or anything but ChanSpy): no more keys
    ami_standin.applications[OPERATOR] = "AppDial2"
    assert not await guard.open("expiry")
    # hung up
    ami_standin.channels.discard(OPERATOR)
    assert not await guard.open("expiry")


async def test_tones_are_muted_per_field_and_each_mute_recorded(
    link: AmiLink, ami_standin: AmiStandIn
) -> None:
    recorded = Recorded()
    guard = SpyGuard(link, "p-1", OPERATOR, mute=True, record=recorded)
    for f in ("card_number", "expiry"):
        assert await guard.open(f)
        await guard.close()
    assert mutes(ami_standin) == [(OPERATOR, "out", s) for s in ("on", "off", "on", "off")]
    await guard.finish()
    assert recorded == [("p-1", e) for e in ("mute", "unmute", "mute", "unmute", "end")]


async def test_a_refused_mute_refuses_the_field(link: AmiLink, ami_standin: AmiStandIn) -> None:
    ami_standin.refuse.add("muteaudio")
    guard = SpyGuard(link, "p-1", OPERATOR, mute=True, record=Recorded())
    assert not await guard.open("card_number")
    assert not guard.muted
    await guard.close()  # nothing to lift, never raises


async def test_no_link_refuses_the_field(link: AmiLink) -> None:
    guard = SpyGuard(link, "p-1", OPERATOR, mute=False, record=Recorded())
    await link.close()
    assert not await guard.open("card_number")


def test_only_a_listen_in_payment_gets_a_guard(link: AmiLink) -> None:
    guards = spy_guards(link, Recorded())
    assert guards({"id": "p-1", "listen_in": None}) is None
    guard = guards({"id": "p-1", "listen_in": {"operator_channel": OPERATOR, "mute": True}})
    assert isinstance(guard, SpyGuard) and guard.mute and guard.operator_channel == OPERATOR
