"""The operator's pages: sign-in, a new payment, the live page of its call, today's payments.

The payment form is read into the API's request body and checked by the API's own validation
(:func:`ivrpay.api.validation.parse_new_payment`), so the screen refuses exactly what the API
refuses, with the same words. Cancel, capture, void and refund go through the same store and
settlement code as the API.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, time, timedelta
from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from ivrpay.api.events import stream_payment
from ivrpay.api.listenin import listen_in
from ivrpay.api.payments import create_new_payment, settle_payment
from ivrpay.api.problems import Problem
from ivrpay.api.takeback import AmiAction, take_back
from ivrpay.api.validation import JOBS, METHODS, OPERATIONS, parse_new_payment
from ivrpay.store import screen as screen_store
from ivrpay.store.states import STATUSES
from ivrpay.web import live
from ivrpay.web.app import deps, page_number, render
from ivrpay.web.session import (
    LANG_COOKIE,
    SCREEN_LANGUAGES,
    SESSION,
    SESSION_COOKIE,
    Refused,
    actor,
    clear_cookie,
    page,
    set_cookie,
    signed,
)

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

PAGE_SIZE = 50
_INT = re.compile(r"[0-9][0-9,]{0,15}")
# The form's fields, in the API's names (the operator object is built from the user and callback).
FORM_FIELDS = ("order_id", "amount", "tax", "job", "method", "pay_times", "operation", "member_id")
FORM_INTS = ("amount", "tax", "method", "pay_times")


def _home(user: dict[str, Any]) -> str:
    return "/payments" if user["role"] == "admin" else "/payments/new"


def see_other(url: str) -> web.Response:
    """A 303 to ``url`` that can carry cookies."""
    return web.Response(status=303, headers={"Location": url})


def _local_path(value: Any, default: str) -> str:
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value
    return default


# -- sign-in ----------------------------------------------------------------------------------


@routes.get("/")
@page(role=None)
async def root(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    raise web.HTTPSeeOther(_home(session["user"]) if session else "/signin")


@routes.get("/signin")
@page(role=None)
async def signin_form(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    if session is not None:
        raise web.HTTPSeeOther(_home(session["user"]))
    return render(request, "signin.html", error=None, name="")


@routes.post("/signin")
@page(role=None)
async def signin(request: web.Request) -> web.StreamResponse:
    pool, clock, settings = deps(request)
    form = await request.post()
    name = str(form.get("name") or "")[:100]
    password = str(form.get("password") or "")
    now = clock()
    lock_keys = [f"user:{name}", f"addr:{request.remote or '-'}"]
    if await screen_store.signin_locked(
        pool,
        lock_keys,
        now=now,
        window_s=settings.signin_lockout_s,
        max_failures=settings.signin_max_failures,
    ):
        await store.write_audit(pool, actor=f"screen:{name}", action="signin_locked", now=now)
        return render(request, "signin.html", status=429, error="signin_locked", name=name)
    user = await store.authenticate_user(pool, name, password) if name and password else None
    if user is None:
        await screen_store.record_signin_failure(pool, lock_keys, now=now)
        await store.write_audit(
            pool,
            actor=f"screen:{name}",
            action="signin_failed",
            now=now,
            data={"address": request.remote},
        )
        return render(request, "signin.html", status=401, error="signin_failed", name=name)
    await screen_store.clear_signin_failures(
        pool, lock_keys[0], before=now - timedelta(seconds=settings.signin_lockout_s)
    )
    token, _csrf = await screen_store.create_session(
        pool, user["id"], now=now, max_s=settings.session_max_s
    )
    await store.write_audit(
        pool, actor=f"screen:{name}", action="signin", now=now, data={"address": request.remote}
    )
    # A language chosen on the sign-in page becomes the user's.
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in SCREEN_LANGUAGES:
        await screen_store.set_user_fields(pool, user["id"], language=chosen)
    response = see_other(_home(user))
    set_cookie(response, request, SESSION_COOKIE, signed(request, token))
    return response


@routes.post("/signout")
@page()
async def signout(request: web.Request) -> web.StreamResponse:
    pool, clock, _ = deps(request)
    session = request[SESSION]
    await screen_store.delete_session(pool, session["token"])
    await store.write_audit(pool, actor=actor(request), action="signout", now=clock())
    response = see_other("/signin")
    clear_cookie(response, request, SESSION_COOKIE)
    return response


@routes.post("/lang")
@page(role=None)
async def switch_language(request: web.Request) -> web.StreamResponse:
    """The screen's language, remembered for the user (and in a cookie before sign-in)."""
    pool, _, _ = deps(request)
    form = await request.post()
    lang = form.get("lang")
    if lang not in SCREEN_LANGUAGES:
        raise Refused(422, "error")
    session = request[SESSION]
    if session is not None:
        await screen_store.set_user_fields(pool, session["user"]["id"], language=str(lang))
    response = see_other(_local_path(form.get("next"), "/"))
    set_cookie(response, request, LANG_COOKIE, str(lang), max_age=365 * 86400)
    return response


