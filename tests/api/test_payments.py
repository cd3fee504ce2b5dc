"""Every route of the payment resource and every error, over real HTTP and real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from ivrpay import store
from ivrpay.api.bodies import request_hash
from tests.api.conftest import Clock, MakeClient, body

P = "/api/v1/payments"
PROBLEM = "application/problem+json"


async def create(client: TestClient, auth: dict[str, str], **overrides: Any) -> dict[str, Any]:
    r = await client.post(P, json=body(**overrides), headers=auth)
    assert r.status == 201, await r.text()
    return await r.json()


async def problem(r: Any, status: int) -> dict[str, Any]:
    text = await r.text()
    assert r.status == status, text
    assert r.content_type == PROBLEM
    doc = json.loads(text)
    assert doc["status"] == status and doc["title"] and doc["type"]
    assert "Traceback" not in text
    return doc


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    assert t.utcoffset() is not None, text
    return t


# -- create / get ---------------------------------------------------------------------------------


async def test_create_answers_the_payment(client: TestClient, auth: dict, clock: Clock) -> None:
    p = await create(
        client,
        auth,
        operator={"id": "op-1", "callback": "PJSIP/1001"},
        metadata={"customer": "山田", "n": 1},
    )
    assert p["status"] == "pending" and p["order_id"] == "ORD-1"
    assert (p["amount"], p["tax"], p["job"], p["method"], p["operation"]) == (
        12000,
        800,
        "AUTH",
        1,
        "charge",
    )
    assert p["language"] == "ja" and p["metadata"] == {"customer": "山田", "n": 1}
    assert p["operator"] == {"id": "op-1", "callback": "PJSIP/1001", "listen_in": False}
    assert len(p["code"]) == 6 and p["code"].isdigit() and p["transfer_to"] == "8" + p["code"]
    assert parse_time(p["created_at"]) == clock.now
    assert parse_time(p["expires_at"]) == clock.now + timedelta(seconds=1800)
    assert p["progress"]["step"] == "waiting" and p["executions"] == []
    assert p["card"] is None and p["result"] is None and p["error"] is None
    assert p["cancel_requested"] is False

    r = await client.get(f"{P}/{p['id']}", headers=auth)
    assert r.status == 200 and await r.json() == p


async def test_create_register_and_options(client: TestClient, auth: dict) -> None:
    p = await create(
        client,
        auth,
        order_id="REG-1",
        operation="register",
        member_id="member-1",
        amount=None,
        tax=None,
        language="en",
        expires_in=120,
    )
    assert (p["operation"], p["member_id"], p["job"], p["language"]) == (
        "register",
        "member-1",
        None,
        "en",
    )
    assert parse_time(p["expires_at"]) - parse_time(p["created_at"]) == timedelta(seconds=120)
    p = await create(client, auth, order_id="INST-1", method=2, pay_times=6, job="CAPTURE")
    assert (p["method"], p["pay_times"], p["job"]) == (2, 6, "CAPTURE")


async def test_validation_errors_are_listed(client: TestClient, auth: dict) -> None:
    r = await client.post(
        P,
        json={"order_id": "bad id!", "amount": True, "method": 2, "surprise": 1},
        headers=auth,
    )
    doc = await problem(r, 422)
    fields = {e["field"]: e["message"] for e in doc["errors"]}
    assert set(fields) == {"order_id", "amount", "pay_times", "surprise"}
    assert fields["surprise"] == "unknown field"
    assert doc["type"] == "urn:ivrpay:problem:validation"


async def test_malformed_bodies(client: TestClient, auth: dict) -> None:
    h = {**auth, "Content-Type": "application/json"}
    for raw in (b"{", b"", b"   ", b'{"amount": NaN}', b"\xff\xfe", b"[" * 30_000):
        doc = await problem(await client.post(P, data=raw, headers=h), 400)
        assert doc["type"] == "urn:ivrpay:problem:malformed-request"
    await problem(await client.post(P, data=b"[1]", headers=h), 422)
    big = json.dumps(body(metadata={"k": "x" * 70_000})).encode()
    await problem(await client.post(P, data=big, headers=h), 413)


async def test_order_id_conflict(client: TestClient, auth: dict) -> None:
    await create(client, auth)
    doc = await problem(await client.post(P, json=body(), headers=auth), 409)
    assert doc["type"] == "urn:ivrpay:problem:order-id-exists"


async def test_not_found(client: TestClient, auth: dict) -> None:
    for pid in (str(uuid.uuid4()), "not-a-uuid", "%00", "1" * 300):
        await problem(await client.get(f"{P}/{pid}", headers=auth), 404)
    await problem(await client.post(f"{P}/{uuid.uuid4()}/cancel", headers=auth), 404)
    await problem(await client.get("/api/v1/nothing-here", headers=auth), 404)
    r = await client.delete(f"{P}/{uuid.uuid4()}", headers=auth)
    await problem(r, 405)
    assert "GET" in r.headers["Allow"]


# -- auth -----------------------------------------------------------------------------------------


async def test_api_key_required(client: TestClient, auth: dict, pool: Any) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": auth["Authorization"] + "x"},
    ):
        r = await client.get(P, headers=headers)
        await problem(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get(P, headers=auth)).status == 200
    # The scheme is case-insensitive (RFC 9110).
    key = auth["Authorization"].split(" ", 1)[1]
    assert (await client.get(P, headers={"Authorization": f"bearer {key}"})).status == 200
    # A disabled client's key stops working at once.
    c = await store.get_api_client_by_key(pool, key)
    await store.update_api_client(pool, c["id"], enabled=False)
    await problem(await client.get(P, headers=auth), 401)


async def test_public_routes(client: TestClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status == 200 and (await r.json())["openapi"].startswith("3.1")
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200


# -- list -----------------------------------------------------------------------------------------


async def test_list_pages_in_update_order(client: TestClient, auth: dict, clock: Clock) -> None:
    ids = []
    for i in range(5):
        clock.advance(1)
        ids.append((await create(client, auth, order_id=f"L-{i}"))["id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        q = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get(P, params=q, headers=auth)
        assert r.status == 200
        page = await r.json()
        assert len(page["items"]) <= 2
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3

    # A change moves the payment to the end.
    clock.advance(1)
    r = await client.post(f"{P}/{ids[0]}/cancel", headers=auth)
    assert r.status == 200
    page = await (await client.get(P, headers=auth)).json()
    assert [p["id"] for p in page["items"]] == ids[1:] + ids[:1]

    page = await (await client.get(P, params={"status": "canceled"}, headers=auth)).json()
    assert [p["id"] for p in page["items"]] == ids[:1]
    page = await (await client.get(P, params={"order_id": "L-3"}, headers=auth)).json()
    assert [p["id"] for p in page["items"]] == ids[3:4]


async def test_list_holds_back_recent_rows_for_pollers(
    client: TestClient, auth: dict, clock: Clock
) -> None:
    since = clock.now - timedelta(seconds=60)
    p = await create(client, auth)
    q = {"updated_since": since.isoformat()}
    page = await (await client.get(P, params=q, headers=auth)).json()
    assert page["items"] == []  # changed within the last 5 s: a later commit may still land
    clock.advance(5.001)
    page = await (await client.get(P, params=q, headers=auth)).json()
    assert [x["id"] for x in page["items"]] == [p["id"]]
    # An unencoded "+" (a space once decoded) in the offset is understood.
    raw = f"{P}?updated_since={since.strftime('%Y-%m-%dT%H:%M:%S')}+00:00"
    page = await (await client.get(raw, headers=auth)).json()
    assert [x["id"] for x in page["items"]] == [p["id"]]


async def test_list_errors(client: TestClient, auth: dict) -> None:
    for q in (
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"status": "paid"},
        {"updated_since": "2025-01-01"},
        {"cursor": "garbage"},
        {"colour": "blue"},
    ):
        doc = await problem(await client.get(P, params=q, headers=auth), 422)
        assert [e["field"] for e in doc["errors"]] == list(q), q


# -- cancel ---------------------------------------------------------------------------------------


async def test_cancel_pending_then_again(client: TestClient, auth: dict) -> None:
    p = await create(client, auth)
    r = await client.post(f"{P}/{p['id']}/cancel", headers=auth)
    assert r.status == 200
    assert (await r.json())["status"] == "canceled"
    doc = await problem(await client.post(f"{P}/{p['id']}/cancel", headers=auth), 409)
    assert doc["type"] == "urn:ivrpay:problem:not-cancelable"
    await problem(await client.post(f"{P}/{p['id']}/cancel", json={"why": 1}, headers=auth), 422)


async def test_cancel_during_a_call_is_recorded(
    client: TestClient, auth: dict, pool: Any, clock: Clock
) -> None:
    p = await create(client, auth)
    claim = await store.claim_payment(pool, p["id"], owner="test", now=clock(), lease_s=30)
    assert claim.ok
    r = await client.post(f"{P}/{p['id']}/cancel", headers=auth)
    assert r.status == 202
    got = await r.json()
    assert got["status"] == "in_call" and got["cancel_requested"] is True

    # Once processing, it is too late.
    q = await create(client, auth, order_id="ORD-2")
    claim = await store.claim_payment(pool, q["id"], owner="test", now=clock(), lease_s=30)
    order_id = await store.start_execution(
        pool, q["id"], claim.token, now=clock(), max_per_payment=3, max_per_call=2
    )
    await store.move_to_processing(pool, q["id"], claim.token, order_id=order_id, now=clock())
    await problem(await client.post(f"{P}/{q['id']}/cancel", headers=auth), 409)


# -- idempotency ----------------------------------------------------------------------------------


async def test_idempotent_create_replays(client: TestClient, auth: dict) -> None:
    h = {**auth, "Idempotency-Key": "req-1"}
    r1 = await client.post(P, json=body(), headers=h)
    same_value = json.dumps(body(), indent=2)  # the same JSON value in other bytes
    r2 = await client.post(P, data=same_value, headers={**h, "Content-Type": "application/json"})
    assert r1.status == r2.status == 201
    assert await r1.json() == await r2.json()
    assert "Idempotent-Replayed" not in r1.headers and r2.headers["Idempotent-Replayed"] == "true"
    page = await (await client.get(P, headers=auth)).json()
    assert len(page["items"]) == 1

    doc = await problem(await client.post(P, json=body(amount=1), headers=h), 409)
    assert doc["type"] == "urn:ivrpay:problem:idempotency-mismatch"
    # The same key on another route is another request.
    p = (await r1.json())["id"]
    await problem(await client.post(f"{P}/{p}/cancel", headers=h), 409)


async def test_idempotency_is_per_api_key(client: TestClient, auth: dict, pool: Any) -> None:
    _c, other_key, _s = await store.create_api_client(pool, "other")
    other = {"Authorization": f"Bearer {other_key}", "Idempotency-Key": "same"}
    r1 = await client.post(
        P, json=body(order_id="K-1"), headers={**auth, "Idempotency-Key": "same"}
    )
    r2 = await client.post(P, json=body(order_id="K-2"), headers=other)
    assert r1.status == r2.status == 201


async def test_idempotency_records_client_errors_but_not_validation(
    client: TestClient, auth: dict
) -> None:
    await create(client, auth)
    h = {**auth, "Idempotency-Key": "dup"}
    d1 = await problem(await client.post(P, json=body(), headers=h), 409)
    r = await client.post(P, json=body(), headers=h)
    assert r.headers["Idempotent-Replayed"] == "true"
    assert await problem(r, 409) == d1
    # A refused (422) body is not the answer to keep: fixing it under the same key works.
    h = {**auth, "Idempotency-Key": "fix-me"}
    await problem(await client.post(P, json=body(order_id="N-1", amount=0), headers=h), 422)
    assert (await client.post(P, json=body(order_id="N-1"), headers=h)).status == 201
    await problem(
        await client.post(P, json=body(), headers={**auth, "Idempotency-Key": "x y"}), 422
    )


async def test_concurrent_duplicate_is_a_conflict(
    client: TestClient, auth: dict, pool: Any, clock: Clock
) -> None:
    # The first request is still running (its key is taken, no answer yet): the duplicate gets 409.
    c = await store.get_api_client_by_key(pool, auth["Authorization"].split()[1])
    h = request_hash("POST", P, body())
    assert (
        await store.begin_idempotent(
            pool, client_id=c["id"], key="busy", request_hash=h, now=clock()
        )
        is None
    )
    r = await client.post(P, json=body(), headers={**auth, "Idempotency-Key": "busy"})
    doc = await problem(r, 409)
    assert doc["type"] == "urn:ivrpay:problem:idempotency-in-progress"

    # Two at once through HTTP: exactly one payment, and no answer but 201 or 409.
    h2 = {**auth, "Idempotency-Key": "race"}
    rs = await asyncio.gather(
        *(client.post(P, json=body(order_id="RACE"), headers=h2) for _ in range(5))
    )
    assert {r.status for r in rs} <= {201, 409} and any(r.status == 201 for r in rs)
    page = await (await client.get(P, params={"order_id": "RACE"}, headers=auth)).json()
    assert len(page["items"]) == 1


# -- capture / void / refund without a gateway -------------------------------------------------


async def test_settlement_needs_a_succeeded_payment_and_a_gateway(
    client: TestClient, auth: dict
) -> None:
    p = await create(client, auth)
    for action in ("capture", "void", "refund"):
        doc = await problem(await client.post(f"{P}/{p['id']}/{action}", headers=auth), 409)
        assert doc["type"] == "urn:ivrpay:problem:not-settleable"
        await problem(await client.post(f"{P}/{uuid.uuid4()}/{action}", headers=auth), 404)
        await problem(
            await client.post(f"{P}/{p['id']}/{action}", json={"amount": 1}, headers=auth), 422
        )


# -- webhook deliveries -----------------------------------------------------------------------


async def test_webhook_deliveries_of_a_payment(make_client: MakeClient, pool: Any) -> None:
    client = await make_client()
    _c, key, _secret = await store.create_api_client(
        pool, "hooked", webhook_url="http://127.0.0.1:9/hook"
    )
    auth = {"Authorization": f"Bearer {key}"}
    p = await create(client, auth)
    assert (await client.post(f"{P}/{p['id']}/cancel", headers=auth)).status == 200
    r = await client.get("/api/v1/webhook-deliveries", params={"payment_id": p["id"]}, headers=auth)
    assert r.status == 200
    items = (await r.json())["items"]
    assert [(d["type"], d["state"], d["payment_id"]) for d in items] == [
        ("payment.canceled", "pending", p["id"])
    ]
    assert items[0]["url"] == "http://127.0.0.1:9/hook" and items[0]["history"] == []

    # Another client does not see this client's deliveries (URLs may carry tokens).
    _c2, key2, _s2 = await store.create_api_client(pool, "other")
    r = await client.get(
        "/api/v1/webhook-deliveries",
        params={"payment_id": p["id"]},
        headers={"Authorization": f"Bearer {key2}"},
    )
    assert (await r.json())["items"] == []

    await problem(await client.get("/api/v1/webhook-deliveries", headers=auth), 422)
    await problem(
        await client.get(
            "/api/v1/webhook-deliveries", params={"payment_id": str(uuid.uuid4())}, headers=auth
        ),
        404,
    )
