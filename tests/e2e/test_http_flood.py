"""An HTTP flood never takes FastAGI's descriptors: ``ivrpay serve`` with a small descriptor limit,
flooded with slow-header HTTP connections, still takes and pays a call; the flood is closed after
the header bound and HTTP answers again."""

from __future__ import annotations

import asyncio
import resource
import time

import aiohttp
import asyncpg

from ivrpay import store
from ivrpay.sandbox.server import Sandbox
from ivrpay.simulator import SimulatedCall
from tests.api.test_listener import read_all
from tests.e2e.test_commands import _env, serve_process

NOFILE = 320
FLOOD = 400


def _small_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


async def test_a_flood_of_slow_http_leaves_the_calls_their_descriptors(
    database_url: str, pool: asyncpg.Pool, sandbox: Sandbox
) -> None:
    env = _env(
        database_url,
        sandbox,
        IVRPAY_MAX_CALLS="20",
        IVRPAY_HTTP_HEADER_TIMEOUT_S="3",
        IVRPAY_HTTP_MAX_PER_ADDRESS="100000",
    )
    flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    async with serve_process(env, preexec_fn=_small_nofile) as server:
        capped = next(e for e in server.log if e.get("event") == "http.connections_capped")
        agi_port, http_port = server.agi_port, server.http_port
        cap = capped["max_connections"]
        assert 0 < cap < FLOOD

        _client, api_key, _ = await store.create_api_client(pool, "flood")
        base = f"http://127.0.0.1:{http_port}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
            async with http.post(
                f"{base}/api/v1/payments", json={"order_id": "flood-1", "amount": 700}
            ) as r:
                assert r.status == 201
                payment = await r.json()

            t0 = time.monotonic()
            for _ in range(FLOOD):
                reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                flood.append((reader, writer))

            # The call is taken and paid while HTTP is flooded.
            call = SimulatedCall(
                "127.0.0.1",
                agi_port,
                args=(payment["code"], ""),
                keys=["4111111111111111#", "1230", "123", "1"],
                language="en",
            )
            await call.start()
            async with asyncio.timeout(60):
                record = await call.wait()
            assert record.variables["IVRPAY_STATUS"] == "SUCCEEDED", record

            # Every flood connection ends: refused at once beyond the cap, 408 after the bound.
            async with asyncio.timeout(60):
                answers = await asyncio.gather(*(read_all(r) for r, _ in flood))
            elapsed = time.monotonic() - t0
            timed_out = sum(a.startswith(b"HTTP/1.1 408") for a in answers)
            refused = sum(a == b"" for a in answers)
            print(
                f"{FLOOD} slow-header connections (cap {cap} at {NOFILE} descriptors): "
                f"{timed_out} closed with 408 after the 3 s bound, {refused} refused at once; "
                f"all gone {elapsed:.1f} s after the first"
            )
            assert timed_out + refused == FLOOD and 0 < timed_out <= cap
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200  # HTTP answers again
        for _, w in flood:
            w.close()
    status = await pool.fetchval("SELECT status FROM payments WHERE order_id = 'flood-1'")
    assert status == "succeeded"
