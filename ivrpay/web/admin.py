"""The admin's pages: users, API keys and webhooks, prompts, payments to review, the audit log.

Every route is ``@page(role="admin")``: an operator gets 403 on each (tested route by route).
Every change is audited with who did it.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import wave
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from ivrpay import store
from ivrpay.sounds.catalogue import BACKUP_DIR, load_prompts, missing_files, prompt_file
from ivrpay.sounds.wav import RATE, SAMPLE_WIDTH, check_wav_bytes, write_atomically
from ivrpay.store import screen as screen_store
from ivrpay.store.accounts import ROLES
from ivrpay.web.app import deps, page_number, render
from ivrpay.web.session import SESSION, Refused, actor, page

routes = web.RouteTableDef()
admin = page(role="admin")
AUDIT_PAGE = 100


async def _audit(request: web.Request, action: str, **kw: Any) -> None:
    pool, clock, _ = deps(request)
    await store.write_audit(pool, actor=actor(request), action=action, now=clock(), **kw)


def _back(path: str, **query: str) -> web.HTTPSeeOther:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return web.HTTPSeeOther(f"{path}?{qs}" if qs else path)


# -- users ------------------------------------------------------------------------------------


async def _users_page(request: web.Request, status: int = 200, **ctx: Any) -> web.Response:
    pool, _, _ = deps(request)
    users = await store.list_users(pool)
    ctx.setdefault("error", None)
    ctx.setdefault("done", request.query.get("done"))
    return render(request, "admin_users.html", status=status, users=users, **ctx)


@routes.get("/admin/users")
@admin
async def users(request: web.Request) -> web.StreamResponse:
    return await _users_page(request)


@routes.post("/admin/users")
@admin
async def add_user(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    form = await request.post()
    name = str(form.get("name") or "").strip()
    role = str(form.get("role") or "")
    password = str(form.get("password") or "")
    if not name or len(name) > 100:
        return await _users_page(request, 422, error="user_name_bad")
    if role not in ROLES:
        return await _users_page(request, 422, error="role_bad")
    if len(password) < 8:
        return await _users_page(request, 422, error="password_short")
    try:
        user = await store.create_user(pool, name, role, password)
    except store.Conflict:
        return await _users_page(request, 409, error="user_exists")
    await _audit(request, "user_added", target=f"user:{name}", data={"role": role})
    raise _back("/admin/users", done=f"added:{user['name']}")


async def _user_or_404(request: web.Request) -> dict[str, Any]:
    pool, _, _ = deps(request)
    user = await store.get_user(pool, request.match_info["id"])
    if user is None:
        raise Refused(404, "not_found")
    return user


@routes.post("/admin/users/{id}/enabled")
@admin
async def set_enabled(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    user = await _user_or_404(request)
    enabled = (await request.post()).get("enabled") == "1"
    if not enabled and user["id"] == request[SESSION]["user"]["id"]:
        return await _users_page(request, 409, error="not_yourself")
    await store.set_user_enabled(pool, user["id"], enabled)
    if not enabled:
        await screen_store.delete_user_sessions(pool, user["id"])
    action = "user_enabled" if enabled else "user_disabled"
    await _audit(request, action, target=f"user:{user['name']}")
    raise _back("/admin/users", done=action)


@routes.post("/admin/users/{id}/password")
@admin
async def reset_password(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    user = await _user_or_404(request)
    password = str((await request.post()).get("password") or "")
    if len(password) < 8:
        return await _users_page(request, 422, error="password_short")
    await store.set_user_password(pool, user["id"], password)
    await screen_store.delete_user_sessions(pool, user["id"])
    await _audit(request, "user_password_reset", target=f"user:{user['name']}")
    raise _back("/admin/users", done="user_password_reset")


@routes.post("/admin/users/{id}/role")
@admin
async def set_role(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    user = await _user_or_404(request)
    role = str((await request.post()).get("role") or "")
    if role not in ROLES:
        return await _users_page(request, 422, error="role_bad")
    if user["id"] == request[SESSION]["user"]["id"] and role != "admin":
        return await _users_page(request, 409, error="not_yourself")
    await screen_store.set_user_fields(pool, user["id"], role=role)
    await screen_store.delete_user_sessions(pool, user["id"])
    await _audit(request, "user_role_changed", target=f"user:{user['name']}", data={"role": role})
    raise _back("/admin/users", done="user_role_changed")


# -- API keys and webhooks --------------------------------------------------------------------


async def _keys_page(request: web.Request, status: int = 200, **ctx: Any) -> web.Response:
    pool, _, _ = deps(request)
    clients = [c for c in await store.list_api_clients(pool) if not c["is_default"]]
    ctx.setdefault("error", None)
    ctx.setdefault("created", None)
    ctx.setdefault("confirm", None)
    ctx.setdefault("done", request.query.get("done"))
    return render(request, "admin_keys.html", status=status, clients=clients, **ctx)


@routes.get("/admin/keys")
@admin
async def api_keys(request: web.Request) -> web.StreamResponse:
    return await _keys_page(request)


@routes.post("/admin/keys")
@admin
async def create_key(request: web.Request) -> web.StreamResponse:
    """A new API key, shown on this answer only (it is kept as a hash)."""
    pool, _, _ = deps(request)
    form = await request.post()
    name = str(form.get("name") or "").strip()
    url = str(form.get("webhook_url") or "").strip() or None
    if not name or len(name) > 200:
        return await _keys_page(request, 422, error="key_name_bad")
    try:
        client, api_key, secret = await store.create_api_client(pool, name, url)
    except ValueError:
        return await _keys_page(request, 422, error="webhook_url_bad")
    await _audit(request, "apikey_created", target=f"client:{client['id']}", data={"name": name})
    created = {"client": client, "api_key": api_key, "secret": secret}
    return await _keys_page(request, 201, created=created)


@routes.post("/admin/keys/{id}/webhook")
@admin
async def change_webhook(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    url = str((await request.post()).get("webhook_url") or "").strip() or None
    try:
        client = await store.update_api_client(pool, request.match_info["id"], webhook_url=url)
    except store.NotFound:
        raise Refused(404, "not_found") from None
    except ValueError:
        return await _keys_page(request, 422, error="webhook_url_bad")
    await _audit(request, "webhook_changed", target=f"client:{client['id']}", data={"url": url})
    raise _back("/admin/keys", done="webhook_changed")


@routes.post("/admin/keys/{id}/revoke")
@admin
async def revoke_key(request: web.Request) -> web.StreamResponse:
    """Confirmed by a second click; then the key is refused from the next request on, in every
    process (each request looks its key up in the database)."""
    pool, clock, _ = deps(request)
    client = await store.get_api_client(pool, request.match_info["id"])
    if client is None or client["is_default"]:
        raise Refused(404, "not_found")
    if (await request.post()).get("confirm") != "1":
        return await _keys_page(request, confirm=client)
    try:
        await store.revoke_api_client(pool, client["id"], actor=actor(request), now=clock())
    except store.NotFound:
        raise Refused(404, "not_found") from None
    raise _back("/admin/keys", done="apikey_revoked")


@routes.get("/admin/keys/{id}/deliveries")
@admin
async def deliveries(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    client = await store.get_api_client(pool, request.match_info["id"])
    if client is None:
        raise Refused(404, "not_found")
    rows = await store.list_deliveries(pool, client_id=client["id"], limit=1000)
    rows.reverse()  # newest first
    return render(request, "admin_deliveries.html", client=client, deliveries=rows[:200])


# -- prompts ----------------------------------------------------------------------------------


def _backup_file(sounds_dir: Path, lang: str, prompt_id: str) -> Path:
    return sounds_dir / lang / BACKUP_DIR / f"{prompt_id}.wav"


def _prompt_target(request: web.Request) -> tuple[Path, str, str]:
    """The sounds folder, language and prompt id of the route (404 unless in the catalogue)."""
    _, _, settings = deps(request)
    lang, pid = request.match_info["lang"], request.match_info["prompt"]
    if lang not in settings.languages or pid not in load_prompts(settings.sounds_dir):
        raise Refused(404, "not_found")
    return Path(settings.sounds_dir), lang, pid


def wav_seconds(data: bytes) -> float:
    """The length of an upload :func:`check_wav_bytes` accepted."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            return w.getnframes() / float(w.getframerate() or RATE)
    except (wave.Error, EOFError):
        return len(data) / float(RATE * SAMPLE_WIDTH)  # WAVE_FORMAT_EXTENSIBLE: by size