# -- a new payment ----------------------------------------------------------------------------


def _form_context(settings: Any, values: dict[str, str], errors: dict[str, str]) -> dict:
    return dict(
        values=values,
        errors=errors,
        jobs=JOBS,
        methods=METHODS,
        operations=OPERATIONS,
        languages=settings.languages,
    )


def form_body(form: Any, user: dict[str, Any]) -> dict[str, Any]:
    """The API body of the payment form: empty fields are left out, whole numbers (commas
    allowed) become integers, anything else goes to the API's validation as typed."""
    body: dict[str, Any] = {}
    for name in FORM_FIELDS:
        raw = str(form.get(name) or "").strip()
        if not raw:
            continue
        if name in FORM_INTS and _INT.fullmatch(raw):
            body[name] = int(raw.replace(",", ""))
        else:
            body[name] = raw
    language = str(form.get("language") or "").strip()
    if language:
        body["language"] = language
    # register ignores amount and tax; the form sends them only for charges.
    if body.get("operation") == "register":
        for name in ("amount", "tax", "job", "method", "pay_times"):
            body.pop(name, None)
    body["operator"] = {
        "id": user["name"],
        "callback": str(form.get("callback") or "").strip(),
        # An unticked box sends nothing: the form always says which it is.
        "listen_in": form.get("listen_in") == "on",
    }
    return body


@routes.get("/payments/new")
@page()
async def new_payment_form(request: web.Request) -> web.StreamResponse:
    _, _, settings = deps(request)
    user = request[SESSION]["user"]
    values = {
        "callback": user.get("callback") or "",
        "language": settings.default_language,
        "listen_in": "on" if settings.listen_in else "",
    }
    return render(request, "new.html", **_form_context(settings, values, {}))


@routes.post("/payments/new")
@page()
async def new_payment(request: web.Request) -> web.StreamResponse:
    pool, clock, settings = deps(request)
    user = request[SESSION]["user"]
    form = await request.post()
    values = {
        k: str(form.get(k) or "") for k in (*FORM_FIELDS, "language", "callback", "listen_in")
    }
    body = form_body(form, user)
    try:
        new = parse_new_payment(body, settings)
        client = await store.ensure_default_client(pool)
        snapshot = await create_new_payment(pool, client["id"], new, clock())
    except Problem as problem:
        errors: dict[str, str] = {}
        for e in problem.errors:
            name = "callback" if e.field.startswith("operator") else e.field
            errors.setdefault(name, e.message)
        if not problem.errors:
            errors["order_id" if problem.status == 409 else "_"] = problem.detail or ""
        ctx = _form_context(settings, values, errors)
        return render(request, "new.html", status=problem.status, **ctx)
    now = clock()
    await store.write_audit(
        pool,
        actor=actor(request),
        action="payment_registered",
        now=now,
        payment_id=snapshot["id"],
        data={"order_id": snapshot["order_id"], "amount": snapshot["amount"]},
    )
    await screen_store.set_user_fields(pool, user["id"], callback=body["operator"]["callback"])
    raise web.HTTPSeeOther(f"/payments/{snapshot['id']}")


