"""The OpenAPI 3.1 document of the HTTP API (``GET /api/v1/openapi.json``).

Built from the same constants the validator uses, and from the settings that shape the contract
(languages, the operator callback pattern), so the document cannot drift from the checks. A test
compares its paths with the application's routes.
"""

from __future__ import annotations

from typing import Any

from ivrpay import __version__ as _version
from ivrpay.api import validation as v
from ivrpay.config import Settings
from ivrpay.store.states import ERROR_CATEGORIES, STEPS
from ivrpay.store.states import WEBHOOK_TYPES as _store_webhook_types
from ivrpay.store.webhooks import SIGNATURE_HEADER

API_PREFIX = "/api/v1"

PAYMENT_FIELDS = (
    "id",
    "order_id",
    "amount",
    "tax",
    "job",
    "method",
    "pay_times",
    "operation",
    "member_id",
    "language",
    "metadata",
    "status",
    "code",
    "transfer_to",
    "expires_at",
    "operator",
    "progress",
    "executions",
    "card",
    "result",
    "registration",
    "error",
    "call",
    "settlement",
    "cancel_requested",
    "needs_review",
    "created_at",
    "updated_at",
)
WEBHOOK_DELIVERY_FIELDS = (
    "id",
    "payment_id",
    "type",
    "sequence",
    "url",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
    "delivered_at",
    "history",
)
SETTLEMENTS = ("authorized", "captured", "voided", "refunded")
# The event types the store emits, in its order: one table, so the document cannot drift.
WEBHOOK_TYPES = tuple(_store_webhook_types.values())


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    t = out.get("type")
    if isinstance(t, str):
        out["type"] = [t, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


_STR = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}


def _obj(props: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props if required is None else required),
    }


