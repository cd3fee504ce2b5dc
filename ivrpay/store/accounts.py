"""API clients, screen users, audit rows and idempotency keys.

API keys are kept as SHA-256 hashes only (they are long random strings, so a fast hash is
enough) and looked up by hash; so are Idempotency-Keys (compared, never shown). Passwords are
hashed with scrypt. Webhook secrets are kept in clear: signing needs them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ivrpay.store._core import Db, audit, aware, connection, dumps, parse_id, seconds, transaction
from ivrpay.store.errors import Conflict, IdempotencyConflict, NotFound

IDEMPOTENCY_TTL = timedelta(hours=24)
ROLES = ("operator", "admin")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_CLIENT_COLUMNS = "id, name, key_prefix, webhook_url, is_default, enabled, created_at"
_USER_COLUMNS = "id, name, role, enabled, created_at"
_UNSET: Any = ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _idempotency_key_hash(key: str) -> str:
    """What is kept of an Idempotency-Key (sql/005): its hex SHA-256, never the key itself."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _key_hash(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode("utf-8", "replace")).digest()


def _check_webhook_url(url: str | None) -> str | None:
    if url is None or url == "":
        return None
    if not re.fullmatch(r"https?://[^\s/?#]+(/\S*)?", url) or len(url) > 2000:
        raise ValueError("webhook URL must be an http(s) URL")
    return url


def _client(row: Any) -> dict[str, Any]:
    return {**dict(row), "id": str(row["id"])}


async def create_api_client(
    db: Db, name: str, webhook_url: str | None = None
) -> tuple[dict[str, Any], str, str]:
    """A new client: ``(client, api_key, webhook_secret)``; the key is shown only this once."""
    url = _check_webhook_url(webhook_url)
    api_key = "ivp_" + secrets.token_urlsafe(32)
    secret = "whsec_" + secrets.token_urlsafe(32)
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"""INSERT INTO api_clients (id, name, key_hash, key_prefix, webhook_url,
                   webhook_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                RETURNING {_CLIENT_COLUMNS}""",
            uuid.uuid4(),
            name,
            _key_hash(api_key),
            api_key[:8],
            url,
            secret,
            _utcnow(),
        )
    return _client(row), api_key, secret


async def get_api_client_by_key(db: Db, api_key: str) -> dict[str, Any] | None:
    """The enabled client holding this key, or None."""
    if not isinstance(api_key, str) or not api_key:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"SELECT {_CLIENT_COLUMNS} FROM api_clients WHERE key_hash = $1 AND enabled",
            _key_hash(api_key),
        )
    return None if row is None else _client(row)


async def get_api_client(db: Db, client_id: Any) -> dict[str, Any] | None:
    cid = parse_id(client_id)
    if cid is None:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(f"SELECT {_CLIENT_COLUMNS} FROM api_clients WHERE id = $1", cid)
    return None if row is None else _client(row)


async def ensure_default_client(db: Db) -> dict[str, Any]:
    """The client that owns payments made on the operator screen (created on first use)."""
    async with connection(db) as conn:
        await conn.execute(
            """INSERT INTO api_clients (id, name, webhook_secret, is_default, created_at)
               VALUES ($1, 'screen', $2, true, $3)
               ON CONFLICT (is_default) WHERE is_default DO NOTHING""",
            uuid.uuid4(),
            "whsec_" + secrets.token_urlsafe(32),
            _utcnow(),
        )
        row = await conn.fetchrow(f"SELECT {_CLIENT_COLUMNS} FROM api_clients WHERE is_default")
    return _client(row)


async def list_api_clients(db: Db) -> list[dict[str, Any]]:
    async with connection(db) as conn:
        rows = await conn.fetch(f"SELECT {_CLIENT_COLUMNS} FROM api_clients ORDER BY created_at")
    return [_client(r) for r in rows]


async def update_api_client(
    db: Db, client_id: Any, *, webhook_url: Any = _UNSET, enabled: Any = _UNSET
) -> dict[str, Any]:
    """Change a client's webhook URL (None removes it) or switch the client off/on."""
    cid = parse_id(client_id)
    if cid is None:
        raise NotFound("API client not found")
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"""UPDATE api_clients SET
                   webhook_url = CASE WHEN $2 THEN $3 ELSE webhook_url END,
                   enabled = CASE WHEN $4 THEN $5 ELSE enabled END
                WHERE id = $1 RETURNING {_CLIENT_COLUMNS}""",
            cid,
            webhook_url is not _UNSET,
            None if webhook_url is _UNSET else _check_webhook_url(webhook_url),
            enabled is not _UNSET,
            True if enabled is _UNSET else bool(enabled),
        )
    if row is None:
        raise NotFound("API client not found")
    return _client(row)


