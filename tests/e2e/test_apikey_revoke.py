"""``ivrpay apikey list|revoke`` as an operator runs them: a key revoked from one process is refused
at once by two running ``serve`` processes on the same database."""

from __future__ import annotations

from contextlib import AsyncExitStack

import aiohttp
import asyncpg

from ivrpay.sandbox.server import Sandbox
from tests.e2e.test_commands import Server, _env, _ivrpay, serve_process


async def test_a_revoked_key_is_refused_at_once_in_every_process(
    database_url: str, pool: asyncpg.Pool, sandbox: Sandbox
) -> None:
    env = _env(database_url, sandbox)
    rc, out, _ = await _ivrpay(env, "apikey", "create", "crm", "--webhook", "https://crm.example/h")
    assert rc == 0
    key = out.splitlines()[0]
    rc, out, _ = await _ivrpay(env, "apikey", "create", "other")
    other_key = out.splitlines()[0]

    rc, out, _ = await _ivrpay(env, "apikey", "list")
    assert rc == 0
    header, *rows = out.splitlines()
    assert header.split("\t") == ["id", "name", "prefix", "state", "created", "webhook"]
    by_name = {r.split("\t")[1]: r.split("\t") for r in rows}
    assert by_name["crm"][2] == key[:8] + "…" and by_name["crm"][3] == "enabled"
    assert by_name["crm"][5] == "https://crm.example/h"
    assert key not in out and key[8:16] not in out  # no secret beyond the prefix

    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(serve_process(env)) for _ in range(2)]
        async with aiohttp.ClientSession() as http:

            async def status(server: Server, api_key: str) -> int:
                url = f"http://127.0.0.1:{server.http_port}/api/v1/payments?order_id=none"
                headers = {"Authorization": f"Bearer {api_key}"}
                async with http.get(url, headers=headers) as r:
                    return r.status

            assert [await status(s, key) for s in servers] == [200, 200]
            rc, out, _ = await _ivrpay(env, "apikey", "revoke", "crm")
            assert rc == 0 and "revoked" in out
            # No wait: the very next request in each process is refused.
            assert [await status(s, key) for s in servers] == [401, 401]
            assert [await status(s, other_key) for s in servers] == [200, 200]

    rc, out, _ = await _ivrpay(env, "apikey", "list")
    states = {r.split("\t")[1]: r.split("\t")[3] for r in out.splitlines()[1:]}
    assert states == {"crm": "revoked", "other": "enabled"}
    rc, _, err = await _ivrpay(env, "apikey", "revoke", "nobody")
    assert rc == 1 and "no API key 'nobody'" in err
    # Two enabled keys of one name: the name is ambiguous, the id is not.
    await _ivrpay(env, "apikey", "create", "twin")
    await _ivrpay(env, "apikey", "create", "twin")
    rc, _, err = await _ivrpay(env, "apikey", "revoke", "twin")
    assert rc == 1 and "give the id" in err
    twin = await pool.fetchval("SELECT id FROM api_clients WHERE name = 'twin' LIMIT 1")
    rc, _, _ = await _ivrpay(env, "apikey", "revoke", str(twin))
    assert rc == 0
    assert await pool.fetchval("SELECT count(*) FROM audit WHERE action = 'apikey_revoked'") == 2
