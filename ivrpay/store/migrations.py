"""Apply ``sql/NNN_*.sql`` in order, once each.

All pending files run in one transaction that first takes a transaction-level advisory lock, so
two processes starting together serialize: the second waits, then finds everything applied. Each
applied file is recorded in ``schema_migrations`` with its SHA-256.

The files ship inside the package (:data:`ivrpay.config.SQL_DIR`). Finding none at all, or a
database that records a migration this code does not have (a newer ivrpay migrated it), is a
:class:`MigrationError`: carrying on would run against a schema the code was not written for.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import asyncpg
import structlog

from ivrpay.config import SQL_DIR

log = structlog.get_logger(__name__)

# Any constant will do as long as every ivrpay process uses the same one ("ivrpay" in ASCII).
MIGRATION_LOCK_ID = 0x6976727061790001
_NAME = re.compile(r"^(\d{3})_[A-Za-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are; the message says why, in one line."""


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The migration files in the order they apply (by their three-digit number)."""
    files = [p for p in sql_dir.iterdir() if _NAME.match(p.name)] if sql_dir.is_dir() else []
    numbers = [p.name[:3] for p in files]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two migrations share a number in {sql_dir}")
    return sorted(files, key=lambda p: p.name)


async def migrate(
    conn_or_url: asyncpg.Connection | asyncpg.Pool | str, sql_dir: Path = SQL_DIR
) -> list[str]:
    """Apply every migration not yet recorded; returns the file names applied (may be empty)."""
    if isinstance(conn_or_url, str):
        conn = await asyncpg.connect(conn_or_url)
        try:
            return await _migrate(conn, sql_dir)
        finally:
            await conn.close()
    if isinstance(conn_or_url, asyncpg.Pool):
        async with conn_or_url.acquire() as conn:
            return await _migrate(conn, sql_dir)
    return await _migrate(conn_or_url, sql_dir)


async def _migrate(conn: asyncpg.Connection, sql_dir: Path) -> list[str]:
    files = migration_files(sql_dir)
    if not files:
        raise MigrationError(f"no migration found in {sql_dir}: ivrpay is installed without them")
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        # Created under the lock: two concurrent CREATE TABLE IF NOT EXISTS can still collide.
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   sha256 text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
        )
        done = {r["name"]: r["sha256"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
        unknown = sorted(set(done) - {p.name for p in files})
        if unknown:
            raise MigrationError(
                f"the database has migrations this ivrpay does not know ({', '.join(unknown)}):"
                " it was migrated by a newer version; install that one"
            )
        for path in files:
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if path.name in done:
                if done[path.name] != digest:
                    log.warning("migration_changed_after_apply", migration=path.name)
                continue
            await conn.execute(text)
            await conn.execute(
                "INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", path.name, digest
            )
            applied.append(path.name)
    if applied:
        log.info("migrations_applied", migrations=applied)
    return applied
