"""Every gateway test runs with its logs captured and checked for card numbers; the scripted
gateway answers whatever a test wants over real HTTP (malformed answers the sandbox never gives)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from tests.support.gateway import LogCapture


@pytest.fixture(autouse=True)
def _no_card_numbers_in_logs(card_safe_logs: LogCapture) -> LogCapture:
    return card_safe_logs


@dataclass
class ScriptedGateway:
    """A real HTTP server that answers each endpoint from a queue of scripted answers."""

    url: str = ""
    answers: dict[str, list[tuple[int, bytes, str]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def script(
        self,
        endpoint: str,
        body: bytes | str,
        status: int = 200,
        content_type: str = "text/plain;charset=Windows-31J",
    ) -> None:
        raw = body.encode("cp932") if isinstance(body, str) else body
        self.answers.setdefault(endpoint, []).append((status, raw, content_type))

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        params = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="cp932"))
        self.requests.append((name, params))
        queue = self.answers.get(name) or []
        if not queue:
            return web.Response(status=404, text="not scripted")
        status, raw, content_type = queue.pop(0)
        return web.Response(status=status, body=raw, headers={"Content-Type": content_type})


@pytest.fixture
async def scripted_gateway() -> AsyncIterator[ScriptedGateway]:
    gateway = ScriptedGateway()
    app = web.Application()
    app.router.add_post("/payment/{name}.idPass", gateway.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    gateway.url = f"http://{host}:{port}"
    try:
        yield gateway
    finally:
        await runner.cleanup()
