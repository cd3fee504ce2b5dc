"""The SSE stream: live across processes (two apps, each with its own pool and LISTEN connection,
over one database), Last-Event-ID, keep-alives, and a clean end at shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from ivrpay import store
from tests.api.conftest import MakeClient, body

P = "/api/v1/payments"
# Only a guard against a hang: every wait below ends on an event long before it.
GUARD_S = 20


@pytest.fixture
async def second_pool(database_url: str) -> AsyncIterator[Any]:
    pool = await store.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def next_frame(r: ClientResponse) -> dict[str, str]:
    """The next SSE frame as {field: value}; a comment frame is {"comment": text}."""
    frame: dict[str, str] = {}
    while True:
        line = await asyncio.wait_for(r.content.readline(), GUARD_S)
        if line == b"":
            return {"eof": ""}
        text = line.decode().rstrip("\n")
        if text == "":
            if frame:
                return frame
            continue
        if text.startswith(":"):
            frame["comment"] = text[1:].strip()
        else:
            name, _, value = text.partition(":")
            frame[name] = value.removeprefix(" ")


async def next_event(r: ClientResponse) -> tuple[int, dict[str, Any]]:
    while True:
        frame = await next_frame(r)
        assert "eof" not in frame
        if "comment" in frame:
            continue
        assert frame["event"] == "payment"
        return int(frame["id"]), json.loads(frame["data"])


async def test_change_on_one_app_is_seen_on_the_other(
    make_client: MakeClient, second_pool: Any, auth: dict[str, str]
) -> None:
    a = await make_client()
    b = await make_client(pool=second_pool)
    created = await (await a.post(P, json=body(), headers=auth)).json()

    r = await b.get(f"{P}/{created['id']}/events", headers=auth)
    assert r.status == 200 and r.content_type == "text/event-stream"
    seq0, first = await next_event(r)
    assert first == created

    canceled = await (await a.post(f"{P}/{created['id']}/cancel", headers=auth)).json()
    seq1, snap = await next_event(r)
    assert seq1 > seq0
    assert snap["status"] == "canceled" and snap == canceled
    r.close()


async def test_last_event_id_skips_what_the_client_has(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    client = await make_client(sse_keepalive_s=0.05)
    created = await (await client.post(P, json=body(), headers=auth)).json()
    r = await client.get(f"{P}/{created['id']}/events", headers=auth)
    seq, _ = await next_event(r)
    r.close()

    r = await client.get(f"{P}/{created['id']}/events", headers={**auth, "Last-Event-ID": str(seq)})
    # Nothing new: the first thing to arrive is a keep-alive, not a repeat of the snapshot.
    assert await next_frame(r) == {"comment": "keepalive"}
    await client.post(f"{P}/{created['id']}/cancel", headers=auth)
    seq2, snap = await next_event(r)
    assert seq2 > seq and snap["status"] == "canceled"
    r.close()

    # A stale Last-Event-ID, or one the payment never had, gets the current snapshot at once.
    for last in ("0", str(seq2 + 1000), "not-a-number"):
        r = await client.get(f"{P}/{created['id']}/events", headers={**auth, "Last-Event-ID": last})
        seq3, snap = await next_event(r)
        assert seq3 == seq2 and snap["status"] == "canceled"
        r.close()


async def test_events_errors(client: TestClient, auth: dict[str, str]) -> None:
    r = await client.get(f"{P}/00000000-0000-0000-0000-000000000000/events", headers=auth)
    assert r.status == 404 and r.content_type == "application/problem+json"
    created = await (await client.post(P, json=body(), headers=auth)).json()
    r = await client.get(f"{P}/{created['id']}/events")
    assert r.status == 401


async def test_without_a_listener_the_stream_is_unavailable(
    make_client: MakeClient, auth: dict[str, str], settings: Any
) -> None:
    client = await make_client(database_url=None, settings=settings.replace(database_url=None))
    created = await (await client.post(P, json=body(), headers=auth)).json()
    r = await client.get(f"{P}/{created['id']}/events", headers=auth)
    assert r.status == 503
    assert (await r.json())["type"] == "urn:ivrpay:problem:events-unavailable"


async def test_shutdown_ends_open_streams(make_client: MakeClient, auth: dict[str, str]) -> None:
    client = await make_client()
    created = await (await client.post(P, json=body(), headers=auth)).json()
    r = await client.get(f"{P}/{created['id']}/events", headers=auth)
    await next_event(r)
    # The server shuts down while the stream is open: the stream ends instead of holding the
    # shutdown for its whole timeout.
    closing = asyncio.ensure_future(client.server.close())
    assert await next_frame(r) == {"eof": ""}
    await asyncio.wait_for(closing, GUARD_S)
