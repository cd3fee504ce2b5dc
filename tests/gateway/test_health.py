"""The gateway's health, checked for real: a SearchTrade of an OrderID that cannot exist, cached."""

from __future__ import annotations

import asyncio

import pytest

from ivrpay.gateway.client import GatewayClient
from ivrpay.gateway.health import PROBE_ORDER_ID, GatewayProbe
from ivrpay.sandbox.server import Sandbox
from tests.support.gateway import SHOP_ID, SHOP_PASS, make_gateway_client


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _probe(client: GatewayClient, clock: Ticks) -> GatewayProbe:
    return GatewayProbe(client, client._shop, ttl_s=5.0, timeout_s=1.0, clock=clock)


async def test_a_gateway_that_answers_is_ok_and_the_answer_is_cached(
    gateway_client: GatewayClient, sandbox: Sandbox
) -> None:
    clock = Ticks()
    probe = _probe(gateway_client, clock)
    assert await probe.health() == {"status": "ok"}
    assert sandbox.state.requests["SearchTrade"] == 1
    # Polled often, asked once per ttl: ten askers at once share one request.
    results = await asyncio.gather(*(probe.health() for _ in range(10)))
    assert results == [{"status": "ok"}] * 10
    assert sandbox.state.requests["SearchTrade"] == 1
    clock.now += 5.0
    await asyncio.gather(*(probe.health() for _ in range(10)))
    assert sandbox.state.requests["SearchTrade"] == 2
    assert PROBE_ORDER_ID not in {order_id for _shop, order_id in sandbox.state._orders}


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ("http500", "unreadable answer: HTTP 500"),
        ("garbage", "unreadable answer"),
        ("refuse", "connection lost"),
        ("busy", "busy (E92000001)"),
        ("timeout", "no answer within 1s"),
    ],
)
async def test_a_gateway_fault_fails_the_check_until_it_answers_again(
    gateway_client: GatewayClient, sandbox: Sandbox, fault: str, detail: str
) -> None:
    clock = Ticks()
    probe = _probe(gateway_client, clock)
    sandbox.add_fault("SearchTrade", fault)
    verdict = await probe.health()
    assert verdict["status"] == "fail" and detail in verdict["detail"], verdict
    clock.now += 1.0
    assert (await probe.health())["status"] == "fail"  # cached: not asked again yet
    clock.now += 5.0
    assert await probe.health() == {"status": "ok"}


async def test_a_gateway_that_is_gone_fails(sandbox: Sandbox) -> None:
    client = make_gateway_client(sandbox)
    await sandbox.stop()
    try:
        verdict = await _probe(client, Ticks()).health()
    finally:
        await client.close()
    assert verdict["status"] == "fail" and "unreachable" in verdict["detail"]


async def test_refused_credentials_fail(sandbox: Sandbox) -> None:
    async with GatewayClient(sandbox.url, SHOP_ID, "") as client:
        verdict = await _probe(client, Ticks()).health()
    assert verdict == {"status": "fail", "detail": "shop credentials refused (E01020001)"}
    async with GatewayClient(sandbox.url, SHOP_ID, SHOP_PASS) as client:
        assert await client.health() == {"status": "ok"}  # the client's own probe
