"""Issue 13 item 2: no card number gets into the database through the API, in any form, in any
text the API keeps; Idempotency-Keys are kept only hashed; a body that is not JSON is 415.

Over real HTTP and PostgreSQL: each refusal is a 422 naming the field, and afterwards no row of any
table holds one of the numbers in any form.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from ivrpay import store
from ivrpay.card.scan import holds_card_number
from ivrpay.store.db import connect
from ivrpay.store.migrations import SQL_DIR, migrate
from tests.api.conftest import body

P = "/api/v1/payments"
CARD = "must not contain a card number (card data never passes through the API)"

# (the field named in the 422, the body's overrides): each slipped through before the fix.
DISGUISED: list[tuple[str, dict[str, Any]]] = [
    ("metadata", {"metadata": {"note": "4111.1111.1111.1111"}}),
    ("metadata", {"metadata": {"note": "4111/1111/1111/1111"}}),
    ("metadata", {"metadata": {"note": "４１１１１１１１１１１１１１１１"}}),
    ("metadata", {"metadata": {"note": "４１１１－１１１１－１１１１－１１１１"}}),
    ("metadata", {"metadata": {"note": "4111　1111　1111　1111"}}),
    ("metadata", {"metadata": {"parts": ["4111", "1111", "1111", "1111"]}}),
    ("metadata", {"metadata": {"a": "4111 1111", "b": "1111 1111"}}),
    ("metadata", {"metadata": {"deep": {"er": [{"x": "3530_1113_3330_0000"}]}}}),
    ("metadata", {"metadata": {"4111.1111.1111.1111": "key"}}),
    ("member_id", {"operation": "charge_and_register", "member_id": "4111.1111.1111.1111"}),
    ("member_id", {"operation": "register", "member_id": "m_5555_5555_5555_4444"}),
    ("operator.id", {"operator": {"id": "4111/1111/1111/1111", "callback": "PJSIP/1001"}}),
    (
        "operator.id",
        {"operator": {"id": "４１１１１１１１１１１１１１１１", "callback": "PJSIP/1"}},
    ),
    ("operator.callback", {"operator": {"id": "a", "callback": "PJSIP/4111.1111.1111.1111"}}),
]


async def _problem(r: Any, status: int) -> dict[str, Any]:
    text = await r.text()
    assert r.status == status, text
    assert r.content_type == "application/problem+json"
    return json.loads(text)


# A hash as hex text or bytea (key_hash): its digit runs pass Luhn one time in ten, so a random
# API key made the dump "hold a card number" in a few runs of ten. No card number is 32 hex digits.
_HASH = re.compile(r'"(?:\\\\x)?[0-9a-f]{32,}"')
# Likewise a UUID (payment, client, event ids): its last group is 12 digits about one time in
# 280 and then passes Luhn one time in ten — two flakes in one full run.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def _dump(pool: asyncpg.Pool) -> list[str]:
    """Every row of every table as JSON text, hashes left out."""
    rows: list[str] = []
    async with pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        for (t,) in tables:
            rows += [
                _UUID.sub("uuid", _HASH.sub('""', r[0]))
                for r in await conn.fetch(f'SELECT row_to_json(x)::text FROM "{t}" x')
            ]
    return rows


@pytest.mark.parametrize(("field", "overrides"), DISGUISED)
async def test_a_disguised_card_number_is_refused_naming_the_field(
    client: TestClient, auth: dict, pool: asyncpg.Pool, field: str, overrides: dict[str, Any]
) -> None:
    r = await client.post(P, json=body(**overrides), headers=auth)
    doc = await _problem(r, 422)
    assert {"field": field, "message": CARD} in doc["errors"], doc
    # Not echoed, not kept.
    assert "1111" not in json.dumps(doc) and "１" not in json.dumps(doc, ensure_ascii=False)
    assert not any(holds_card_number([row]) for row in await _dump(pool))


async def test_long_ids_that_are_not_card_numbers_are_kept(client: TestClient, auth: dict) -> None:
    # The other side of the rule: long digit runs that fail Luhn pass, in every field.
    b = body(
        order_id="202411270001234",
        operation="charge_and_register",
        member_id="m.2024.1127.0001.2345",
        operator={"id": "ext-0312345678", "callback": "PJSIP/1001"},
        metadata={"ref": "4111-1111-1111-1112", "parts": ["2026", "1207"], "n": 1234567890123},
    )
    r = await client.post(P, json=b, headers={**auth, "Idempotency-Key": "2024112700012345"})
    assert r.status == 201, await r.text()
    got = await r.json()
    assert got["order_id"] == "202411270001234" and got["metadata"]["ref"] == "4111-1111-1111-1112"


@pytest.mark.parametrize(
    "key", ["4111111111111111", "4111.1111.1111.1111", "k:4111_1111_1111_1111"]
)
async def test_an_idempotency_key_holding_a_card_number_is_refused(
    client: TestClient, auth: dict, pool: asyncpg.Pool, key: str
) -> None:
    r = await client.post(P, json=body(), headers={**auth, "Idempotency-Key": key})
    doc = await _problem(r, 422)
    assert doc["errors"] == [{"field": "Idempotency-Key", "message": CARD}]
    assert not any(holds_card_number([row]) for row in await _dump(pool))


async def test_idempotency_keys_are_kept_only_hashed(
    client: TestClient, auth: dict, pool: asyncpg.Pool
) -> None:
    key = "order-7-attempt-1"
    h = {**auth, "Idempotency-Key": key}
    r1 = await client.post(P, json=body(), headers=h)
    r2 = await client.post(P, json=body(), headers=h)
    assert r1.status == r2.status == 201 and r2.headers["Idempotent-Replayed"] == "true"
    assert not any(key in row for row in await _dump(pool))
    async with pool.acquire() as conn:
        kept = await conn.fetchval("SELECT key_hash FROM idempotency_keys")
    assert kept == hashlib.sha256(key.encode()).hexdigest()


async def test_existing_keys_are_hashed_by_the_migration(empty_schema: Any, tmp_path: Path) -> None:
    # The schema as it was before 005, with a key kept in clear; then the migrations of today.
    before = tmp_path / "sql"
    before.mkdir()
    for f in SQL_DIR.glob("00[1-4]_*.sql"):
        shutil.copy(f, before)
    url = await empty_schema()
    await migrate(url, before)
    conn = await connect(url)
    try:
        client, _key, _secret = await store.create_api_client(conn, "old")
        await conn.execute(
            """INSERT INTO idempotency_keys (client_id, key, request_hash, state, response_status,
                   response_body, created_at, expires_at)
               VALUES ($1, 'old-key-1', 'h', 'done', 201, '"{}"', now(),
                       now() + interval '1 day')""",
            client["id"],
        )
        assert "005_idempotency_hash.sql" in await migrate(conn)
        assert await conn.fetchval("SELECT key_hash FROM idempotency_keys") == (
            hashlib.sha256(b"old-key-1").hexdigest()
        )
        # The hashed row still answers a replay of its key.
        saved = await store.begin_idempotent(
            conn,
            client_id=client["id"],
            key="old-key-1",
            request_hash="h",
            now=await conn.fetchval("SELECT now()"),
        )
        assert saved == {"status": 201, "body": {}}
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
async def test_a_body_that_is_not_json_is_415(
    client: TestClient, auth: dict, pool: asyncpg.Pool, content_type: str | None
) -> None:
    headers = {**auth, "Content-Type": content_type or ""}
    data = json.dumps(body()).encode()
    doc = await _problem(await client.post(P, data=data, headers=headers), 415)
    assert doc["type"] == "urn:ivrpay:problem:unsupported-media-type"
    assert await store.list_payments(pool, now=await _now(pool)) == ([], None)
    # An action route's empty POST needs no Content-Type; JSON with a charset is JSON.
    created = await client.post(
        P, data=data, headers={**auth, "Content-Type": "application/json; charset=utf-8"}
    )
    assert created.status == 201
    payment_id = (await created.json())["id"]
    r = await client.post(f"{P}/{payment_id}/cancel", headers=auth)
    assert r.status == 200, await r.text()
    r = await client.post(
        f"{P}/{payment_id}/capture", data=b"{}", headers={**auth, "Content-Type": "text/plain"}
    )
    assert r.status == 415


async def _now(pool: asyncpg.Pool) -> Any:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT now()")
