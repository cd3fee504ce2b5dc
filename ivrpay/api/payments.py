"""Handlers of the payment resource and of webhook deliveries (``/api/v1``)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from ivrpay.api.bodies import idempotent, read_json
from ivrpay.api.problems import FieldError, Problem, conflict, not_found, validation_failed
from ivrpay.api.render import delivery_json, json_response, payment_json
from ivrpay.api.settlement import settle_payment
from ivrpay.api.validation import (
    NewPayment,
    parse_empty_body,
    parse_list_query,
    parse_new_payment,
)

log = structlog.get_logger(__name__)

routes = web.RouteTableDef()


def _deps(request: web.Request) -> tuple[Any, Any]:
    return request.config_dict[keys.POOL], request.config_dict[keys.CLOCK]


def _actor(request: web.Request) -> str:
    return f"api:{request[keys.CLIENT]['name']}"


async def create_new_payment(
    pool: Any, client_id: Any, new: NewPayment, now: Any
) -> dict[str, Any]:
    """Store a validated new payment (the API's and the screen's); conflicts as problems."""
    try:
        snapshot = await store.create_payment(
            pool,
            client_id=client_id,
            order_id=new.order_id,
            # register charges nothing: its amount is stored as 0 (the API ignores it).
            amount=new.amount if new.amount is not None else 0,
            tax=new.tax if new.tax is not None else 0,
            job=new.job,
            method=new.method,
            pay_times=new.pay_times,
            operation=new.operation,
            member_id=new.member_id,
            operator=new.operator,
            language=new.language,
            metadata=new.metadata,
            expires_in=new.expires_in,
            now=now,
        )
    except store.Conflict as exc:
        if exc.code == "order_id_exists":
            raise conflict(
                "order-id-exists", f"A payment with order_id {new.order_id} exists already."
            ) from None
        if exc.code == "no_free_code":
            raise Problem(503, "no-free-code", "No payment code is free; retry.") from None
        raise conflict(exc.code.replace("_", "-"), "The payment cannot be created.") from None
    log.info("api.payment_created", payment_id=str(snapshot["id"]), order_id=new.order_id)
    return snapshot


@routes.post("/payments")
async def create_payment(request: web.Request) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    pool, clock = _deps(request)
    body = await read_json(request, required=True)
    new = parse_new_payment(body, settings)

    async def run() -> tuple[int, Any]:
        snapshot = await create_new_payment(pool, request[keys.CLIENT]["id"], new, clock())
        return 201, payment_json(snapshot)

    return await idempotent(request, body, run)


@routes.get("/payments")
async def list_payments(request: web.Request) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    pool, clock = _deps(request)
    q = parse_list_query(request.query)
    try:
        items, next_cursor = await store.list_payments(
            pool,
            now=clock(),
            order_id=q.order_id,
            status=q.status,
            updated_since=q.updated_since,
            cursor=q.cursor,
            limit=q.limit,
            holdback_s=settings.list_holdback_s,
        )
    except store.InvalidCursor as exc:
        raise validation_failed([FieldError("cursor", str(exc))]) from None
    return json_response({"items": [payment_json(p) for p in items], "next_cursor": next_cursor})


async def _get_or_404(pool: Any, payment_id: str) -> dict[str, Any]:
    snapshot = await store.get_payment(pool, payment_id)
    if snapshot is None:
        raise not_found()
    return snapshot


@routes.get("/payments/{id}")
async def get_payment(request: web.Request) -> web.Response:
    pool, _ = _deps(request)
    return json_response(payment_json(await _get_or_404(pool, request.match_info["id"])))


@routes.post("/payments/{id}/cancel")
async def cancel_payment(request: web.Request) -> web.Response:
    pool, clock = _deps(request)
    payment_id = request.match_info["id"]
    body = await read_json(request, required=False)
    parse_empty_body(body)

    async def run() -> tuple[int, Any]:
        try:
            outcome, snapshot = await store.cancel_payment(
                pool, payment_id, now=clock(), actor=_actor(request)
            )
        except store.NotFound:
            raise not_found() from None
        except store.Conflict:
            current = await store.get_payment(pool, payment_id)
            status = current["status"] if current else "final"
            raise conflict(
                "not-cancelable", f"A payment that is {status} cannot be canceled."
            ) from None
        return (202 if outcome == "requested" else 200), payment_json(snapshot)

    return await idempotent(request, body, run)


async def _settle(request: web.Request, action: str) -> web.Response:
    payment_id = request.match_info["id"]
    body = await read_json(request, required=False)
    parse_empty_body(body)

    async def run() -> tuple[int, Any]:
        snapshot = await settle_payment(request.config_dict, payment_id, action, _actor(request))
        return 200, payment_json(snapshot)

    return await idempotent(request, body, run)


@routes.post("/payments/{id}/capture")
async def capture_payment(request: web.Request) -> web.Response:
    return await _settle(request, "capture")


@routes.post("/payments/{id}/void")
async def void_payment(request: web.Request) -> web.Response:
    return await _settle(request, "void")


@routes.post("/payments/{id}/refund")
async def refund_payment(request: web.Request) -> web.Response:
    return await _settle(request, "refund")


@routes.get("/webhook-deliveries")
async def list_webhook_deliveries(request: web.Request) -> web.Response:
    pool, _ = _deps(request)
    errors = [
        FieldError(n, "unknown query parameter")
        for n in dict.fromkeys(request.query)
        if n != "payment_id"
    ]
    ids = request.query.getall("payment_id", [])
    if not ids:
        errors.append(FieldError("payment_id", "is required"))
    elif len(ids) > 1:
        errors.append(FieldError("payment_id", "must be given at most once"))
    if errors:
        raise validation_failed(errors)
    snapshot = await _get_or_404(pool, ids[0])
    # A client sees the deliveries to its own webhook only: URLs may carry the client's tokens.
    rows = await store.list_deliveries(
        pool, payment_id=str(snapshot["id"]), client_id=request[keys.CLIENT]["id"]
    )
    return json_response({"items": [delivery_json(r) for r in rows]})
