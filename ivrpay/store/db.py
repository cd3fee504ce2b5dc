"""The connection pool and the embedded PostgreSQL.

With ``IVRPAY_DATABASE_URL`` unset, ivrpay runs a private PostgreSQL 16 from the ``pgserver`` wheel
with its data under ``var/pg`` (Unix socket only, no TCP port). As root, pgserver runs the server as
a ``pgserver`` system user it creates. Several ivrpay processes may share it: each registers itself
with pgserver, and the last one to close stops the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from ivrpay.config import Settings
from ivrpay.store import counting
from ivrpay.store._core import dumps
from ivrpay.store.migrations import migrate as run_migrations

log = structlog.get_logger(__name__)


class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL; :meth:`stop` releases this process's handle."""

    def __init__(self, server: Any, pgdata: Path) -> None:
        self._server = server
        self.pgdata = pgdata
        self.url: str = server.get_uri()

    def stop(self) -> None:
        """Release this process's handle; the server stops when no other process holds one."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()


def start_embedded(pgdata: Path) -> EmbeddedPostgres:
    """Start (or join) the embedded server whose data lives in ``pgdata`` (blocking; ~1 s cold)."""
    # pgserver logs every command it runs at INFO; ours are enough.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root, containers); /tmp is fine.
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    return EmbeddedPostgres(server, pgdata)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=dumps,
            decoder=json.loads,
            schema="pg_catalog",
        )
    counting.attach(conn)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to undo. Pool connections never LISTEN (the listener
    has its own connection), SET, DECLARE a cursor or take an advisory lock, and asyncpg rolls
    back a transaction left open before calling this; the default reset (``RESET ALL``, ``UNLISTEN
    *``, …) would cost a round trip per release."""


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 20, **kwargs: Any
) -> asyncpg.Pool:
    """An asyncpg pool whose JSON/JSONB columns read and write Python objects."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        **kwargs,
    )
    assert pool is not None
    return pool


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's."""
    conn = await asyncpg.connect(url, **kwargs)
    await _init_connection(conn)
    return conn


class Database:
    """The pool of one process, and the embedded server behind it when there is one."""

    def __init__(self, pool: asyncpg.Pool, url: str, embedded: EmbeddedPostgres | None) -> None:
        self.pool = pool
        self.url = url
        self.embedded = embedded

    async def close(self) -> None:
        try:
            await self.pool.close()
        finally:
            if self.embedded is not None:
                embedded, self.embedded = self.embedded, None
                await asyncio.to_thread(embedded.stop)


async def open_database(
    settings: Settings,
    var_dir: Path = Path("var"),
    *,
    migrate: bool = True,
    min_size: int = 2,
    max_size: int = 20,
) -> Database:
    """Resolve the URL (settings or the embedded server), migrate, and open the pool."""
    embedded: EmbeddedPostgres | None = None
    url = settings.database_url
    if url is None:
        embedded = await asyncio.to_thread(start_embedded, Path(var_dir) / "pg")
        url = embedded.url
        log.info("embedded_postgres", pgdata=str(embedded.pgdata))
    try:
        if migrate:
            await run_migrations(url)
        pool = await create_pool(url, min_size=min_size, max_size=max_size)
    except BaseException:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        raise
    return Database(pool, url, embedded)