def _replace_prompt(sounds: Path, lang: str, pid: str, data: bytes) -> None:
    """The old file becomes the backup (one kept), the upload takes its place atomically."""
    current = prompt_file(sounds, lang, pid)
    if current.is_file():
        backup = _backup_file(sounds, lang, pid)
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(current, backup)
    write_atomically(current, data)


def _restore_prompt(sounds: Path, lang: str, pid: str) -> bool:
    """Swap the prompt with its backup (so a restore can be undone the same way)."""
    backup = _backup_file(sounds, lang, pid)
    if not backup.is_file():
        return False
    current = prompt_file(sounds, lang, pid)
    old = current.read_bytes() if current.is_file() else None
    write_atomically(current, backup.read_bytes())
    if old is not None:
        write_atomically(backup, old)
    return True


async def _prompts_page(request: web.Request, status: int = 200, **ctx: Any) -> web.Response:
    _, _, settings = deps(request)
    sounds = Path(settings.sounds_dir)
    prompts = load_prompts(sounds)
    langs = settings.languages
    rows = []
    for pid, prompt in prompts.items():
        cells = {}
        for lang in langs:
            cells[lang] = {
                "present": prompt_file(sounds, lang, pid).is_file(),
                "backup": _backup_file(sounds, lang, pid).is_file(),
                "text": prompt.text(lang) if lang in prompt.texts else "",
            }
        rows.append({"id": pid, "cells": cells})
    missing = [str(p.relative_to(sounds)) for p in missing_files(sounds, langs, prompts)]
    ctx.setdefault("error", None)
    ctx.setdefault("done", request.query.get("done"))
    return render(
        request,
        "admin_prompts.html",
        status=status,
        rows=rows,
        langs=langs,
        missing=missing,
        max_s=settings.prompt_max_s,
        **ctx,
    )


