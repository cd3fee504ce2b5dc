"""Admin decisions over HTTP: a needs_review payment decided with who and why; the audit log
filtered by who, what and day; disabling a user ends their sessions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from ivrpay import store
from tests.support.gateway import GATEWAY_TIMEOUT_CARD, future_expiry
from tests.web.conftest import Screen, form_csrf, http_sign_in

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _unknown_payment(screen: Screen, order_id: str) -> dict:
    client = await store.ensure_default_client(screen.pool)
    payment = await store.create_payment(
        screen.pool,
        client_id=client["id"],
        order_id=order_id,
        amount=3000,
        language="en",
        now=datetime.now(UTC),
    )
    call = screen.call(
        [f"{GATEWAY_TIMEOUT_CARD}#", future_expiry(), "123", "1"], code=payment["code"]
    )
    await call.start()
    record = await call.wait()
    assert record.variables.get("IVRPAY_STATUS") == "UNKNOWN"
    return await store.mark_needs_review(
        screen.pool, payment["id"], now=datetime.now(UTC), reason="reconciliation gave up"
    )


async def test_a_review_is_decided_with_who_and_why(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    payment = await _unknown_payment(screen, "web-review-1")
    assert await http_sign_in(http, "admin") == 303
    async with http.get("/admin/reviews") as r:
        page = await r.text()
    assert "web-review-1" in page and "reconciliation gave up" in page
    assert "ExecTran" in page  # the gateway's evidence: its calls and codes
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    url = f"/admin/reviews/{payment['id']}"
    async with http.post(url, data={"csrf": csrf, "decision": "failed"}) as r:
        assert r.status == 422  # a decision needs its reason
    async with http.post(
        url, data={"csrf": csrf, "decision": "failed", "note": "no charge at GMO"}
    ) as r:
        assert r.status == 200 and "web-review-1" not in await r.text()
    after = await store.get_payment(screen.pool, payment["id"])
    assert after["status"] == "failed" and not after["needs_review"]
    rows, _ = await store.screen.search_audit(screen.pool, action="review_resolved")
    assert rows[0]["actor"] == "screen:admin"
    assert rows[0]["data"] == {"decision": "failed", "note": "no charge at GMO"}


async def test_the_audit_log_is_filtered(screen: Screen, http: aiohttp.ClientSession) -> None:
    assert await http_sign_in(http, "opera") == 303
    assert await http_sign_in(http, "admin") == 303
    async with http.get("/admin/audit", params={"actor": "screen:opera", "action": "signin"}) as r:
        page = await r.text()
    actions = re.findall(r'<tr data-action="([^"]+)">', page)
    assert actions and set(actions) == {"signin"}
    assert "screen:admin" not in page.split('id="audit"')[1]
    today = datetime.now(screen.settings.tz).strftime("%Y-%m-%d")
    async with http.get("/admin/audit", params={"day": today, "action": "signin"}) as r:
        assert len(re.findall(r'data-action="signin"', await r.text())) >= 2
    async with http.get("/admin/audit", params={"day": "2001-01-01"}) as r:
        assert 'data-action="' not in await r.text()


async def test_disabling_a_user_signs_them_out(screen: Screen) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(base_url=screen.url, cookie_jar=jar) as op,
        aiohttp.ClientSession(base_url=screen.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as ad,
    ):
        assert await http_sign_in(op, "opera2") == 303
        async with op.get("/payments/new", allow_redirects=False) as r:
            assert r.status == 200
        assert await http_sign_in(ad, "admin") == 303
        csrf = await form_csrf(ad, "/admin/users")
        uid = screen.users["opera2"]["id"]
        async with ad.post(
            f"/admin/users/{uid}/enabled",
            data={"csrf": csrf, "enabled": "0"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with op.get("/payments/new", allow_redirects=False) as r:
            assert r.status == 303  # signed out at once
        assert await http_sign_in(op, "opera2") == 401
        rows, _ = await store.screen.search_audit(screen.pool, action="user_disabled")
        assert rows[0]["target"] == "user:opera2" and rows[0]["actor"] == "screen:admin"


async def test_a_client_s_webhook_deliveries_are_listed(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    client, _key, _secret = await store.create_api_client(
        screen.pool, "hooked", "http://127.0.0.1:9/hook"
    )
    payment = await store.create_payment(
        screen.pool,
        client_id=client["id"],
        order_id="web-hook-1",
        amount=100,
        now=datetime.now(UTC),
    )
    await store.cancel_payment(screen.pool, payment["id"], now=datetime.now(UTC), actor="test")
    assert await http_sign_in(http, "admin") == 303
    async with http.get("/admin/keys") as r:
        page = await r.text()
    assert 'data-client="hooked"' in page and "http://127.0.0.1:9/hook" in page
    async with http.get(f"/admin/keys/{client['id']}/deliveries") as r:
        assert r.status == 200
        page = await r.text()
    assert 'data-type="payment.canceled"' in page
    assert f"/payments/{payment['id']}" in page


async def test_a_revoked_key_is_refused_at_once(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    client, key, _secret = await store.create_api_client(screen.pool, "to-revoke")
    api = f"{screen.url}/api/v1/payments?order_id=none"
    bearer = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=bearer) as api_http:
        async with api_http.get(api) as r:
            assert r.status == 200
        assert await http_sign_in(http, "admin") == 303
        csrf = await form_csrf(http, "/admin/keys")
        url = f"/admin/keys/{client['id']}/revoke"
        async with http.post(url, data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 200 and 'id="confirm-revoke"' in await r.text()
        async with api_http.get(api) as r:
            assert r.status == 200  # asked to confirm: nothing changed yet
        async with http.post(url, data={"csrf": csrf, "confirm": "1"}, allow_redirects=False) as r:
            assert r.status == 303
        async with api_http.get(api) as r:
            assert r.status == 401
            assert (await r.json())["detail"] == "Unknown or disabled API key."
    async with http.post(url, data={"csrf": csrf, "confirm": "1"}, allow_redirects=False) as r:
        assert r.status == 303  # revoking again changes nothing and is not audited twice
    rows, _ = await store.screen.search_audit(screen.pool, action="apikey_revoked")
    assert [(r["actor"], r["target"]) for r in rows] == [("screen:admin", f"client:{client['id']}")]
    default = await store.ensure_default_client(screen.pool)
    async with http.post(
        f"/admin/keys/{default['id']}/revoke", data={"csrf": csrf, "confirm": "1"}
    ) as r:
        assert r.status == 404  # the screen's own client is not a key
    async with http.post("/admin/keys/nonsense/revoke", data={"csrf": csrf}) as r:
        assert r.status == 404


async def test_the_screen_says_the_database_is_away_with_503(
    screen: Screen, http: aiohttp.ClientSession, database_url: str
) -> None:
    assert await http_sign_in(http, "admin") == 303
    db = await screen.pool.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(urlsplit(database_url)._replace(path="/postgres").geturl())
    try:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", db
        )
        async with http.get("/admin/keys") as r:
            assert r.status == 503
            assert "データベースに接続できません" in await r.text()
    finally:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        await admin.close()
    async with http.get("/admin/keys") as r:
        assert r.status == 200