# -- the live page ----------------------------------------------------------------------------


async def _payment_or_404(request: web.Request) -> dict[str, Any]:
    pool, _, _ = deps(request)
    payment = await store.get_payment(pool, request.match_info["id"])
    if payment is None:
        raise Refused(404, "not_found")
    return payment


def _panel_context(request: web.Request, payment: dict[str, Any]) -> dict[str, Any]:
    settings = request.config_dict[keys.SETTINGS]
    ami = request.config_dict.get(keys.AMI)
    return dict(
        p=payment,
        steps=live.steps(payment, settings),
        outcome=live.outcome(payment),
        max_attempts=settings.attempts,
        # The button works while this process's AMI link is logged in.
        takeback_ready=ami is not None and bool(getattr(ami, "connected", False)),
        ami_configured=settings.ami_url is not None,
    )


@routes.get("/payments/{id}")
@page()
async def live_page(request: web.Request) -> web.StreamResponse:
    payment = await _payment_or_404(request)
    confirm = request.query.get("confirm")
    return render(
        request,
        "live.html",
        confirm=confirm if confirm in ("capture", "void", "refund") else None,
        done=request.query.get("done"),
        failed=request.query.get("failed"),
        **_panel_context(request, payment),
    )


@routes.get("/payments/{id}/live")
@page()
async def live_events(request: web.Request) -> web.StreamResponse:
    """SSE of the live panel, rendered here: the page's script only swaps it in."""
    payment = await _payment_or_404(request)

    async def frame(seq: int, snapshot: dict[str, Any]) -> bytes:
        html = render(request, "_panel.html", **_panel_context(request, snapshot)).text or ""
        data = "".join(f"data: {line}\n" for line in html.splitlines() if line.strip())
        return f"id: {seq}\nevent: payment\n{data}\n".encode()

    return await stream_payment(request, payment["id"], frame)


@routes.post("/payments/{id}/cancel")
@page()
async def cancel(request: web.Request) -> web.StreamResponse:
    pool, clock, _ = deps(request)
    payment = await _payment_or_404(request)
    try:
        outcome, _ = await store.cancel_payment(
            pool, payment["id"], now=clock(), actor=actor(request)
        )
    except store.Conflict:
        raise web.HTTPSeeOther(f"/payments/{payment['id']}?failed=not_cancelable") from None
    done = "cancel" if outcome == "canceled" else "cancel_requested"
    raise web.HTTPSeeOther(f"/payments/{payment['id']}?done={done}")


async def _ami_action(request: web.Request, act: AmiAction, done: str) -> web.StreamResponse:
    """An AMI action on the payment (the API's own, as this operator); back to the live page
    saying how it went."""
    payment = await _payment_or_404(request)
    base = f"/payments/{payment['id']}"
    try:
        await act(request.config_dict, payment["id"], actor(request))
    except Problem as problem:
        log.info(f"screen.{done}_refused", status=problem.status, problem=problem.slug)
        raise web.HTTPSeeOther(f"{base}?failed={problem.slug or problem.status}") from None
    raise web.HTTPSeeOther(f"{base}?done={done}")


@routes.post("/payments/{id}/take-back")
@page()
async def take_back_caller(request: web.Request) -> web.StreamResponse:
    """Take the caller back from the IVR."""
    return await _ami_action(request, take_back, "take_back")


@routes.post("/payments/{id}/listen-in")
@page()
async def listen_in_start(request: web.Request) -> web.StreamResponse:
    """Start the card entry while this operator listens in."""
    return await _ami_action(request, listen_in, "listen_in")


# -- today's payments -------------------------------------------------------------------------


