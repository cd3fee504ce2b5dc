"""RFC 9457 ``application/problem+json`` errors for the API.

Handlers raise :class:`Problem` (or one of the helpers below); the API's error middleware renders
it. Anything else that escapes a handler becomes a bare 500 problem: the client never sees a stack
trace, an exception message or a request body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:ivrpay:problem:"


@dataclass(frozen=True)
class FieldError:
    """One invalid input: ``field`` is a dotted path (``operator.callback``) or a header or
    parameter name."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class Problem(Exception):
    """An error answer. ``slug`` becomes the problem ``type`` (``urn:ivrpay:problem:<slug>``)."""

    def __init__(
        self,
        status: int,
        slug: str | None = None,
        detail: str | None = None,
        *,
        title: str | None = None,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(f"{status} {slug or self.title}")

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": f"{_TYPE_PREFIX}{self.slug}" if self.slug else "about:blank",
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            doc["detail"] = self.detail
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = [e.as_dict() for e in self.errors]
        doc.update(self.extra)
        return doc


def problem_response(problem: Problem, instance: str | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        # Compact, as every other answer: an idempotent replay is then the same bytes.
        text=json.dumps(problem.body(instance), ensure_ascii=False, separators=(",", ":")),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def validation_failed(errors: Iterable[FieldError]) -> Problem:
    errs = list(errors)
    return Problem(
        422,
        "validation",
        "The request has invalid fields; see errors.",
        title="Validation failed",
        errors=errs,
    )


def malformed(detail: str) -> Problem:
    return Problem(400, "malformed-request", detail, title="Malformed request")


def not_found(detail: str = "No such payment.") -> Problem:
    return Problem(404, "not-found", detail, title="Not found")


def conflict(slug: str, detail: str) -> Problem:
    return Problem(409, slug, detail, title="Conflict")


def unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        detail,
        title="Unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="ivrpay"'},
    )


def from_http_exception(exc: web.HTTPException) -> Problem:
    """aiohttp's own 404/405/413… as problems, keeping the headers that matter (``Allow``)."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    slug = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(exc.status)
    try:
        title = HTTPStatus(exc.status).phrase
    except ValueError:
        title = "Error"
    detail = {
        404: "No such resource.",
        405: "This method is not allowed here.",
        413: "The request body is too large.",
    }.get(exc.status)
    return Problem(exc.status, slug, detail, title=title, headers=headers)