def _schemas(settings: Settings) -> dict[str, Any]:
    payment_error = _obj(
        {
            "code": _STR,
            "category": {"type": "string", "enum": list(ERROR_CATEGORIES)},
            "message": _nullable(_STR),
        },
        required=("code", "category"),
    )
    operator = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": v.OPERATOR_ID_RE, "maxLength": 64},
            "callback": {
                "type": "string",
                "pattern": settings.callback_pattern,
                "description": "Dial string the caller goes back to; matches "
                "IVRPAY_CALLBACK_PATTERN.",
            },
        },
        "required": ["id", "callback"],
    }
    create = {
        "type": "object",
        "additionalProperties": False,
        "description": "amount + tax must be within 1…9,999,999 for charges. Unknown fields are "
        "rejected; null counts as not given.",
        "properties": {
            "order_id": {"type": "string", "pattern": v.ORDER_ID_RE, "maxLength": 24},
            "amount": _nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": v.AMOUNT_MAX,
                    "description": "Yen, without tax. Ignored by register.",
                }
            ),
            "tax": _nullable(
                {"type": "integer", "minimum": 0, "maximum": v.AMOUNT_MAX - 1, "default": 0}
            ),
            "job": _nullable(
                {
                    "type": "string",
                    "enum": list(v.JOBS),
                    "default": "AUTH",
                    "description": "Not for register.",
                }
            ),
            "method": _nullable(
                {
                    "type": "integer",
                    "enum": list(v.METHODS),
                    "default": 1,
                    "description": "1 lump sum, 2 instalments, 5 revolving. Not for register.",
                }
            ),
            "pay_times": _nullable(
                {
                    "type": "integer",
                    "minimum": v.PAY_TIMES_MIN,
                    "maximum": v.PAY_TIMES_MAX,
                    "description": "Required with method 2, refused otherwise.",
                }
            ),
            "operation": _nullable(
                {"type": "string", "enum": list(v.OPERATIONS), "default": "charge"}
            ),
            "member_id": _nullable(
                {
                    "type": "string",
                    "pattern": v.MEMBER_ID_RE,
                    "maxLength": 60,
                    "description": "Required for register and charge_and_register, refused "
                    "for charge.",
                }
            ),
            "operator": _nullable(_ref("Operator")),
            "language": _nullable(
                {
                    "type": "string",
                    "enum": list(settings.languages),
                    "default": settings.default_language,
                }
            ),
            "expires_in": _nullable(
                {
                    "type": "integer",
                    "minimum": v.EXPIRES_IN_MIN,
                    "maximum": v.EXPIRES_IN_MAX,
                    "default": v.EXPIRES_IN_DEFAULT,
                    "description": "Seconds until an unclaimed payment expires.",
                }
            ),
            "metadata": _nullable(
                {
                    "type": "object",
                    "description": f"At most {v.METADATA_MAX_BYTES} bytes as compact JSON.",
                }
            ),
        },
        "required": ["order_id"],
        "allOf": [
            {
                "if": {
                    "properties": {"operation": {"const": "register"}},
                    "required": ["operation"],
                },
                "then": {
                    "required": ["member_id"],
                    "properties": {
                        "job": {"type": "null"},
                        "method": {"type": "null"},
                        "pay_times": {"type": "null"},
                    },
                },
                "else": {
                    "required": ["amount"],
                    "properties": {"amount": {"type": "integer"}},
                },
            },
            {
                "if": {
                    "properties": {"operation": {"const": "charge_and_register"}},
                    "required": ["operation"],
                },
                "then": {"required": ["member_id"]},
            },
        ],
    }
    payment = {
        "type": "object",
        "additionalProperties": False,
        "required": list(PAYMENT_FIELDS),
        "properties": {
            "id": _STR,
            "order_id": _STR,
            "amount": _nullable(_INT),
            "tax": _nullable(_INT),
            "job": _nullable({"type": "string", "enum": list(v.JOBS)}),
            "method": _nullable(_INT),
            "pay_times": _nullable(_INT),
            "operation": {"type": "string", "enum": list(v.OPERATIONS)},
            "member_id": _nullable(_STR),
            "language": _STR,
            "metadata": {"type": "object"},
            "status": {"type": "string", "enum": list(v.STATUSES)},
            "code": {"type": "string", "pattern": "^[0-9]{6}$"},
            "transfer_to": {"type": "string", "pattern": "^8[0-9]{6}$"},
            "expires_at": _TIME,
            "operator": _nullable(_obj({"id": _nullable(_STR), "callback": _STR})),
            "progress": {
                "type": "object",
                "properties": {
                    "step": _nullable({"type": "string", "enum": list(STEPS)}),
                    "attempts": {
                        "type": "object",
                        "additionalProperties": {"type": "integer", "minimum": 0},
                    },
                },
                "required": ["step", "attempts"],
            },
            "executions": {
                "type": "array",
                "items": _obj(
                    {
                        "order_id": _STR,
                        "started_at": _TIME,
                        "outcome": _nullable(_STR),
                        "error": _nullable(_ref("PaymentError")),
                    }
                ),
            },
            "card": _nullable(_obj({"brand": _nullable(_STR), "last4": _nullable(_STR)})),
            "result": _nullable(
                _obj(
                    {
                        "approve": _nullable(_STR),
                        "tran_id": _nullable(_STR),
                        "tran_date": _nullable(_TIME),
                        "forward": _nullable(_STR),
                        "card_seq": _nullable({"type": "integer", "minimum": 0}),
                    },
                    required=(),
                )
            ),
            "registration": _nullable(
                _obj(
                    {
                        "status": {"type": "string", "enum": ["succeeded", "failed", "pending"]},
                        "card_seq": _nullable({"type": "integer"}),
                        "error": _nullable(_ref("PaymentError")),
                    },
                    required=("status",),
                )
            ),
            "error": _nullable(_ref("PaymentError")),
            "call": _nullable(
                _obj(
                    {
                        "uniqueid": _nullable(_STR),
                        "channel": _nullable(_STR),
                        "started_at": _nullable(_TIME),
                        "ended_at": _nullable(_TIME),
                    },
                    required=(),
                )
            ),
            "settlement": _nullable({"type": "string", "enum": list(SETTLEMENTS)}),
            "cancel_requested": {"type": "boolean"},
            "needs_review": {"type": "boolean"},
            "created_at": _TIME,
            "updated_at": _TIME,
        },
    }
    delivery = {
        "type": "object",
        "required": list(WEBHOOK_DELIVERY_FIELDS),
        "properties": {
            "id": _STR,
            "payment_id": _STR,
            "type": {"type": "string", "enum": list(WEBHOOK_TYPES)},
            "sequence": _INT,
            "url": _STR,
            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempts": {"type": "integer", "minimum": 0},
            "next_attempt_at": _nullable(_TIME),
            "created_at": _TIME,
            "delivered_at": _nullable(_TIME),
            "history": {
                "type": "array",
                "items": _obj(
                    {
                        "attempted_at": _TIME,
                        "status_code": _nullable(_INT),
                        "error": _nullable(_STR),
                        "duration_ms": _nullable({"type": "number"}),
                    },
                    required=("attempted_at",),
                ),
            },
        },
    }
    webhook_event = {
        "type": "object",
        "additionalProperties": False,
        "description": "The body of every webhook delivery: the same bytes on every retry.",
        "properties": {
            "id": {
                "type": "string",
                "description": "The event id; also X-Ivrpay-Delivery. Deduplicate by it.",
            },
            "type": {"type": "string", "enum": list(WEBHOOK_TYPES)},
            "sequence": {
                "type": "integer",
                "minimum": 1,
                "description": "The payment's event sequence number: a larger one is newer.",
            },
            "created_at": _TIME,
            "payment": _ref("Payment"),
        },
        "required": ["id", "type", "sequence", "created_at", "payment"],
    }
    problem = {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string"},
            "title": _STR,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": _STR,
            "instance": _STR,
            "errors": {"type": "array", "items": _ref("FieldError")},
            "gateway_errors": {
                "type": "array",
                "items": _STR,
                "description": "The gateway's ErrInfo codes, when it refused.",
            },
        },
        "required": ["type", "title", "status"],
    }
    check = _obj({"status": {"type": "string"}, "detail": _STR}, required=("status",))
    return {
        "PaymentCreate": create,
        "Operator": operator,
        "Payment": payment,
        "PaymentError": payment_error,
        "PaymentList": _obj(
            {"items": {"type": "array", "items": _ref("Payment")}, "next_cursor": _nullable(_STR)}
        ),
        "WebhookEvent": webhook_event,
        "WebhookDelivery": delivery,
        "WebhookDeliveryList": _obj({"items": {"type": "array", "items": _ref("WebhookDelivery")}}),
        "FieldError": _obj({"field": _STR, "message": _STR}),
        "Problem": problem,
        "ValidationProblem": {
            "allOf": [_ref("Problem"), {"type": "object", "required": ["errors"]}]
        },
        "Health": _obj(
            {
                "status": {"type": "string", "enum": ["ok", "degraded", "fail"]},
                "checks": _obj(
                    {"database": check, "gateway": check, "ami": check},
                ),
            }
        ),
    }


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
    "schema": {"type": "string", "pattern": v.IDEMPOTENCY_KEY_RE},
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
                        "schema": {"type": "string", "pattern": v.ORDER_ID_RE},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(v.STATUSES)},
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
                            "maximum": v.LIST_LIMIT_MAX,
                            "default": v.LIST_LIMIT_DEFAULT,
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
        f"{p}/payments/{{id}}/capture": {
            "post": _action(
                "capturePayment",
                "Capture (SALES) a succeeded AUTH payment; repeating it answers 200 unchanged.",
                gateway_extra,
            )
        },
        f"{p}/payments/{{id}}/void": {
            "post": _action(
                "voidPayment",
                "Void a succeeded charge (authorized or captured); repeating it answers 200.",
                gateway_extra,
            )
        },
        f"{p}/payments/{{id}}/refund": {
            "post": _action(
                "refundPayment",
                "Refund a captured payment; repeating it answers 200.",
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
                "summary": "Database, payment gateway and AMI. 503 when the database fails.",
                "security": [],
                "responses": {
                    "200": _json("Healthy or degraded.", _ref("Health")),
                    "503": _json("The database is not reachable.", _ref("Health")),
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
