"""Alembic environment: async engines, SQLite batch mode, all feature models."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from einlass.db.engine import Database
from einlass.db.metadata import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    db = Database(config.get_main_option("sqlalchemy.url") or "")
    async with db.engine.connect() as connection:
        await connection.run_sync(run_with)
        await connection.commit()
    await db.dispose()


given = config.attributes.get("connection")
if given is not None:
    run_with(given)
else:
    asyncio.run(run_async())
