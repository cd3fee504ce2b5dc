"""Migrations: applied once, idempotent, safe when two migrators start together; embedded server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from ivrpay.config import REPO_ROOT, Settings
from ivrpay.store import migrations
from ivrpay.store.db import open_database
from ivrpay.store.migrations import MigrationError, migrate, migration_files
from tests.support.db import embedded_data_dir


async def test_migrate_is_idempotent_and_recorded(empty_schema) -> None:
    url = await empty_schema()
    names = [p.name for p in migration_files()]
    assert names and names[0].startswith("001_")
    assert await migrate(url) == names
    assert await migrate(url) == []
    conn = await asyncpg.connect(url)
    try:
        recorded = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
        assert sorted(recorded) == names
        assert await conn.fetchval("SELECT count(*) FROM payments") == 0
    finally:
        await conn.close()


async def test_two_migrators_at_once(empty_schema) -> None:
    url = await empty_schema()
    names = [p.name for p in migration_files()]
    results = await asyncio.gather(*(migrate(url) for _ in range(4)))
    # Exactly one applied everything, the others waited on the lock and found nothing to do.
    assert sorted(results, key=len) == [[], [], [], names]


async def test_failed_migration_applies_nothing(empty_schema, tmp_path: Path) -> None:
    url = await empty_schema()
    (tmp_path / "001_good.sql").write_text("CREATE TABLE good_one (x int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE broken (;")
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await migrate(url, tmp_path)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT to_regclass('good_one')") is None
    finally:
        await conn.close()
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE fixed (x int);")
    assert await migrate(url, tmp_path) == ["001_good.sql", "002_bad.sql"]


def test_duplicate_numbers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("")
    (tmp_path / "001_b.sql").write_text("")
    with pytest.raises(RuntimeError, match="share a number"):
        migrations.migration_files(tmp_path)


async def test_no_migration_at_all_is_refused(empty_schema, tmp_path: Path) -> None:
    # An install without its sql/ files must not report "up to date" on an empty database.
    url = await empty_schema()
    with pytest.raises(MigrationError, match="no migration found"):
        await migrate(url, tmp_path)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await conn.close()


async def test_a_database_newer_than_the_code_is_refused(empty_schema, tmp_path: Path) -> None:
    url = await empty_schema()
    names = [p.name for p in migration_files()]
    await migrate(url)
    shutil.copy(migration_files()[0], tmp_path)  # an older ivrpay: it knows only the first
    with pytest.raises(MigrationError, match="does not know") as refused:
        await migrate(url, tmp_path)
    assert names[-1] in str(refused.value)


async def test_cli_migrate_says_why_it_refuses(empty_schema) -> None:
    url = await empty_schema()
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (name, sha256) VALUES ('999_future.sql', 'x')"
        )
    finally:
        await conn.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrpay",
        "migrate",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "IVRPAY_DATABASE_URL": url, "IVRPAY_LOG_FORMAT": "json"},
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()[-2000:]
    lines = err.decode().strip().splitlines()
    assert (
        lines[-1].startswith("ivrpay: the database has migrations")
        and "999_future.sql" in lines[-1]
    )
    assert "Traceback" not in err.decode()


_SECOND_PROCESS = """
import asyncio, sys
from pathlib import Path
from ivrpay.config import REPO_ROOT, Settings
from ivrpay.store.db import open_database

async def main():
    db = await open_database(Settings(database_url=None), Path(sys.argv[1]))
    print(await db.pool.fetchval("SELECT count(*) FROM schema_migrations"), flush=True)
    await db.close()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_embedded_server_shared_by_two_processes_and_stopped() -> None:
    """The embedded default: starts (as root too), migrates, is joined by a second process that
    leaves it running, and stops when the last process closes it."""
    with embedded_data_dir() as var:
        await _embedded_checks(var)


async def _embedded_checks(var: Path) -> None:
    db = await open_database(Settings(database_url=None), var, min_size=1, max_size=2)
    try:
        assert db.embedded is not None
        assert await db.pool.fetchval("SELECT count(*) FROM schema_migrations") >= 1
        assert (await db.pool.fetchval("SHOW server_version")).startswith("16")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _SECOND_PROCESS,
            str(var),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.decode().splitlines()[-1] == str(len(migration_files()))
        # The second process's exit must not have stopped the server under us.
        assert await db.pool.fetchval("SELECT 1") == 1
        pid_file = var / "pg" / "postmaster.pid"
        assert pid_file.exists()
    finally:
        await db.close()
    assert not pid_file.exists()  # the last holder stopped the server cleanly
