"""The OpenAPI 3.1 document of the HTTP API (``GET /api/v1/openapi.json``).

The components are generated from the API's models (``models.py``, the declarations the request
validation reads too) and the settings that shape the contract (languages, the operator callback
pattern), so the document cannot drift from the checks. The paths are written here by hand; a test
compares them with the application's routes.
"""

from __future__ import annotations

from typing import Any

from ivrpay import __version__ as _version
from ivrpay.api import models as m
from ivrpay.api.problems import FieldError
from ivrpay.api.schema import field_names, request_schema, response_schema
from ivrpay.api.schema import ref as _ref
from ivrpay.config import Settings
from ivrpay.store.webhooks import SIGNATURE_HEADER

API_PREFIX = "/api/v1"

PAYMENT_FIELDS = field_names(m.Payment)
WEBHOOK_DELIVERY_FIELDS = field_names(m.WebhookDelivery)
WEBHOOK_TYPES = m.WEBHOOK_TYPES

# Component name: (model, no other properties allowed). Requests are always closed.
_REQUESTS: tuple[type, ...] = (m.NewPayment, m.Operator)
_RESPONSES: tuple[tuple[type, bool], ...] = (
    (m.Payment, True),
    (m.PaymentError, False),
    (m.PaymentOperator, False),
    (m.Progress, False),
    (m.Execution, False),
    (m.Card, False),
    (m.PaymentResult, False),
    (m.Registration, False),
    (m.PaymentCall, False),
    (m.PaymentList, False),
    (m.WebhookEvent, True),
    (m.WebhookDelivery, False),
    (m.DeliveryAttempt, False),
    (m.WebhookDeliveryList, False),
    (FieldError, False),
    (m.Problem, False),
    (m.Health, False),
    (m.HealthChecks, False),
    (m.Check, False),
    (m.TakenBack, False),
    (m.ListenIn, False),
    (m.TakeBackAnswer, False),
    (m.ListenInAnswer, False),
)
# The create body keeps its published name.
_NAMES = {"NewPayment": "PaymentCreate"}


def _schemas(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in _REQUESTS:
        out[_NAMES.get(model.__name__, model.__name__)] = request_schema(model, settings)
    for model, closed in _RESPONSES:
        out[model.__name__] = response_schema(model, closed=closed)
    out["ValidationProblem"] = {
        "allOf": [_ref("Problem"), {"type": "object", "required": ["errors"]}]
    }
    return out


_PROBLEM_TEXT = {
    400: "Malformed request (e.g. a body that is not JSON).",
    401: "Missing or unknown API key.",
    404: "No such payment.",
    409: "The payment's state does not allow this, or an idempotency key clash.",
    413: "Request body too large.",
    415: "The body is not application/json.",
    422: "Invalid fields; see errors.",
    502: "The payment gateway refused or failed; nothing was changed.",
    503: "A dependency (database, payment gateway, live events) is not available; retry later.",
    504: "The gateway's answer was lost; retrying is safe.",
}


def _problem(status: int) -> dict[str, Any]:
    schema = _ref("ValidationProblem" if status == 422 else "Problem")
    return {
        "description": _PROBLEM_TEXT[status],
        "content": {"application/problem+json": {"schema": schema}},
    }


def _json(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> Any:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        out["headers"] = headers
    return out


_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The payment's id.",
    "schema": {"type": "string"},
}
_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Per API key, kept 24 h: the same key and body give the same answer; another "
    "body, or a duplicate still in progress, is 409.",
    "schema": {"type": "string", "pattern": m.IDEMPOTENCY_KEY_RE},
}
_REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "Present (true) when the answer is a replay for an Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def _action(name: str, summary: str, extra: dict[int, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": _json("The payment after the action.", _ref("Payment"), _REPLAYED_HEADER),
        **{str(s): _problem(s) for s in (400, 401, 404, 409, 413, 415, 422, 503)},
    }
    for status, value in (extra or {}).items():
        responses[str(status)] = value
    return {
        "operationId": name,
        "summary": summary,
        "parameters": [_ID_PARAM, _IDEMPOTENCY_HEADER],
        "requestBody": {
            "required": False,
            "description": "No fields: send nothing or {}.",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "additionalProperties": False, "maxProperties": 0}
                }
            },
        },
        "responses": responses,
    }


