"""Reading JSON request bodies and the Idempotency-Key protocol.

Bodies are read with a small limit of our own (the application's ``client_max_size`` stays large for
the operator screen's uploads). Malformed JSON is ``400``; NaN/Infinity and absurd nesting are
malformed too, since PostgreSQL and most clients cannot take them. A body that is not
``application/json`` is ``415``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from ivrpay import store
from ivrpay.api import keys
from ivrpay.api.problems import PROBLEM_CONTENT_TYPE, Problem, conflict, malformed
from ivrpay.api.render import dumps, to_plain
from ivrpay.api.validation import check_idempotency_key
from ivrpay.config import Settings

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
JSON_CONTENT_TYPE = "application/json"
REPLAYED_HEADER = "Idempotent-Replayed"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request, *, required: bool) -> Any:
    """The parsed body, or ``None`` when it is empty and not ``required``."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Problem(413, "too-large", f"The body must be at most {MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(16 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Problem(413, "too-large", f"The body must be at most {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise malformed("A JSON body is required.")
        return None
    # Only a body is judged by its type: an action route's empty POST needs no Content-Type.
    if request.content_type != JSON_CONTENT_TYPE:
        raise Problem(
            415,
            "unsupported-media-type",
            f"The body must be {JSON_CONTENT_TYPE}.",
            title="Unsupported Media Type",
            headers={"Accept-Post": JSON_CONTENT_TYPE},
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("The body is not UTF-8 text.") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        # json's message names a position, never the content: safe to pass on.
        where = (
            f" ({exc.msg} at line {exc.lineno} column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise malformed(f"The body is not valid JSON{where}.") from None


def request_hash(method: str, path: str, body: Any) -> str:
    """What "the same request" means for an idempotency key: method, path and the body's JSON
    value (key order and whitespace do not matter)."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    h = hashlib.sha256()
    h.update(f"{method} {path}\n".encode())
    h.update(canonical.encode("utf-8"))
    return h.hexdigest()


def _answer(status: int, body: Any, *, replayed: bool) -> web.Response:
    content_type = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    return web.Response(text=dumps(body), status=status, content_type=content_type, headers=headers)


Outcome = tuple[int, Any]


def _lock_s(settings: Settings) -> float:
    """How long a first request holds its key: longer than a settlement can take against a slow,
    busy gateway (SearchTrade + AlterTran, each up to the gateway timeout, with retries)."""
    return max(60.0, settings.gateway_timeout_s * 4 + 30)


async def idempotent(
    request: web.Request, body: Any, run: Callable[[], Awaitable[Outcome]]
) -> web.Response:
    """Run ``run`` once per (API client, Idempotency-Key): a repeat with the same request gets the
    recorded answer, another request under the same key (or one while the first still runs) ``409``.

    Client errors (4xx) from ``run`` are recorded too, since they are the answer; anything else (a
    5xx, an unexpected exception) releases the key so the client may retry.
    """
    key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    if key is None:
        status, value = await run()
        return _answer(status, value, replayed=False)

    pool = request.config_dict[keys.POOL]
    clock = request.config_dict[keys.CLOCK]
    client_id = request[keys.CLIENT]["id"]
    try:
        saved = await store.begin_idempotent(
            pool,
            client_id=client_id,
            key=key,
            request_hash=request_hash(request.method, request.path, body),
            now=clock(),
            lock_s=_lock_s(request.config_dict[keys.SETTINGS]),
        )
    except store.IdempotencyConflict as exc:
        if exc.code == "idempotency_in_progress":
            raise conflict(
                "idempotency-in-progress",
                "A request with this Idempotency-Key is still being processed.",
            ) from None
        raise conflict(
            "idempotency-mismatch",
            "This Idempotency-Key was used with a different request.",
        ) from None
    if saved is not None:
        return _answer(int(saved["status"]), saved["body"], replayed=True)

    try:
        status, value = await run()
    except Problem as problem:
        if 400 <= problem.status < 500:
            await store.finish_idempotent(
                pool,
                client_id=client_id,
                key=key,
                status=problem.status,
                body=to_plain(problem.body(request.path)),
                now=clock(),
            )
        else:
            await _release(pool, client_id, key)
        raise
    except BaseException:
        await _release(pool, client_id, key)
        raise
    plain = to_plain(value)
    await store.finish_idempotent(
        pool, client_id=client_id, key=key, status=status, body=plain, now=clock()
    )
    return _answer(status, plain, replayed=False)


async def _release(pool: Any, client_id: str, key: str) -> None:
    try:
        await store.abandon_idempotent(pool, client_id=client_id, key=key)
    except Exception:  # the key then lapses by its lock time; never hide the first error
        log.warning("api.idempotency_release_failed", exc_info=True)
