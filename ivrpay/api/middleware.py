"""The API's middlewares: problem+json for every error, Bearer API keys, request metrics.

Order (outermost first): metrics → problems → auth, so a 401 is rendered as a problem and counted.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from ivrpay.api.problems import Problem, from_http_exception, problem_response, unauthorized
from ivrpay.metrics import API_REQUESTS

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_BEARER = re.compile(r"Bearer +([\x21-\x7e]{1,256})", re.IGNORECASE)


def public(handler: Handler) -> Handler:
    """Mark a handler as needing no API key (the OpenAPI document)."""
    handler.ivrpay_public = True  # type: ignore[attr-defined]
    return handler


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        API_REQUESTS.labels(request.method, _route_label(request), str(status)).inc()


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as application/problem+json, and never with a stack trace."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(from_http_exception(exc), request.path)
    except store.DATABASE_DOWN as exc:
        # Not a bug: no traceback. The workers say once per outage when it began and ended.
        log.warning("api.database_unavailable", path=request.path, error=type(exc).__name__)
        return problem_response(
            Problem(503, "database-unavailable", "The database is not reachable; retry later."),
            request.path,
        )
    except Exception:
        # Tracebacks are rendered without locals by the logging set-up; the client gets none.
        log.exception("api.unhandled_error", method=request.method, path=request.path)
        return problem_response(
            Problem(500, "internal", "An internal error occurred."), request.path
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if getattr(handler, "ivrpay_public", False) or request.match_info.http_exception is not None:
        return await handler(request)
    header = request.headers.get("Authorization")
    if header is None:
        raise unauthorized("An API key is required: Authorization: Bearer <key>.")
    m = _BEARER.fullmatch(header.strip())
    if m is None:
        raise unauthorized("The Authorization header must be: Bearer <key>.")
    # The store looks the key up by its SHA-256 hash: no secret is compared byte by byte here.
    client: dict[str, Any] | None = await store.get_api_client_by_key(
        request.config_dict[keys.POOL], m.group(1)
    )
    if client is None:
        raise unauthorized("Unknown or disabled API key.")
    request[keys.CLIENT] = client
    return await handler(request)
