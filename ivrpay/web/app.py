"""The screen on the root application: templates, static files, security headers, error pages.

Routes live in :mod:`ivrpay.web.operator` and :mod:`ivrpay.web.admin`; each is wrapped by
:func:`ivrpay.web.session.page`, which enforces its role. Every screen answer gets the security
headers (a CSP without inline script or style, no framing, no referrer across sites, no sniffing)
and ``Cache-Control: no-store`` (pages show payments; static files may be cached).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from ivrpay.api.openapi import API_PREFIX
from ivrpay.api.problems import Problem
from ivrpay.web import i18n
from ivrpay.web.session import (
    LANG_COOKIE,
    NEW_PRE,
    PRE_COOKIE,
    SCREEN_LANGUAGES,
    SESSION,
    Refused,
    csrf_token,
    load_session,
    set_cookie,
    signed,
)

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
JINJA = web.AppKey("ivrpay_screen_jinja", jinja2.Environment)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
_NOT_SCREEN = (API_PREFIX + "/", "/healthz", "/metrics")


def is_screen(path: str) -> bool:
    return not path.startswith(_NOT_SCREEN)


def screen_language(request: web.Request) -> str:
    session = request.get(SESSION)
    if session and session["user"].get("language") in SCREEN_LANGUAGES:
        return str(session["user"]["language"])
    cookie = request.cookies.get(LANG_COOKIE)
    return cookie if cookie in SCREEN_LANGUAGES else "ja"


def deps(request: web.Request) -> tuple[Any, Any, Any]:
    """The pool, the clock and the settings."""
    c = request.config_dict
    return c[keys.POOL], c[keys.CLOCK], c[keys.SETTINGS]


def page_number(request: web.Request) -> int:
    """``?page=N`` of a paged list (1 when missing or nonsense)."""
    raw = request.query.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100000 else 1


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    lang = screen_language(request)
    env: jinja2.Environment = request.config_dict[JINJA]
    session = request.get(SESSION)
    html = env.get_template(template).render(
        t=i18n.words(lang),
        lang=lang,
        user=session["user"] if session else None,
        csrf=csrf_token(request),
        path=request.path_qs,
        tz=settings.tz,
        yen=i18n.yen,
        when=lambda v, with_date=True: i18n.local_time(v, settings.tz, with_date),
        reason=lambda e: i18n.reason(e, lang),
        field_message=lambda m: i18n.field_message(m, lang),
        static=lambda name: str(request.app.router["static"].url_for(filename=name)),
        **context,
    )
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    new_pre = request.get(NEW_PRE)
    if new_pre:
        set_cookie(response, request, PRE_COOKIE, signed(request, new_pre))
    return response


def make_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if not is_screen(request.path):
        return
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/static/"):
        h["Cache-Control"] = "no-store"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def screen_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals and errors on screen paths as pages in the user's language (never a trace)."""
    if not is_screen(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except Refused as exc:
        await load_session(request)
        return render(request, "error.html", status=exc.status, message=exc.message, detail=None)
    except Problem as problem:
        await load_session(request)
        key = "not_found" if problem.status == 404 else "error"
        return render(
            request, "error.html", status=problem.status, message=key, detail=problem.detail
        )
    except web.HTTPRequestEntityTooLarge:
        await load_session(request)
        return render(request, "error.html", status=413, message="file_too_large", detail=None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        await load_session(request)
        key = "not_found" if exc.status == 404 else "error"
        return render(request, "error.html", status=exc.status, message=key, detail=exc.reason)
    except store.DATABASE_DOWN as exc:
        log.warning("screen.database_unavailable", path=request.path, error=type(exc).__name__)
        return render(request, "error.html", status=503, message="database_down", detail=None)
    except Exception:
        log.exception("screen.unhandled_error", method=request.method, path=request.path)
        return render(request, "error.html", status=500, message="error", detail=None)


def install_screen(app: web.Application) -> None:
    """Mount the screen on the root application (before it starts)."""
    from ivrpay.web import admin, operator

    app[JINJA] = make_env()
    app.middlewares.append(screen_errors)
    app.on_response_prepare.append(_headers)
    app.router.add_routes(operator.routes)
    app.router.add_routes(admin.routes)
    app.router.add_static("/static/", HERE / "static", name="static", append_version=True)
