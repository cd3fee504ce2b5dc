"""A call the test drives from both ends: the server-side session and a raw Asterisk peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ivrpay.agi.server import FastAGIServer
from ivrpay.agi.session import AGISession
from tests.support.agi import AsteriskPeer


@dataclass
class Call:
    server: FastAGIServer
    session: AGISession
    peer: AsteriskPeer
    finish: asyncio.Event  # set to let the handler return (the server then closes the session)


OpenCall = Callable[..., Awaitable[Call]]


@pytest.fixture
async def open_call(agi_server) -> AsyncIterator[OpenCall]:
    calls: list[Call] = []

    async def make(*args: str, env: Any = None, **server_kwargs: Any) -> Call:
        sessions: asyncio.Queue[AGISession] = asyncio.Queue()
        finish = asyncio.Event()

        async def handler(session: AGISession) -> None:
            await sessions.put(session)
            await finish.wait()

        server_kwargs.setdefault("close_timeout", 2.0)
        server = await agi_server({"t": handler}, **server_kwargs)
        peer = await AsteriskPeer.connect(server.port, "t", *args, env=env)
        async with asyncio.timeout(5):
            session = await sessions.get()
        call = Call(server, session, peer, finish)
        calls.append(call)
        return call

    yield make
    for call in calls:
        call.finish.set()
        await call.peer.close()
