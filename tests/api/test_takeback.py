"""POST /api/v1/payments/{id}/take-back over real HTTP, PostgreSQL and the AMI stand-in (the
whole call is in tests/e2e/test_call_takeback.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivrpay import store
from ivrpay.ami import AmiLink, parse_ami_url
from ivrpay.api.takeback import TakeBack
from tests.api.conftest import Clock, MakeClient, body
from tests.support.ami import AmiStandIn

CALLER = "PJSIP/caller-00000001"
TAKE_BACK = "/api/v1/payments/{}/take-back"


async def _in_call(client: Any, auth: dict[str, str], pool: Any, clock: Clock) -> dict[str, Any]:
    r = await client.post("/api/v1/payments", json=body(), headers=auth)
    payment = await r.json()
    claim = await store.claim_payment(
        pool, payment["id"], owner="test", now=clock(), lease_s=600, channel=CALLER
    )
    assert claim.ok
    return payment


async def test_without_ami_take_back_is_503_and_nothing_is_recorded(
    make_client: MakeClient, auth: dict[str, str], pool: Any, clock: Clock
) -> None:
    client = await make_client()
    payment = await _in_call(client, auth, pool, clock)
    r = await client.post(TAKE_BACK.format(payment["id"]), headers=auth)
    assert r.status == 503 and (await r.json())["type"] == "urn:ivrpay:problem:ami-unavailable"
    assert (await store.get_payment(pool, payment["id"]))["taken_back"] is None  # type: ignore[index]
    r = await client.post(TAKE_BACK.format("nope"), headers=auth)
    assert r.status == 404


async def test_take_back_redirects_and_repeats_are_refused(
    make_client: MakeClient,
    auth: dict[str, str],
    pool: Any,
    clock: Clock,
    ami_standin: AmiStandIn,
) -> None:
    link = AmiLink(parse_ami_url(ami_standin.url), backoff_s=(0.01,))
    tb = TakeBack(link, pool, owner="proc-a")
    await tb.start()
    try:
        await asyncio.wait_for(link.wait_up(), 5)
        client = await make_client(ami=tb)
        payment = await _in_call(client, auth, pool, clock)
        headers = {**auth, "Idempotency-Key": "tb-1"}
        r = await client.post(TAKE_BACK.format(payment["id"]), headers=headers)
        doc = await r.json()
        assert r.status == 202, doc
        assert doc["redirected_by"] == "proc-a"
        assert doc["payment"]["taken_back"]["by"] == "api:core system"
        assert doc["payment"]["status"] == "in_call"  # abandoned once the AGI has hung up
        (redirect,) = ami_standin.named("Redirect")
        assert redirect["Channel"] == CALLER and redirect["Context"] == "ivrpay-takeback"
        # The same key replays the answer; a new request is a conflict, and nothing is sent.
        again = await client.post(TAKE_BACK.format(payment["id"]), headers=headers)
        assert again.status == 202 and again.headers.get("Idempotent-Replayed") == "true"
        r = await client.post(TAKE_BACK.format(payment["id"]), headers=auth)
        assert r.status == 409
        assert (await r.json())["type"] == "urn:ivrpay:problem:already-taken-back"
        assert len(ami_standin.named("Redirect")) == 1
        # The call may not start a gateway execution any more.
        claim_token = await pool.fetchval(
            "SELECT lease_token FROM payments WHERE id = $1::uuid", payment["id"]
        )
        with pytest.raises(store.TakenBack):
            await store.start_execution(
                pool, payment["id"], claim_token, now=clock(), max_per_payment=3, max_per_call=2
            )
        r = await client.get("/healthz")
        assert (await r.json())["checks"]["ami"] == {"status": "ok"}
    finally:
        await tb.close()


async def test_a_refused_login_shows_in_healthz(
    make_client: MakeClient, ami_standin: AmiStandIn
) -> None:
    ami_standin.refuse_logins = True
    link = AmiLink(parse_ami_url(ami_standin.url), refused_backoff_s=(3600,))
    backing_off = asyncio.Event()

    async def pause(delay: float) -> None:  # the link waits before its next try
        backing_off.set()
        await asyncio.Event().wait()

    link.pause = pause
    tb = TakeBack(link, None, owner="proc-a")
    await tb.start()
    try:
        await asyncio.wait_for(backing_off.wait(), 5)
        client = await make_client(ami=tb)
        doc = await (await client.get("/healthz")).json()
        ami = doc["checks"]["ami"]
        assert ami["status"] == "down" and ami["detail"] == "login refused" and ami["since"]
        assert doc["status"] == "degraded"
    finally:
        await tb.close()