async def revoke_api_client(
    db: Db, name_or_id: str, *, actor: str, now: datetime
) -> dict[str, Any]:
    """Switch a client's key off for good, by id or by name (audited).

    Every process looks the key up in the database on each request (no cache), so the key is
    refused everywhere from the next request on. NotFound when nothing matches (the screen's own
    client has no key and cannot be revoked); Conflict("ambiguous") when a name names several
    keys still enabled."""
    aware(now)
    cid = parse_id(name_or_id)
    async with transaction(db) as conn:
        if cid is not None:
            rows = await conn.fetch(
                f"""SELECT {_CLIENT_COLUMNS} FROM api_clients
                    WHERE id = $1 AND NOT is_default FOR UPDATE""",
                cid,
            )
        else:
            rows = await conn.fetch(
                f"""SELECT {_CLIENT_COLUMNS} FROM api_clients
                    WHERE name = $1 AND NOT is_default ORDER BY enabled DESC FOR UPDATE""",
                name_or_id,
            )
            live = [r for r in rows if r["enabled"]]
            if len(live) > 1:
                raise Conflict(
                    "ambiguous", f"{len(live)} enabled keys are named {name_or_id!r}: give the id"
                )
            rows = live or rows[:1]
        if not rows:
            raise NotFound("API client not found")
        row = await conn.fetchrow(
            f"UPDATE api_clients SET enabled = false WHERE id = $1 RETURNING {_CLIENT_COLUMNS}",
            rows[0]["id"],
        )
        if rows[0]["enabled"]:
            await audit(
                conn,
                actor=actor,
                action="apikey_revoked",
                now=now,
                target=f"client:{row['id']}",
                data={"name": row["name"]},
            )
    return _client(row)


# -- users ------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64), for :func:`check_password`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    params = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${params}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError, AttributeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy_hash() -> str:
    # Checked against when the user does not exist, so both answers take as long.
    return hash_password(secrets.token_urlsafe(16))


def _user(row: Any) -> dict[str, Any]:
    return {**dict(row), "id": str(row["id"])}


async def create_user(db: Db, name: str, role: str, password: str) -> dict[str, Any]:
    """A screen user; Conflict("user_exists") when the name is taken."""
    if role not in ROLES:
        raise ValueError("role must be operator or admin")
    if not password:
        raise ValueError("the password is empty")
    hashed = await asyncio.to_thread(hash_password, password)
    async with connection(db) as conn:
        try:
            row = await conn.fetchrow(
                f"""INSERT INTO users (id, name, role, password_hash, created_at)
                    VALUES ($1, $2, $3, $4, $5) RETURNING {_USER_COLUMNS}""",
                uuid.uuid4(),
                name,
                role,
                hashed,
                _utcnow(),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("user_exists", f"user {name!r} already exists") from None
        except asyncpg.CheckViolationError:
            raise ValueError("the user name must be 1–100 characters") from None
    return _user(row)


async def authenticate_user(db: Db, name: str, password: str) -> dict[str, Any] | None:
    """The enabled user with this name and password, or None (same work either way)."""
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE name = $1", name
        )
    stored = row["password_hash"] if row is not None else _dummy_hash()
    ok = await asyncio.to_thread(check_password, stored, password)
    if row is None or not ok or not row["enabled"]:
        return None
    user = _user(row)
    user.pop("password_hash")
    return user


async def get_user(db: Db, user_id: Any) -> dict[str, Any] | None:
    uid = parse_id(user_id)
    if uid is None:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", uid)
    return None if row is None else _user(row)


async def list_users(db: Db) -> list[dict[str, Any]]:
    async with connection(db) as conn:
        rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")
    return [_user(r) for r in rows]


async def set_user_password(db: Db, user_id: Any, password: str) -> None:
    uid = parse_id(user_id)
    if uid is None:
        raise NotFound("user not found")
    if not password:
        raise ValueError("the password is empty")
    hashed = await asyncio.to_thread(hash_password, password)
    async with connection(db) as conn:
        status = await conn.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", uid, hashed
        )
    if status.endswith(" 0"):
        raise NotFound("user not found")


async def set_user_enabled(db: Db, user_id: Any, enabled: bool) -> None:
    uid = parse_id(user_id)
    if uid is None:
        raise NotFound("user not found")
    async with connection(db) as conn:
        status = await conn.execute("UPDATE users SET enabled = $2 WHERE id = $1", uid, enabled)
    if status.endswith(" 0"):
        raise NotFound("user not found")


# -- audit ------------------------------------------------------------------------------------