@routes.get("/admin/prompts")
@admin
async def prompts(request: web.Request) -> web.StreamResponse:
    return await _prompts_page(request)


@routes.get("/admin/prompts/{lang}/{prompt}.wav")
@admin
async def prompt_audio(request: web.Request) -> web.StreamResponse:
    sounds, lang, pid = _prompt_target(request)
    path = _backup_file(sounds, lang, pid) if "backup" in request.query else None
    path = path or prompt_file(sounds, lang, pid)
    if not path.is_file():
        raise Refused(404, "not_found")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


@routes.post("/admin/prompts/{lang}/{prompt}")
@admin
async def upload_prompt(request: web.Request) -> web.StreamResponse:
    """Replace a prompt with an uploaded recording, checked first: anything else is refused."""
    _, _, settings = deps(request)
    sounds, lang, pid = _prompt_target(request)
    upload = (await request.post()).get("file")
    target = f"{lang}/{pid}"
    if not isinstance(upload, web.FileField):
        return await _prompts_page(request, 422, error=("no_file", target, ""))
    data = upload.file.read()
    problem = check_wav_bytes(data)
    if problem is None and wav_seconds(data) > settings.prompt_max_s:
        problem = (
            f"{wav_seconds(data):.1f} s is longer than the {settings.prompt_max_s:g} s allowed"
        )
    if problem is not None:
        return await _prompts_page(request, 422, error=("bad_wav", target, problem))
    await asyncio.to_thread(_replace_prompt, sounds, lang, pid, data)
    await _audit(request, "prompt_replaced", target=f"prompt:{target}", data={"bytes": len(data)})
    raise _back("/admin/prompts", done=f"replaced:{target}")


@routes.post("/admin/prompts/{lang}/{prompt}/restore")
@admin
async def restore_prompt(request: web.Request) -> web.StreamResponse:
    sounds, lang, pid = _prompt_target(request)
    if not await asyncio.to_thread(_restore_prompt, sounds, lang, pid):
        return await _prompts_page(request, 409, error=("no_backup", f"{lang}/{pid}", ""))
    await _audit(request, "prompt_restored", target=f"prompt:{lang}/{pid}")
    raise _back("/admin/prompts", done=f"restored:{lang}/{pid}")


# -- payments to review -----------------------------------------------------------------------


@routes.get("/admin/reviews")
@admin
async def reviews(request: web.Request) -> web.StreamResponse:
    pool, _, _ = deps(request)
    items = await screen_store.list_review_payments(pool)
    return render(
        request, "admin_reviews.html", items=items, error=None, done=request.query.get("done")
    )


@routes.post("/admin/reviews/{id}")
@admin
async def decide_review(request: web.Request) -> web.StreamResponse:
    """The admin's decision (succeeded / failed) and why, recorded with who decided."""
    pool, clock, _ = deps(request)
    form = await request.post()
    decision = form.get("decision")
    note = str(form.get("note") or "").strip()[:500]
    if decision not in ("succeeded", "failed") or not note:
        items = await screen_store.list_review_payments(pool)
        return render(
            request, "admin_reviews.html", status=422, items=items, error="review_needs", done=None
        )
    try:
        await store.resolve_review(
            pool,
            request.match_info["id"],
            status=str(decision),
            actor=actor(request),
            now=clock(),
            note=note,
        )
    except store.NotFound:
        raise Refused(404, "not_found") from None
    except store.Conflict:
        raise _back("/admin/reviews", done="review_gone") from None
    raise _back("/admin/reviews", done="review_recorded")


# -- the audit log ----------------------------------------------------------------------------


def _day(text: str | None, tz: Any) -> datetime | None:
    try:
        return datetime.combine(datetime.strptime(text or "", "%Y-%m-%d").date(), time(0), tz)
    except ValueError:
        return None


@routes.get("/admin/audit")
@admin
async def audit_log(request: web.Request) -> web.StreamResponse:
    pool, _, settings = deps(request)
    q = request.query
    filters = {
        "actor": (q.get("actor") or "").strip()[:100] or None,
        "action": (q.get("action") or "").strip()[:64] or None,
        "day": (q.get("day") or "").strip()[:10] or None,
    }
    since = _day(filters["day"], settings.tz)
    page_no = page_number(request)
    rows, total = await screen_store.search_audit(
        pool,
        actor=filters["actor"],
        action=filters["action"],
        since=since,
        until=since + timedelta(days=1) if since else None,
        limit=AUDIT_PAGE,
        offset=(page_no - 1) * AUDIT_PAGE,
    )
    return render(
        request,
        "admin_audit.html",
        rows=rows,
        total=total,
        filters=filters,
        actions=await screen_store.audit_actions(pool),
        page_no=page_no,
        pages=max(1, -(-total // AUDIT_PAGE)),
        query={k: v for k, v in filters.items() if v},
    )