def _list_filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    status = q.get("status") or None
    if status not in STATUSES:
        status = None
    order_id = (q.get("order_id") or "").strip()[:24] or None
    operator = (q.get("operator") or "").strip()[:64] or None
    return {"status": status, "operator": operator, "order_id": order_id}


def _today(request: web.Request) -> tuple[datetime, datetime]:
    _, clock, settings = deps(request)
    local = clock().astimezone(settings.tz)
    start = datetime.combine(local.date(), time(0), tzinfo=settings.tz)
    return start, start + timedelta(days=1)


@routes.get("/payments")
@page()
async def payment_list(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    filters = _list_filters(request)
    page_no = page_number(request)
    since, until = _today(request)
    items, total = await screen_store.list_screen_payments(
        pool,
        since=since,
        until=until,
        limit=PAGE_SIZE,
        offset=(page_no - 1) * PAGE_SIZE,
        **filters,
    )
    return render(
        request,
        "list.html",
        items=items,
        total=total,
        page_no=page_no,
        pages=max(1, -(-total // PAGE_SIZE)),
        filters=filters,
        statuses=STATUSES,
        query={k: v for k, v in filters.items() if v},
        day=since,
    )


CSV_COLUMNS = (
    "created_at",
    "order_id",
    "status",
    "amount",
    "tax",
    "total",
    "operation",
    "job",
    "method",
    "operator",
    "brand",
    "approve",
    "tran_id",
    "settlement",
    "error_code",
    "payment_id",
)


def csv_rows(items: list[dict[str, Any]], tz: Any) -> list[list[str]]:
    """The listed payments as CSV rows: no card digits (brand only, never the last 4)."""
    rows = []
    for p in items:
        result = p.get("result") or {}
        rows.append(
            [
                p["created_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                p["order_id"],
                p["status"],
                str(p["amount"]),
                str(p["tax"]),
                str(p["amount"] + p["tax"]),
                p["operation"],
                p.get("job") or "",
                "" if p.get("method") is None else str(p["method"]),
                (p.get("operator") or {}).get("id", ""),
                (p.get("card") or {}).get("brand") or "",
                result.get("approve") or "",
                result.get("tran_id") or "",
                p.get("settlement") or "",
                (p.get("error") or {}).get("code") or "",
                p["id"],
            ]
        )
    return rows


@routes.get("/payments.csv")
@page()
async def payment_csv(request: web.Request) -> web.StreamResponse:
    """What the list shows (every page), as UTF-8 with a BOM, or cp932 with CRLF for Excel."""
    pool, _, settings = deps(request)
    since, until = _today(request)
    items, _ = await screen_store.list_screen_payments(
        pool, since=since, until=until, limit=10000, **_list_filters(request)
    )
    sjis = request.query.get("encoding") == "cp932"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if sjis else "\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(items, settings.tz))
    text = out.getvalue()
    if sjis:
        data, charset = text.encode("cp932", errors="replace"), "Shift_JIS"
    else:
        data, charset = ("\ufeff" + text).encode("utf-8"), "utf-8"
    name = f"payments-{since.strftime('%Y%m%d')}{'-sjis' if sjis else ''}.csv"
    return web.Response(
        body=data,
        headers={
            "Content-Type": f"text/csv; charset={charset}",
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


@routes.post("/payments/{id}/{action:capture|void|refund}")
@page()
async def settle(request: web.Request) -> web.StreamResponse:
    """Capture, void or refund a succeeded payment: the first click asks, the second does it."""
    payment = await _payment_or_404(request)
    action = request.match_info["action"]
    form = await request.post()
    base = f"/payments/{payment['id']}"
    if form.get("confirm") != "1":
        raise web.HTTPSeeOther(f"{base}?confirm={action}")
    try:
        await settle_payment(request.config_dict, payment["id"], action, actor(request))
    except Problem as problem:
        log.info("screen.settlement_refused", action=action, status=problem.status)
        raise web.HTTPSeeOther(f"{base}?failed={problem.slug or problem.status}") from None
    raise web.HTTPSeeOther(f"{base}?done={action}")
