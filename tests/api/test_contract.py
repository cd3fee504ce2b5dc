"""Contract checks from the spec review: the cancel answer in every status, a cursor that keeps
its query, TranDate (JST) rendered with an offset, replays byte for byte, and the webhook events
in the OpenAPI document and in the bodies actually queued."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema_rs import Draft202012Validator

from ivrpay import store
from ivrpay.api.openapi import build_openapi
from ivrpay.config import Settings
from tests.api.conftest import Clock, body

P = "/api/v1/payments"
DECLINE = {"code": "42G020000", "category": "declined", "message": "insufficient balance"}
SUCCESS = {
    "result": {"approve": "1234567", "tran_id": "1" * 28, "tran_date": "20300101180000"},
    "card": {"brand": "VISA", "last4": "1111"},
}


async def create(client: TestClient, auth: dict[str, str], **overrides: Any) -> dict[str, Any]:
    r = await client.post(P, json=body(**overrides), headers=auth)
    assert r.status == 201, await r.text()
    return await r.json()


async def _processing(pool: Any, pid: str, clock: Clock) -> tuple[store.Claim, str]:
    claim = await store.claim_payment(pool, pid, owner="test", now=clock(), lease_s=30)
    assert claim.ok, claim.reason
    order_id = await store.start_execution(
        pool, pid, claim.token, now=clock(), max_per_payment=3, max_per_call=2
    )
    await store.move_to_processing(pool, pid, claim.token, order_id=order_id, now=clock())
    return claim, order_id


async def _bring_to(status: str, pool: Any, pid: str, clock: Clock) -> None:
    """Move a fresh pending payment to ``status`` the way the call flow and workers do."""
    if status == "pending":
        return
    if status == "expired":
        await store.expire_payments(pool, now=clock() + timedelta(days=1))
        return
    if status == "canceled":
        await store.cancel_payment(pool, pid, now=clock())
        return
    if status in ("in_call", "abandoned"):
        claim = await store.claim_payment(pool, pid, owner="test", now=clock(), lease_s=30)
        assert claim.ok
        if status == "abandoned":
            await store.end_call(pool, pid, claim.token, now=clock())
        return
    claim, order_id = await _processing(pool, pid, clock)
    if status == "processing":
        return
    outcome: dict[str, Any] = SUCCESS if status == "succeeded" else {"error": DECLINE}
    await store.record_gateway_result(
        pool, pid, claim.token, order_id=order_id, status=status, now=clock(), **outcome
    )
    await store.end_call(pool, pid, claim.token, now=clock())


CANCEL_ANSWERS = {
    "pending": (200, "canceled"),
    "failed": (200, "canceled"),
    "abandoned": (200, "canceled"),
    "in_call": (202, "in_call"),
    "processing": (409, None),
    "unknown": (409, None),
    "succeeded": (409, None),
    "canceled": (409, None),
    "expired": (409, None),
}


@pytest.mark.parametrize("status", sorted(CANCEL_ANSWERS))
async def test_cancel_answer_in_every_status(
    client: TestClient, auth: dict, pool: Any, clock: Clock, status: str
) -> None:
    p = await create(client, auth, expires_in=60)
    await _bring_to(status, pool, p["id"], clock)
    assert (await store.get_payment(pool, p["id"]))["status"] == status
    code, after = CANCEL_ANSWERS[status]
    r = await client.post(f"{P}/{p['id']}/cancel", headers=auth)
    assert r.status == code, await r.text()
    got = await r.json()
    if after is None:
        assert r.content_type == "application/problem+json"
        assert got["type"] == "urn:ivrpay:problem:not-cancelable" and status in got["detail"]
        assert (await store.get_payment(pool, p["id"]))["status"] == status  # unchanged
    else:
        assert got["status"] == after
        assert got["cancel_requested"] is (status == "in_call")


async def test_tran_date_in_jst_is_answered_with_an_offset(
    client: TestClient, auth: dict, pool: Any, clock: Clock
) -> None:
    p = await create(client, auth)
    await _bring_to("succeeded", pool, p["id"], clock)
    got = await (await client.get(f"{P}/{p['id']}", headers=auth)).json()
    # The gateway's 20300101180000 is 18:00 in Japan: 09:00 UTC.
    tran_date = datetime.fromisoformat(got["result"]["tran_date"])
    assert tran_date.utcoffset() is not None
    assert tran_date == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    for name in ("created_at", "updated_at", "expires_at"):
        assert datetime.fromisoformat(got[name]).utcoffset() is not None
    assert datetime.fromisoformat(got["call"]["ended_at"]).utcoffset() is not None
    assert datetime.fromisoformat(got["executions"][0]["started_at"]).utcoffset() is not None


async def _pages(client: TestClient, auth: dict, first: dict[str, str]) -> list[str]:
    """Every id a client sees following next_cursor alone after the first request."""
    seen: list[str] = []
    params: dict[str, str] = first
    while True:
        r = await client.get(P, params=params, headers=auth)
        assert r.status == 200, await r.text()
        page = await r.json()
        seen += [x["id"] for x in page["items"]]
        if page["next_cursor"] is None:
            return seen
        params = {"cursor": page["next_cursor"], "limit": first.get("limit", "50")}


async def test_a_cursor_keeps_the_query_it_pages(
    client: TestClient, auth: dict, clock: Clock
) -> None:
    ids = []
    for i in range(6):
        clock.advance(1)
        ids.append((await create(client, auth, order_id=f"C-{i}"))["id"])
    for pid in ids[::2]:
        clock.advance(1)
        assert (await client.post(f"{P}/{pid}/cancel", headers=auth)).status == 200
    for i in range(6, 8):  # pending payments changed after the canceled ones
        clock.advance(1)
        ids.append((await create(client, auth, order_id=f"C-{i}"))["id"])

    # Page 2 of "status=canceled" is canceled payments too, not every payment.
    seen = await _pages(client, auth, {"status": "canceled", "limit": "1"})
    assert seen == ids[0:6:2]

    # A poller's page 2 still holds back rows changed in the last 5 s.
    since = (clock.now - timedelta(hours=1)).isoformat()
    clock.advance(5.5)
    fresh = (await create(client, auth, order_id="C-late"))["id"]
    seen = await _pages(client, auth, {"updated_since": since, "limit": "2"})
    assert fresh not in seen and sorted(seen) == sorted(ids)

    # A cursor used with another query is refused, not silently mixed.
    r = await client.get(P, params={"status": "canceled", "limit": "1"}, headers=auth)
    cursor = (await r.json())["next_cursor"]
    r = await client.get(P, params={"cursor": cursor, "status": "pending"}, headers=auth)
    assert r.status == 422
    assert [e["field"] for e in (await r.json())["errors"]] == ["cursor"]
    # Repeating the same query with the cursor is fine.
    r = await client.get(P, params={"cursor": cursor, "status": "canceled"}, headers=auth)
    assert r.status == 200 and [x["id"] for x in (await r.json())["items"]] == ids[2:6:2]


async def test_idempotent_replay_is_the_same_bytes(client: TestClient, auth: dict) -> None:
    h = {**auth, "Idempotency-Key": "bytes-1"}
    r1 = await client.post(P, json=body(metadata={"b": 1, "a": 2}), headers=h)
    r2 = await client.post(P, json=body(metadata={"b": 1, "a": 2}), headers=h)
    assert r1.status == r2.status == 201
    assert await r1.text() == await r2.text()
    assert r2.headers["Idempotent-Replayed"] == "true"

    # A recorded client error is replayed as it was, byte for byte, status and type included.
    h = {**auth, "Idempotency-Key": "bytes-2"}
    r1 = await client.post(P, json=body(), headers=h)  # order_id ORD-1 exists: 409
    r2 = await client.post(P, json=body(), headers=h)
    assert r1.status == r2.status == 409
    assert r1.content_type == r2.content_type == "application/problem+json"
    assert await r1.text() == await r2.text()


def _validator(doc: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


def test_openapi_documents_the_webhooks() -> None:
    doc = build_openapi(Settings())
    hooks = doc["webhooks"]
    assert set(hooks) == set(store.WEBHOOK_TYPES.values())
    for name, item in hooks.items():
        post = item["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        assert schema["allOf"][0] == {"$ref": "#/components/schemas/WebhookEvent"}
        assert schema["allOf"][1]["properties"]["type"] == {"const": name}
        headers = {p["name"]: p for p in post["parameters"] if p["in"] == "header"}
        assert headers["X-Ivrpay-Signature"]["required"] is True
        assert "t=<unix>,v1=" in headers["X-Ivrpay-Signature"]["description"]
        assert "2XX" in post["responses"]
    event = doc["components"]["schemas"]["WebhookEvent"]
    assert set(event["required"]) == {"id", "type", "sequence", "created_at", "payment"}
    assert event["properties"]["payment"] == {"$ref": "#/components/schemas/Payment"}


async def test_a_queued_webhook_body_is_the_documented_event_and_the_apis_snapshot(
    client: TestClient, pool: Any, clock: Clock
) -> None:
    _c, key, _s = await store.create_api_client(pool, "hooked", "http://127.0.0.1:9/hook")
    auth = {"Authorization": f"Bearer {key}"}
    p = await create(client, auth)
    r = await client.post(f"{P}/{p['id']}/cancel", headers=auth)
    assert r.status == 200
    canceled = await r.json()
    raw = await pool.fetchval(
        "SELECT body FROM webhook_deliveries WHERE payment_id = $1::uuid", p["id"]
    )
    event = json.loads(raw)
    doc = build_openapi(Settings())
    errors = [e.message for e in _validator(doc, "WebhookEvent").iter_errors(event)]
    assert errors == []
    assert event["type"] == "payment.canceled" and event["sequence"] == 2
    # The snapshot is the payment exactly as the API answered the change.
    assert event["payment"] == canceled


async def test_an_updated_since_that_leaves_the_calendar_is_refused(
    client: TestClient, auth: dict
) -> None:
    # Valid RFC 3339 text whose instant in UTC falls outside years 1–9999: a 422, never a 500.
    for value in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"):
        r = await client.get(P, params={"updated_since": value}, headers=auth)
        assert r.status == 422, await r.text()
        assert [e["field"] for e in (await r.json())["errors"]] == ["updated_since"]
    r = await client.get(P, params={"updated_since": "9999-12-31T23:59:59Z"}, headers=auth)
    assert r.status == 200


async def test_a_forged_cursor_is_refused_cleanly(client: TestClient, auth: dict) -> None:
    def forge(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    pid = "00000000-0000-0000-0000-000000000000"
    query = {"order_id": None, "status": None, "updated_since": None}
    for value in (
        ["9999-12-31T23:59:59-23:59", pid],
        ["2030-01-01T00:00:00+00:00", pid, {**query, "updated_since": "0001-01-01T00:00+01:00"}],
        ["2030-01-01T00:00:00+00:00", pid, {**query, "status": "paid"}],
        ["2030-01-01T00:00:00+00:00", pid, {"order_id": None}],
        ["2030-01-01T00:00:00", pid],
        "just text",
    ):
        r = await client.get(P, params={"cursor": forge(value)}, headers=auth)
        assert r.status == 422, (value, await r.text())
        assert [e["field"] for e in (await r.json())["errors"]] == ["cursor"]


# product.md "A payment:" word for word, and the fields "API shapes" and the cancel route add.
PRODUCT_PAYMENT = (
    "id, order_id, amount, tax, job, method, pay_times, operation, member_id, language, metadata, "
    "status, code, transfer_to, expires_at, operator, progress {step, attempts}, executions, "
    "card {brand, last4}, result {approve, tran_id, tran_date, forward, card_seq}, registration, "
    "error {code, category, message}, call {uniqueid, channel, started_at, ended_at}, created_at, "
    "updated_at"
)
PRODUCT_PARTS = {
    "executions": {"order_id", "started_at", "outcome", "error"},
    "registration": {"status", "card_seq", "error"},
    # product.md, listen-in: "operator.listen_in: true" on create.
    "operator": {"id", "callback", "listen_in"},
    # product.md, take-back: "taken_back {by, at}"; process names who redirected (issue 11).
    "taken_back": {"by", "at", "process"},
    # The listen-in that started the card entry (issue 14; product.md is silent on its record).
    "listen_in": {
        "by",
        "at",
        "operator_channel",
        "caller_channel",
        "process",
        "ended_at",
        "dtmf_mode",
        "mute",
        "muted",
    },
}
PRODUCT_EXTRA = {"settlement", "cancel_requested", "taken_back", "listen_in", "needs_review"}


def _spec_fields(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"(\w+)(?: \{([^}]*)\})?", text):
        out[m.group(1)] = {p.strip() for p in (m.group(2) or "").split(",") if p.strip()}
    return out


def test_the_payment_model_describes_every_field_of_the_product() -> None:
    doc = build_openapi(Settings())
    schemas = doc["components"]["schemas"]
    payment = schemas["Payment"]
    spec = _spec_fields(PRODUCT_PAYMENT)
    assert set(payment["properties"]) == set(spec) | PRODUCT_EXTRA
    assert set(payment["required"]) == set(payment["properties"])  # always there, maybe null

    def part(name: str) -> dict[str, Any]:
        schema = payment["properties"][name]
        schema = schema.get("items", schema)
        refs = [s["$ref"] for s in schema.get("anyOf", [schema]) if "$ref" in s]
        return schemas[refs[0].rsplit("/", 1)[1]]

    for name, inner in {**{k: v for k, v in spec.items() if v}, **PRODUCT_PARTS}.items():
        assert set(part(name)["properties"]) == inner, name
    assert part("error")["properties"]["category"]["enum"] == [
        "input",
        "declined",
        "system",
        "unknown",
    ]
    assert schemas["Registration"]["properties"]["status"]["enum"] == [
        "succeeded",
        "failed",
        "pending",
    ]
    assert schemas["Payment"]["properties"]["settlement"]["enum"] == [
        "authorized",
        "captured",
        "voided",
        "refunded",
        None,
    ]


async def test_register_ignores_amount_tax_and_job_over_http(
    client: TestClient, auth: dict
) -> None:
    # A core system that sends every field it has for a charge is not refused for a register.
    p = await create(
        client,
        auth,
        order_id="REG-ALL",
        operation="register",
        member_id="m-1",
        amount=12_000,
        tax=800,
        job="CAPTURE",
    )
    assert (p["operation"], p["job"], p["method"], p["pay_times"]) == ("register", None, None, None)
    errors = _validator(build_openapi(Settings()), "Payment").iter_errors(p)
    assert [e.message for e in errors] == []
    r = await client.post(
        P,
        json=body(order_id="REG-2", operation="register", member_id="m-1", method=1),
        headers=auth,
    )
    assert r.status == 422
    assert [e["field"] for e in (await r.json())["errors"]] == ["method"]


def test_the_payment_view_is_typed_and_renders_only_the_documented_fields() -> None:
    from ivrpay.api import models
    from ivrpay.api.openapi import PAYMENT_FIELDS
    from ivrpay.api.render import payment_json, payment_view, to_plain

    now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    snap: dict[str, Any] = {name: None for name in PAYMENT_FIELDS}
    snap.update(
        id="p-1",
        order_id="O-1",
        operation="charge",
        language="ja",
        metadata={"a": [1]},
        status="succeeded",
        code="123456",
        transfer_to="8123456",
        expires_at=now,
        created_at=now,
        updated_at=now,
        cancel_requested=False,
        needs_review=False,
        operator={"id": "op", "callback": "PJSIP/1001"},
        progress={"step": "done", "attempts": {"card_number": 1}},
        executions=[
            {"order_id": "O-1-01", "started_at": now, "outcome": "declined", "error": DECLINE},
            {"order_id": "O-1-02", "started_at": now, "outcome": "succeeded", "error": None},
        ],
        card={"brand": "VISA", "last4": "1111"},
        result={"approve": "1", "tran_id": "2", "tran_date": now, "forward": "f", "card_seq": 0},
        registration={"status": "failed", "card_seq": None, "error": DECLINE},
        internal_column="never out",
    )
    view = payment_view(snap)
    assert isinstance(view, models.Payment) and isinstance(view.progress, models.Progress)
    assert isinstance(view.executions[0].error, models.PaymentError)
    assert view.executions[1].error is None and view.error is None and view.call is None
    assert isinstance(view.registration, models.Registration)
    assert view.registration.error == models.PaymentError(**DECLINE)
    assert view.result is not None and view.result.tran_date == now
    out = payment_json(snap)
    assert tuple(out) == PAYMENT_FIELDS  # the documented fields, in order, nothing internal
    assert out["executions"][0]["error"] == DECLINE and out["card"] == snap["card"]
    doc = build_openapi(Settings())
    assert [e.message for e in _validator(doc, "Payment").iter_errors(to_plain(out))] == []
