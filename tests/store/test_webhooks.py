"""Webhooks: outbox rows written with the change, delivered signed to a real local receiver,
retried with back-off on failure (time driven by the test), every attempt recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from ivrpay import store
from ivrpay.config import WEBHOOK_BACKOFF_S
from ivrpay.workers import WebhookDeliverer
from tests.store.helpers import SUCCESS, at, claimed, new_payment, processing
from tests.store.test_payments import PAYMENT_KEYS

DAY = 86400.0


@dataclass
class Receiver:
    url: str
    fail_with: list[int] = field(default_factory=list)  # statuses to answer first, in order
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if self.fail_with:
            return web.Response(status=self.fail_with.pop(0))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    rec = Receiver(url="")
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def deliverer(pool: asyncpg.Pool) -> AsyncIterator[WebhookDeliverer]:
    d = WebhookDeliverer(
        pool, backoff_s=WEBHOOK_BACKOFF_S, horizon_s=DAY, interval_s=1, timeout_s=5
    )
    try:
        yield d
    finally:
        await d.close()


def _verify(secret: str, header: str, body: bytes) -> int:
    parts = dict(p.split("=", 1) for p in header.split(","))
    mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], mac.hexdigest())
    return int(parts["t"])


async def _succeeded(pool: asyncpg.Pool, client: dict[str, Any]) -> dict[str, Any]:
    p = await new_payment(pool, client)
    claim, order_id = await processing(pool, p)
    return await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(1), **SUCCESS
    )


async def test_delivered_signed_and_redelivered_after_two_failures(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: WebhookDeliverer
) -> None:
    client, _key, secret = await store.create_api_client(pool, "core", receiver.url)
    p = await _succeeded(pool, client)
    receiver.fail_with = [500, 503]
    assert await store.count_webhook_backlog(pool) == 1

    assert await deliverer.run_once(at(10)) == 1  # fails: next try 10 s later
    assert await deliverer.run_once(at(19)) == 0
    assert await deliverer.run_once(at(20)) == 1  # fails: next try 30 s later
    assert await deliverer.run_once(at(49)) == 0
    assert await deliverer.run_once(at(50)) == 1  # delivered
    assert await deliverer.run_once(at(10_000)) == 0
    assert len(receiver.received) == 3
    assert await store.count_webhook_backlog(pool) == 0

    bodies = {body for _, body in receiver.received}
    assert len(bodies) == 1  # the same event every time
    headers, body = receiver.received[-1]
    assert _verify(secret, headers["X-Ivrpay-Signature"], body) == int(at(50).timestamp())
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert set(event) == {"id", "type", "sequence", "created_at", "payment"}
    assert event["type"] == "payment.succeeded" and headers["X-Ivrpay-Event"] == event["type"]
    assert event["sequence"] == 5
    assert set(event["payment"]) == PAYMENT_KEYS
    assert event["payment"]["id"] == p["id"] and event["payment"]["status"] == "succeeded"
    assert event["payment"]["card"] == {"brand": "VISA", "last4": "1111"}
    assert event["payment"]["created_at"] == p["created_at"].isoformat()

    [delivery] = await store.list_deliveries(pool, payment_id=p["id"])
    assert delivery["id"] == event["id"]
    assert (delivery["state"], delivery["attempts"], delivery["type"]) == (
        "delivered",
        3,
        "payment.succeeded",
    )
    assert [h["status_code"] for h in delivery["history"]] == [500, 503, 204]
    assert [h["attempted_at"] for h in delivery["history"]] == [at(10), at(20), at(50)]
    assert delivery["history"][0]["error"] == "HTTP 500"


async def test_event_types_and_clients_without_a_url(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    client, _, _ = await store.create_api_client(pool, "core", receiver.url)
    quiet, _, _ = await store.create_api_client(pool, "quiet")
    canceled = await new_payment(pool, client)
    await store.cancel_payment(pool, canceled["id"], now=at(1))
    expired = await new_payment(pool, client, expires_in=60)
    await store.expire_payments(pool, now=at(60))
    abandoned = await new_payment(pool, client)
    claim = await claimed(pool, abandoned)
    await store.record_progress(pool, abandoned["id"], claim.token, now=at(2), step="expiry")
    await store.end_call(pool, abandoned["id"], claim.token, now=at(3))
    paid = await _succeeded(pool, client)
    await store.record_settlement(pool, paid["id"], action="capture", now=at(4))
    await store.record_settlement(pool, paid["id"], action="refund", now=at(5))
    silent = await new_payment(pool, quiet)
    await store.cancel_payment(pool, silent["id"], now=at(1))

    types = {
        p["id"]: [d["type"] for d in await store.list_deliveries(pool, payment_id=p["id"])]
        for p in (canceled, expired, abandoned, paid, silent)
    }
    assert types == {
        canceled["id"]: ["payment.canceled"],
        expired["id"]: ["payment.expired"],
        abandoned["id"]: ["payment.abandoned"],  # no webhook for progress or in_call
        paid["id"]: ["payment.succeeded", "payment.captured", "payment.refunded"],
        silent["id"]: [],
    }
    everything = await store.list_deliveries(pool, client_id=client["id"])
    assert len(everything) == 6


async def test_gives_up_after_the_horizon_and_records_errors(pool: asyncpg.Pool) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client, _, _ = await store.create_api_client(pool, "gone", f"http://127.0.0.1:{port}/x")
    p = await new_payment(pool, client)
    await store.cancel_payment(pool, p["id"], now=at(0))
    d = WebhookDeliverer(pool, backoff_s=(10, 30), horizon_s=90, interval_s=1, timeout_s=5)
    try:
        times = [0, 10, 40, 70]
        for t in times:
            assert await d.run_once(at(t)) == 1
        assert await d.run_once(at(10**6)) == 0  # given up: 70 + 30 is past the 90 s horizon
    finally:
        await d.close()
    [delivery] = await store.list_deliveries(pool, payment_id=p["id"])
    assert delivery["state"] == "failed" and delivery["attempts"] == 4
    assert all(h["status_code"] is None and h["error"] for h in delivery["history"])
    assert "Connect" in delivery["history"][0]["error"]


async def test_claims_are_exclusive_and_a_lost_sender_is_retried(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    client, _, _ = await store.create_api_client(pool, "core", receiver.url)
    p = await new_payment(pool, client)
    await store.cancel_payment(pool, p["id"], now=at(0))
    first = await store.claim_deliveries(pool, now=at(1), lease_s=40)
    assert [d["payment_id"] for d in first] == [p["id"]]
    assert await store.claim_deliveries(pool, now=at(2), lease_s=40) == []
    # The claimer died without recording: after its hold anyone sends it.
    again = await store.claim_deliveries(pool, now=at(41), lease_s=40)
    assert [d["id"] for d in again] == [first[0]["id"]]


def test_sign_matches_the_documented_format() -> None:
    header = store.sign("whsec_x", b'{"a":1}', 1700000000)
    expected = hmac.new(b"whsec_x", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
