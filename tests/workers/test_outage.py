"""A database outage is quiet (issue 13.5): while PostgreSQL refuses connections and the pool's
connections are killed, the workers back off and log one line when it begins and one when it
ends — no traceback, however many loops and tries."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg

from ivrpay.config import Settings
from ivrpay.metrics import DATABASE_DOWN
from ivrpay.workers import Workers
from tests.payments.test_process import kill_process_connections
from tests.support.gateway import LogCapture


async def database_away(database_url: str, pool: asyncpg.Pool) -> asyncpg.Connection:
    """Refuse new connections to the test database and kill the process's open ones (the
    maintenance database does it: a database cannot refuse connections to itself)."""
    db = await pool.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(urlsplit(database_url)._replace(path="/postgres").geturl())
    await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
    await kill_process_connections(pool)
    return admin


async def database_back(pool: asyncpg.Pool, admin: asyncpg.Connection) -> None:
    db = await pool.fetchval("SELECT current_database()")
    await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
    await admin.close()


def logged(logs: LogCapture, event: str) -> list[str]:
    """structlog's own lines (the capture holds each also as the standard library saw it)."""
    return [e for e in logs.events(event) if e.startswith("{")]


async def test_an_outage_is_one_line_and_its_end_another(
    database_url: str, pool: asyncpg.Pool, proc_pool: asyncpg.Pool, card_safe_logs: LogCapture
) -> None:
    settings = Settings(worker_interval_s=0.01, db_retry_max_s=0.1)
    workers = Workers(settings, proc_pool, owner="outage-test")
    outage = workers.outage
    await workers.start()
    admin = None
    try:
        began = outage.changed
        admin = await database_away(database_url, pool)
        async with asyncio.timeout(60):
            await began.wait()
            while outage.tries < 30:  # many batches of several loops meet the outage
                await outage.tried.wait()
        assert outage.down and len(outage.failing) >= 2, outage.failing
        assert DATABASE_DOWN._value.get() == 1
        # Backing off: each failing loop now waits its longest pause, not its 10 ms interval.
        waits = {
            w.name: w.pause_s()
            for w in workers.loops
            if w.name in outage.failing and w.interval_s == settings.worker_interval_s
        }
        assert set(waits.values()) <= {0.02, 0.04, 0.08, 0.1} and 0.1 in waits.values(), waits
        ended = outage.changed
        await database_back(pool, admin)
        admin = None
        async with asyncio.timeout(60):
            await ended.wait()
        assert not outage.down and outage.outages == 1
        assert DATABASE_DOWN._value.get() == 0
    finally:
        if admin is not None:
            await database_back(pool, admin)
        await workers.stop()
    tries = outage.tries
    print(f"{tries} batches met the outage; logged: 1 line when it began, 1 when it ended")
    assert len(logged(card_safe_logs, "database_unavailable")) == 1
    assert len(logged(card_safe_logs, "database_recovered")) == 1
    assert logged(card_safe_logs, "worker_failed") == []
    assert "Traceback" not in card_safe_logs.rendered
