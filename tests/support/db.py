"""Database fixtures: one migrated database per test session, a clean pool per test.

``IVRPAY_TEST_DATABASE_URL`` (CI: a fresh database on the local server) is used when set;
otherwise an embedded pgserver PostgreSQL runs under a temporary directory for the session.
Never a mock. Each test that takes ``pool`` starts with every table empty (every row but the
migration records deleted), which costs a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from ivrpay.store.db import connect, create_pool, start_embedded
from ivrpay.store.migrations import migrate

TEST_URL_ENV = "IVRPAY_TEST_DATABASE_URL"


@contextlib.contextmanager
def embedded_data_dir() -> Iterator[Path]:
    """A private directory for an embedded server's data, removed afterwards.

    Not under pytest's tmp_path: as root, pgserver runs PostgreSQL as the ``pgserver`` user,
    which must traverse every parent, and pytest resets ``/tmp/pytest-of-root`` to 0700 whenever
    another pytest run starts.
    """
    path = Path(tempfile.mkdtemp(prefix="ivrpay-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def with_server_setting(url: str, name: str, value: str) -> str:
    """The URL with a server setting asyncpg passes on (unknown query parameters are settings)."""
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database for the whole session."""
    url = os.environ.get(TEST_URL_ENV) or None
    if url is not None:
        asyncio.run(migrate(url))
        yield url
        return
    with embedded_data_dir() as data_dir:
        embedded = start_embedded(data_dir / "pg")
        try:
            asyncio.run(migrate(embedded.url))
            yield embedded.url
        finally:
            embedded.stop()


async def _empty_all(conn: asyncpg.Connection) -> None:
    """Delete every row but the migration records, children before parents.

    DELETE on these small tables takes milliseconds where TRUNCATE takes a quarter second.
    """
    tables = [
        r["t"]
        for r in await conn.fetch(
            """SELECT tablename AS t FROM pg_tables
               WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"""
        )
    ]
    edges = await conn.fetch(
        """SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent
           FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
           WHERE c.contype = 'f' AND n.nspname = current_schema()"""
    )
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for e in edges:
        if e["child"] in parents and e["child"] != e["parent"]:
            parents[e["child"]].add(e["parent"])
    # Delete a table once no remaining table references it.
    order: list[str] = []
    remaining = set(tables)
    while remaining:
        leaves = sorted(t for t in remaining if not any(t in parents[o] for o in remaining))
        if not leaves:  # a reference cycle: TRUNCATE copes with it
            await conn.execute(f"TRUNCATE {', '.join(sorted(remaining))} CASCADE")
            break
        order += leaves
        remaining -= set(leaves)
    async with conn.transaction():
        for table in order:
            await conn.execute(f'DELETE FROM "{table}"')


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session database, every table empty."""
    p = await create_pool(database_url, min_size=1, max_size=20)
    async with p.acquire() as conn:
        await _empty_all(conn)
    try:
        yield p
    finally:
        try:
            await asyncio.wait_for(p.close(), 10)
        except TimeoutError:
            p.terminate()


@pytest.fixture
async def db_conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection of ``pool`` (clean tables), for tests that want a plain connection."""
    async with pool.acquire() as conn:
        yield conn


@pytest.fixture
async def empty_schema(database_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory of URLs whose search_path is a new empty schema (dropped afterwards)."""
    made: list[str] = []

    async def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await connect(database_url)
        try:
            await conn.execute(f"CREATE SCHEMA {name}")
        finally:
            await conn.close()
        made.append(name)
        return with_server_setting(database_url, "search_path", name)

    yield make
    conn = await connect(database_url)
    try:
        for name in made:
            await conn.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()
