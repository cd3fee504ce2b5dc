"""Keep-alive to the gateway: which requests may ride a connection already used, counted by the
connections a real HTTP server sees (its peer's port names the connection)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ivrpay.gateway.client import GatewayClient
from tests.support.gateway import make_card

ENTRY = b"AccessID=a1&AccessPass=p1"
DECLINED = b"ErrCode=G02&ErrInfo=42G020000"


@pytest.fixture
async def peers() -> AsyncIterator[tuple[str, list[tuple[str, int]]]]:
    """A gateway that answers EntryTran and ExecTran, and the (endpoint, client port) it saw."""
    seen: list[tuple[str, int]] = []

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((name, int(peer[1]) if peer else -1))
        await request.read()
        return web.Response(body=ENTRY if name == "EntryTran" else DECLINED)

    app = web.Application()
    app.router.add_post("/payment/{name}.idPass", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


async def _two_of_each(url: str, keepalive: str) -> int:
    """Two EntryTran + ExecTran pairs; the connections the client opened."""
    client = GatewayClient(url, "tshop00000001", "pass000001", keepalive=keepalive)
    try:
        for n in (1, 2):
            entry = await client.entry_tran(f"o-{n}", "AUTH", 100)
            assert entry.ok, entry
            executed = await client.exec_tran(f"o-{n}", "a1", "p1", make_card("4111111111111111"))
            assert executed.kind == "declined", executed
        return client.connections_opened
    finally:
        await client.close()


def _ports(seen: list[tuple[str, int]], endpoint: str) -> list[int]:
    return [port for name, port in seen if name == endpoint]


async def test_safe_reuses_a_connection_for_entrytran_never_for_exectran(
    peers: tuple[str, list[tuple[str, int]]],
) -> None:
    url, seen = peers
    assert await _two_of_each(url, "safe") == 3
    entries, execs = _ports(seen, "EntryTran"), _ports(seen, "ExecTran")
    assert len(set(entries)) == 1  # the second EntryTran rode the first one's connection
    assert len(set(execs)) == 2 and not set(execs) & set(entries)  # each ExecTran its own


async def test_off_opens_a_connection_per_request(
    peers: tuple[str, list[tuple[str, int]]],
) -> None:
    url, seen = peers
    assert await _two_of_each(url, "off") == 4
    assert len({port for _name, port in seen}) == 4


async def test_all_reuses_a_connection_for_every_request(
    peers: tuple[str, list[tuple[str, int]]],
) -> None:
    url, seen = peers
    assert await _two_of_each(url, "all") == 1
    assert len({port for _name, port in seen}) == 1


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="keepalive"):
        GatewayClient("http://127.0.0.1:1", "s", "p", keepalive="sometimes")
