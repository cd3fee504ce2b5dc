"""The screen over plain HTTP: security headers, cookies, CSRF, lockout, expiry, roles on every
route (an operator gets 403 on each admin page, for every method it has)."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from tests.web.conftest import Screen, form_csrf, http_sign_in

pytestmark = pytest.mark.asyncio(loop_scope="module")
ADMIN_ROUTES = 16


@pytest.fixture(scope="module")
def screen_overrides() -> dict[str, Any]:
    # Small numbers, so that the lockout and expiry are reached without waiting.
    return {
        "signin_max_failures": 3,
        "signin_lockout_s": 600.0,
        "session_idle_s": 600.0,
        "session_max_s": 1000.0,
    }


def _shift(screen: Screen, delta: timedelta) -> None:
    """The HTTP side's clock runs ``delta`` ahead from now on."""
    app = screen.service.http.app
    with warnings.catch_warnings():  # the started app's state is frozen: tests may bend it
        warnings.simplefilter("ignore", DeprecationWarning)
        app[keys.CLOCK] = lambda: datetime.now(UTC) + delta


@pytest.fixture(autouse=True)
def _real_clock(screen: Screen) -> Any:
    yield
    _shift(screen, timedelta(0))


async def test_root_leads_to_sign_in_and_every_page_has_the_security_headers(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    async with http.get("/", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/signin"
    async with http.get("/signin") as r:
        h = r.headers
        assert r.status == 200
        csp = h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
        assert h["Cache-Control"] == "no-store"
        body = await r.text()
    # No inline script or style for the CSP to refuse.
    assert "<script>" not in body and "style=" not in body and "<style" not in body
    assert await http_sign_in(http, "opera") == 303
    async with http.get("/payments") as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


async def test_the_session_cookie_is_http_only_strict_and_secure_behind_tls_proxies(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    csrf = await form_csrf(http, "/signin")
    data = {"csrf": csrf, "name": "opera", "password": "operator-pass-1"}
    async with http.post("/signin", data=data, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/payments/new"
        cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("ivrpay_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie

    async with aiohttp.ClientSession(
        base_url=screen.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as other:
        csrf = await form_csrf(other, "/signin")
        headers = {"X-Forwarded-Proto": "https"}
        async with other.post(
            "/signin", data={**data, "csrf": csrf}, headers=headers, allow_redirects=False
        ) as r:
            assert r.status == 303
            cookie = next(
                c for c in r.headers.getall("Set-Cookie") if c.startswith("ivrpay_session=")
            )
    assert "Secure" in cookie


async def test_an_admin_lands_on_the_list(screen: Screen, http: aiohttp.ClientSession) -> None:
    csrf = await form_csrf(http, "/signin")
    data = {"csrf": csrf, "name": "admin", "password": "admin-pass-1"}
    async with http.post("/signin", data=data, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/payments"


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    # Before sign-in: the sign-in form itself.
    await form_csrf(http, "/signin")
    data = {"name": "opera", "password": "operator-pass-1"}
    async with http.post("/signin", data=data, allow_redirects=False) as r:
        assert r.status == 403
        assert "CSRF" in await r.text() or "フォーム" in await r.text()
    assert await http_sign_in(http, "opera") == 303
    body = {"order_id": "csrf-1", "amount": "100", "callback": "PJSIP/1001"}
    for token in (None, "forged"):
        form = dict(body) if token is None else {**body, "csrf": token}
        async with http.post("/payments/new", data=form, allow_redirects=False) as r:
            assert r.status == 403
    assert await store.get_payment_by_order_id(screen.pool, "csrf-1") is None
    csrf = await form_csrf(http, "/payments/new")
    async with http.post("/payments/new", data={**body, "csrf": csrf}, allow_redirects=False) as r:
        assert r.status == 303
    assert await store.get_payment_by_order_id(screen.pool, "csrf-1") is not None


async def test_lockout_per_user_and_per_address(screen: Screen) -> None:
    await store.create_user(screen.pool, "locky", "operator", "locky-pass-1")

    async def attempt(name: str, password: str) -> int:
        async with aiohttp.ClientSession(
            base_url=screen.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as s:
            return await http_sign_in(s, name, password)

    for _ in range(3):
        assert await attempt("locky", "wrong") == 401
    # Locked now, even with the right password; other users (same address, below its limit)…
    assert await attempt("locky", "locky-pass-1") == 429
    # …are refused too once the address has had its failures: 3 on locky already count.
    assert await attempt("opera", "operator-pass-1") == 429
    audit, _ = await store.screen.search_audit(screen.pool, action="signin_locked")
    assert {a["actor"] for a in audit} >= {"screen:locky", "screen:opera"}
    # After the window the user can sign in again.
    _shift(screen, timedelta(seconds=601))
    assert await attempt("locky", "locky-pass-1") == 303


async def test_a_session_expires_when_idle_and_sign_out_ends_it(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    assert await http_sign_in(http, "opera") == 303
    async with http.get("/payments/new", allow_redirects=False) as r:
        assert r.status == 200
    _shift(screen, timedelta(seconds=601))
    async with http.get("/payments/new", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/signin"
    _shift(screen, timedelta(0))
    async with http.get("/payments/new", allow_redirects=False) as r:
        assert r.status == 303  # an expired session stays ended

    assert await http_sign_in(http, "opera") == 303
    csrf = await form_csrf(http, "/payments/new")
    async with http.post("/signout", data={"csrf": csrf}, allow_redirects=False) as r:
        assert r.status == 303
    async with http.get("/payments/new", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/signin"


async def test_a_session_ends_at_its_maximum_age_however_busy(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    assert await http_sign_in(http, "opera") == 303
    for seconds in (500, 990):  # each request within the idle window
        _shift(screen, timedelta(seconds=seconds))
        async with http.get("/payments/new", allow_redirects=False) as r:
            assert r.status == 200, seconds
    _shift(screen, timedelta(seconds=1001))
    async with http.get("/payments/new", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/signin"


async def test_a_forged_session_cookie_signs_nobody_in(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    assert await http_sign_in(http, "opera") == 303
    value = next(c.value for c in http.cookie_jar if c.key == "ivrpay_session")
    token, _mac = value.split(".")
    async with aiohttp.ClientSession(base_url=screen.url) as other:
        for cookie in (value, f"{token}.{'0' * 64}", token, f"{'A' * 43}.{_mac}"):
            headers = {"Cookie": f"ivrpay_session={cookie}"}
            async with other.get("/payments/new", headers=headers, allow_redirects=False) as r:
                assert r.status == (200 if cookie == value else 303), cookie


def _screen_routes(app: web.Application, role: str) -> list[tuple[str, str]]:
    out = []
    for resource in app.router.resources():
        for route in resource:
            if getattr(route.handler, "ivrpay_role", "-") == role and route.method != "HEAD":
                out.append((route.method, resource.canonical))
    return out


def _concrete(path: str, payment_id: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: payment_id if m.group() == "{id}" else "x", path)


async def test_every_admin_route_refuses_an_operator(
    screen: Screen, http: aiohttp.ClientSession
) -> None:
    routes = _screen_routes(screen.service.http.app, "admin")
    assert len(routes) >= ADMIN_ROUTES, routes  # users, keys, prompts, reviews, audit, …
    assert await http_sign_in(http, "opera") == 303
    csrf = await form_csrf(http, "/payments/new")
    uid = screen.users["opera2"]["id"]
    for method, path in routes:
        url = _concrete(path, uid)
        async with http.request(method, url, data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 403, (method, path, r.status)
    # Signed out, a GET is sent to sign in and anything else is refused.
    async with aiohttp.ClientSession(base_url=screen.url) as anonymous:
        for method, path in routes:
            async with anonymous.request(method, _concrete(path, uid), allow_redirects=False) as r:
                assert r.status == (303 if method == "GET" else 401), (method, path)
