"""Small helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.db.base import Base

T = TypeVar("T")


async def insert_ignoring_conflict(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted.

    The unique constraints decide what a duplicate is, so concurrent writers
    of the same row need no lock: exactly one insert wins.
    """
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    primary_key = model.__table__.primary_key.columns[0]  # type: ignore[attr-defined]
    statement = module.insert(model).values(**values).on_conflict_do_nothing().returning(primary_key)
    result = await session.execute(statement)
    return result.first() is not None


async def newest_first(
    session: AsyncSession, query: Select[T], id_column: Any, *, starting_after: str | None, limit: int
) -> list[T]:
    """One page of a keyset-paginated list: ids sort by creation, so newest first is ``id DESC``."""
    if starting_after:
        query = query.where(id_column < starting_after)
    return list(await session.scalars(query.order_by(id_column.desc()).limit(limit)))