def _ami_operation(
    operation_id: str, description: str, done: str, answer: str, unanswered: str
) -> dict[str, Any]:
    """An AMI action on a payment (take-back, listen-in): answered 202 with the process."""
    op = _action(
        operation_id,
        description,
        {
            202: _json(done, _ref(answer), _REPLAYED_HEADER),
            504: {
                "description": unanswered,
                "content": {"application/problem+json": {"schema": _ref("Problem")}},
            },
        },
    )
    del op["responses"]["200"]
    return op


def _take_back_operation() -> dict[str, Any]:
    """POST /payments/{id}/take-back (issue 11)."""
    return _ami_operation(
        "takeBackPayment",
        "Take the caller back from the IVR to the operator: an AMI Redirect of the call's channel "
        "(by any ivrpay process with a working AMI link, named in redirected_by); the call ends "
        "abandoned with taken_back. 409 when the caller is not in the IVR or a gateway execution "
        "is in flight; 503 when no AMI link is up; 504 when the PBX did not answer.",
        "Redirected; the payment ends abandoned when the call's AGI has hung up.",
        "TakeBackAnswer",
        "The PBX did not answer the redirect; it may have happened.",
    )


def _listen_in_operation() -> dict[str, Any]:
    """POST /payments/{id}/listen-in (issue 14)."""
    return _ami_operation(
        "listenInPayment",
        "Start the card entry of a pending payment registered with operator.listen_in while the "
        "operator is on the phone with the caller: one AMI Redirect moves the caller into the "
        "IVR and the operator onto a ChanSpy leg (whisper), hearing prompts and caller but no "
        "key; both are bridged back together when the IVR ends. 409 when the payment is not for "
        "listen-in or not pending, or the operator's phone is not on one two-party call, or the "
        "caller's keys would be tones; 503 when no ivrpay process has an AMI link; 504 when the "
        "PBX did not answer.",
        "Both channels moved; the call claims the payment as after a transfer.",
        "ListenInAnswer",
        "The PBX did not answer; the caller may be in the IVR already.",
    )


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _webhooks(settings: Settings) -> dict[str, Any]:
    """The events ivrpay POSTs to a client's webhook URL (OpenAPI 3.1 ``webhooks``)."""
    backoff = settings.webhook_backoff_s
    schedule = ", ".join(_seconds(b) for b in backoff[:-1])
    retries = (
        f"Anything but a 2xx answer (or none) is retried after {schedule}, then every "
        f"{_seconds(backoff[-1])}, for {_seconds(settings.retry_horizon_s)} after the event; "
        "every attempt is listed at /api/v1/webhook-deliveries."
    )
    out: dict[str, Any] = {}
    for name in WEBHOOK_TYPES:
        out[name] = {
            "post": {
                "operationId": "webhook_" + name.replace(".", "_"),
                "summary": f"The payment event {name}, sent to the API client's webhook URL.",
                "description": retries,
                "security": [],
                "parameters": [
                    {
                        "name": SIGNATURE_HEADER,
                        "in": "header",
                        "required": True,
                        "description": 'Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body"> '
                        "keyed with the client's webhook secret; check it and the age of t.",
                        "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
                    },
                    {
                        "name": "X-Ivrpay-Event",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "const": name},
                    },
                    {
                        "name": "X-Ivrpay-Delivery",
                        "in": "header",
                        "required": True,
                        "description": "The event id (the body's id), the same on every retry.",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    _ref("WebhookEvent"),
                                    {"properties": {"type": {"const": name}}},
                                ]
                            }
                        }
                    },
                },
                "responses": {"2XX": {"description": "Received; not sent again."}},
            }
        }
    return out


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these settings."""
    p = API_PREFIX
    gateway_extra = {s: _problem(s) for s in (502, 504)}
    # One AlterTran per action, whichever process or screen asks (issue 9.2).
    once = (
        " 409 settlement-in-progress while another capture, void or refund of the payment is "
        "being sent or its lost answer looked up; 504 when the answer was lost (retrying is safe)."
    )
    paths: dict[str, Any] = {
        f"{p}/payments": {
            "post": {
                "operationId": "createPayment",
                "summary": "Register a payment; the caller is then transferred to 8 + code.",
                "parameters": [_IDEMPOTENCY_HEADER],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("PaymentCreate")}},
                },
                "responses": {
                    "201": _json("The new payment.", _ref("Payment"), _REPLAYED_HEADER),
                    **{str(s): _problem(s) for s in (400, 401, 409, 413, 415, 422, 503)},
                },
            },
            "get": {
                "operationId": "listPayments",
                "summary": "Payments ascending by (updated_at, id), cursor paged. With "
                "updated_since, rows changed in the last few seconds are held back so a poller "
                "never misses a late commit.",
                "parameters": [
                    {
                        "name": "order_id",
                        "in": "query",
                        "schema": {"type": "string", "pattern": m.ORDER_ID_RE},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(m.STATUSES)},
                    },
                    {
                        "name": "updated_since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "next_cursor of the previous page. It carries that "
                        "page's filters (updated_since and its holdback included): send it alone "
                        "or with the same filters; other filters are refused (422).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": m.LIST_LIMIT_MAX,
                            "default": m.LIST_LIMIT_DEFAULT,
                        },
                    },
                ],
                "responses": {
                    "200": _json("A page of payments.", _ref("PaymentList")),
                    **{str(s): _problem(s) for s in (401, 422, 503)},
                },
            },
        },
        f"{p}/payments/{{id}}": {
            "get": {
                "operationId": "getPayment",
                "summary": "One payment.",
                "parameters": [_ID_PARAM],
                "responses": {
                    "200": _json("The payment.", _ref("Payment")),
                    **{str(s): _problem(s) for s in (401, 404, 503)},
                },
            }
        },
        f"{p}/payments/{{id}}/cancel": {
            "post": _action(
                "cancelPayment",
                "Cancel a pending, failed or abandoned payment (200). During a call the cancel is "
                "recorded and takes effect before any gateway execution (202, "
                "cancel_requested: true). 409 once processing or final.",
                {
                    202: _json(
                        "Cancel recorded; the call ends canceled.",
                        _ref("Payment"),
                        _REPLAYED_HEADER,
                    )
                },
            )
        },
        f"{p}/payments/{{id}}/take-back": {
            "post": _take_back_operation(),
        },
        f"{p}/payments/{{id}}/listen-in": {
            "post": _listen_in_operation(),
        },
        f"{p}/payments/{{id}}/capture": {
            "post": _action(
                "capturePayment",
                "Capture (SALES) a succeeded AUTH payment; repeating it answers 200 unchanged."
                + once,
                gateway_extra,
            )
        },
        f"{p}/payments/{{id}}/void": {
            "post": _action(
                "voidPayment",
                "Void a succeeded charge (authorized or captured); repeating it answers 200."
                + once,
                gateway_extra,
            )
        },
        f"{p}/payments/{{id}}/refund": {
            "post": _action(
                "refundPayment",
                "Refund a captured payment; repeating it answers 200." + once,
                gateway_extra,
            )
        },
        f"{p}/payments/{{id}}/events": {
            "get": {
                "operationId": "paymentEvents",
                "summary": "Server-Sent Events: one event type, payment, with the full snapshot "
                "on every change (id: the payment's event sequence). Live across processes.",
                "parameters": [
                    _ID_PARAM,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "An endless event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **{str(s): _problem(s) for s in (401, 404, 503)},
                },
            }
        },
        f"{p}/webhook-deliveries": {
            "get": {
                "operationId": "listWebhookDeliveries",
                "summary": "Webhook deliveries of a payment, every attempt included.",
                "parameters": [
                    {
                        "name": "payment_id",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("The deliveries.", _ref("WebhookDeliveryList")),
                    **{str(s): _problem(s) for s in (401, 404, 422, 503)},
                },
            }
        },
        f"{p}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": _json("OpenAPI 3.1 document.", {"type": "object"})},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": (
                    "Database, payment gateway (a real request, cached a few seconds) and AMI. "
                    "503 when the database fails, or while draining after SIGTERM."
                ),
                "security": [],
                "responses": {
                    "200": _json("Healthy or degraded.", _ref("Health")),
                    "503": _json(
                        "The database is not reachable, or the process is draining.",
                        _ref("Health"),
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ivrpay API",
            "version": _version,
            "description": "Card payments by phone (IVR) for call centres. Card data never "
            "passes through this API. Errors are application/problem+json (RFC 9457); times "
            "are RFC 3339.",
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": paths,
        "webhooks": _webhooks(settings),
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <API key> (ivrpay apikey create).",
                }
            },
        },
        "security": [{"bearer": []}],
    }