async def write_audit(
    db: Db,
    *,
    actor: str,
    action: str,
    now: datetime,
    payment_id: Any = None,
    target: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """One audit row (who did what to which payment or object)."""
    aware(now)
    async with connection(db) as conn:
        await audit(
            conn,
            actor=actor,
            action=action,
            now=now,
            payment_id=parse_id(payment_id) if payment_id is not None else None,
            target=target,
            data=json.loads(dumps(data or {})),
        )


async def list_audit(db: Db, *, payment_id: Any = None, limit: int = 100) -> list[dict[str, Any]]:
    limit = max(1, min(int(limit), 1000))
    async with connection(db) as conn:
        if payment_id is not None:
            pid = parse_id(payment_id)
            if pid is None:
                return []
            rows = await conn.fetch(
                "SELECT * FROM audit WHERE payment_id = $1 ORDER BY id LIMIT $2", pid, limit
            )
        else:
            rows = await conn.fetch("SELECT * FROM audit ORDER BY id DESC LIMIT $1", limit)
    return [
        {**dict(r), "payment_id": None if r["payment_id"] is None else str(r["payment_id"])}
        for r in rows
    ]


# -- idempotency keys -------------------------------------------------------------------------


async def begin_idempotent(
    db: Db,
    *,
    client_id: Any,
    key: str,
    request_hash: str,
    now: datetime,
    lock_s: float = 60.0,
) -> dict[str, Any] | None:
    """Start a keyed request: None = go ahead (then :func:`finish_idempotent`); a dict
    ``{status, body}`` = the stored answer to replay. IdempotencyConflict when the key came with
    another body (``idempotency_mismatch``) or its first request is still running
    (``idempotency_in_progress``; after ``lock_s`` a crashed first request is taken over)."""
    aware(now)
    cid = parse_id(client_id)
    if cid is None:
        raise NotFound("API client not found")
    hashed = _idempotency_key_hash(key)
    async with transaction(db) as conn:
        inserted = await conn.fetchval(
            """INSERT INTO idempotency_keys (client_id, key_hash, request_hash, state, locked_until,
                   created_at, expires_at) VALUES ($1, $2, $3, 'running', $4, $5, $6)
               ON CONFLICT (client_id, key_hash) DO NOTHING RETURNING key_hash""",
            cid,
            hashed,
            request_hash,
            now + seconds(lock_s),
            now,
            now + IDEMPOTENCY_TTL,
        )
        if inserted is not None:
            return None
        row = await conn.fetchrow(
            "SELECT * FROM idempotency_keys WHERE client_id = $1 AND key_hash = $2 FOR UPDATE",
            cid,
            hashed,
        )
        if (
            row is None
            or row["expires_at"] <= now
            or (
                row["state"] == "running"
                and row["request_hash"] == request_hash
                and row["locked_until"] <= now
            )
        ):
            # Gone, past its 24 h, or its first request died: this request takes the key.
            await conn.execute(
                """INSERT INTO idempotency_keys (client_id, key_hash, request_hash, state,
                       locked_until, created_at, expires_at)
                   VALUES ($1, $2, $3, 'running', $4, $5, $6)
                   ON CONFLICT (client_id, key_hash) DO UPDATE
                   SET request_hash = EXCLUDED.request_hash,
                       state = 'running', locked_until = EXCLUDED.locked_until,
                       response_status = NULL, response_body = NULL,
                       created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at""",
                cid,
                hashed,
                request_hash,
                now + seconds(lock_s),
                now,
                now + IDEMPOTENCY_TTL,
            )
            return None
        if row["request_hash"] != request_hash:
            raise IdempotencyConflict(
                "idempotency_mismatch", "this Idempotency-Key was used with another request"
            )
        if row["state"] == "running":
            raise IdempotencyConflict(
                "idempotency_in_progress", "a request with this Idempotency-Key is in progress"
            )
        body = row["response_body"]
        # Kept as its JSON text (see finish_idempotent); an answer stored as an object by an
        # older version is still replayed.
        if isinstance(body, str):
            body = json.loads(body)
        return {"status": row["response_status"], "body": body}


async def finish_idempotent(
    db: Db, *, client_id: Any, key: str, status: int, body: Any, now: datetime
) -> None:
    """Store the answer given (``body`` JSON-able; datetimes are kept as RFC 3339 strings).

    The body is kept as its JSON text (a JSON string in the jsonb column), not as a jsonb object,
    which would reorder its keys: a replay is the first answer byte for byte."""
    aware(now)
    cid = parse_id(client_id)
    if cid is None:
        raise NotFound("API client not found")
    hashed = _idempotency_key_hash(key)
    async with connection(db) as conn:
        await conn.execute(
            """UPDATE idempotency_keys SET state = 'done', locked_until = NULL,
                   response_status = $3, response_body = $4
               WHERE client_id = $1 AND key_hash = $2""",
            cid,
            hashed,
            int(status),
            dumps(body),
        )


async def abandon_idempotent(db: Db, *, client_id: Any, key: str) -> None:
    """Forget a key whose request failed unexpectedly, so that a retry can run."""
    cid = parse_id(client_id)
    if cid is None:
        return
    hashed = _idempotency_key_hash(key)
    async with connection(db) as conn:
        await conn.execute(
            """DELETE FROM idempotency_keys
               WHERE client_id = $1 AND key_hash = $2 AND state = 'running'""",
            cid,
            hashed,
        )
