"""Sign-in state of the screen: signed session cookies, CSRF tokens, roles on every route.

The cookie holds ``<token>.<HMAC-SHA256(IVRPAY_SECRET_KEY, token)>``; the database keeps only the
token's hash (``ivrpay.store.screen``), so neither a stolen row nor a forged cookie signs anyone in.
Cookies are HttpOnly and SameSite=Strict, and Secure when the request came over TLS or through a
proxy that says so (``X-Forwarded-Proto: https``). Every POST carries a CSRF token: the session's,
or before sign-in the random value of a pre-session cookie (double submit).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ivrpay.api import keys
from ivrpay.store import screen as screen_store

SESSION_COOKIE = "ivrpay_session"
PRE_COOKIE = "ivrpay_pre"
LANG_COOKIE = "ivrpay_lang"
SCREEN_LANGUAGES = ("ja", "en")

SESSION = web.RequestKey("ivrpay_screen_session", dict)
NEW_PRE = web.RequestKey("ivrpay_screen_new_pre", str)  # a pre-session token made now
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """An error page: ``status`` and the message key shown (rendered by the screen's middleware)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_PROCESS_KEY = secrets.token_bytes(32)


def _secret(request: web.Request) -> bytes:
    key = request.config_dict[keys.SETTINGS].secret_key
    # serve and demo always set one; an app built without one (tests) signs with a key of this
    # process, never an empty one.
    return key.encode("utf-8") if key else _PROCESS_KEY


def _mac(request: web.Request, token: str) -> str:
    return hmac.new(_secret(request), token.encode(), hashlib.sha256).hexdigest()


def signed(request: web.Request, token: str) -> str:
    return f"{token}.{_mac(request, token)}"


def unsigned(request: web.Request, value: str | None) -> str | None:
    if not value or value.count(".") != 1:
        return None
    token, mac = value.split(".")
    return token if hmac.compare_digest(mac, _mac(request, token)) else None


def is_secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, **kw: Any
) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="Strict",
        secure=is_secure(request),
        path="/",
        **kw,
    )


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    set_cookie(response, request, name, "", max_age=0)


async def load_session(request: web.Request) -> dict[str, Any] | None:
    """The signed-in session of this request (cached on it), or None."""
    if SESSION in request:
        return request[SESSION]
    token = unsigned(request, request.cookies.get(SESSION_COOKIE))
    session = None
    if token is not None:
        settings = request.config_dict[keys.SETTINGS]
        session = await screen_store.get_session(
            request.config_dict[keys.POOL],
            token,
            now=request.config_dict[keys.CLOCK](),
            idle_s=settings.session_idle_s,
        )
        if session is not None:
            session["token"] = token
    request[SESSION] = session  # type: ignore[misc]  # None: "not signed in", cached too
    return session


def pre_token(request: web.Request) -> str:
    """The CSRF token of a signed-out page (the pre-session cookie's value; made when missing)."""
    token = unsigned(request, request.cookies.get(PRE_COOKIE))
    if token is None:
        token = request.get(NEW_PRE) or secrets.token_urlsafe(24)
        request[NEW_PRE] = token
    return token


def csrf_token(request: web.Request) -> str:
    session = request.get(SESSION)
    return session["csrf"] if session else pre_token(request)


async def check_csrf(request: web.Request) -> None:
    """A POST must carry the page's CSRF token (form field ``csrf`` or ``X-CSRF-Token``)."""
    form = await request.post()
    given = form.get("csrf") or request.headers.get("X-CSRF-Token") or ""
    session = request.get(SESSION)
    if session is not None:
        expected = session["csrf"]
    else:
        expected = unsigned(request, request.cookies.get(PRE_COOKIE)) or ""
    if not isinstance(given, str) or not expected or not hmac.compare_digest(given, expected):
        raise Refused(403, "csrf_refused")


def page(role: str | None = "operator") -> Callable[[Handler], Handler]:
    """A screen route: ``role`` "operator" (any signed-in user), "admin", or None (public).

    Signed out: a GET goes to the sign-in page, anything else is refused (401). The wrong role is
    refused with 403 (never a hidden link only). A POST's CSRF token is checked after the role.
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            session = await load_session(request)
            if role is not None:
                if session is None:
                    if request.method == "GET":
                        raise web.HTTPSeeOther("/signin")
                    raise Refused(401, "signed_out")
                if role == "admin" and session["user"]["role"] != "admin":
                    raise Refused(403, "admin_only")
            if request.method == "POST":
                await check_csrf(request)
            return await handler(request)

        inner.ivrpay_role = role  # type: ignore[attr-defined]
        return inner

    return wrap


def actor(request: web.Request) -> str:
    """Who did it, for the audit log and the store's ``actor``."""
    session = request.get(SESSION)
    return f"screen:{session['user']['name']}" if session else "screen:-"
