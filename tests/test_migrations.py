"""Migrations: every revision upgrades and downgrades, and the models match the migrated schema.

Runs on a scratch database of its own per backend (SQLite file; a PostgreSQL
database created for the test), so the shared test database stays at head.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from conftest import POSTGRES_URL, REQUIRE_POSTGRES, _admin_sql, postgres_reachable
from einlass.db.engine import Database
from einlass.db.migrate import alembic_config


async def _run(db: Database, work: str, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        if work == "check":
            command.check(config)
        else:
            getattr(command, work)(config, revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(run)


async def _walk_every_revision(db: Database) -> None:
    revisions = [
        script.revision
        for script in reversed(list(ScriptDirectory.from_config(alembic_config(db.url)).walk_revisions()))
    ]
    assert revisions[0] == "0001" and len(revisions) >= 4
    for revision in revisions:
        await _run(db, "upgrade", revision)
    await _run(db, "check", "head")  # raises when the models and the migrated schema differ
    for revision in reversed(revisions[:-1]):
        await _run(db, "downgrade", revision)
    await _run(db, "downgrade", "base")
    await _run(db, "upgrade", "head")
    await _run(db, "check", "head")


async def test_migrations_up_down_and_no_drift_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}")
    try:
        await _walk_every_revision(db)
    finally:
        await db.dispose()


async def test_migrations_up_down_and_no_drift_on_postgresql() -> None:
    if not postgres_reachable():
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL is required (EINLASS_REQUIRE_POSTGRES=1) but not reachable")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"einlass_migrations_{secrets.token_hex(4)}"
    await _admin_sql(f'CREATE DATABASE "{name}"')
    db = Database(POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", poolclass=NullPool)
    try:
        await _walk_every_revision(db)
    finally:
        await db.dispose()
        await _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
