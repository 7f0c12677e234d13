"""Writing and reading the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.models import AuditEntry
from einlass.db.util import newest_first
from einlass.ids import new_id


@dataclass(frozen=True)
class Actor:
    """Who caused a change: admin, api_key, gateway_event, job, member, cli, system."""

    kind: str
    id: str | None = None


SYSTEM = Actor("system")
CLI = Actor("cli")


def record(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    actor: Actor,
    action: str,
    entity_kind: str,
    entity_id: str | None,
    member_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        id=new_id("aud"),
        merchant_id=merchant_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        action=action,
        entity_kind=entity_kind,
        entity_id=entity_id,
        member_id=member_id,
        before=before,
        after=after,
        at=clock.now(),
    )
    session.add(entry)
    return entry


async def list_entries(
    session: AsyncSession,
    merchant_id: str,
    *,
    member_id: str | None = None,
    starting_after: str | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.merchant_id == merchant_id)
    if member_id is not None:
        query = query.where(AuditEntry.member_id == member_id)
    return await newest_first(session, query, AuditEntry.id, starting_after=starting_after, limit=limit)


PERSONAL_KEYS = frozenset({"email", "name", "username", "customer_email", "customer_name"})


async def redact_member_entries(session: AsyncSession, merchant_id: str, member_id: str) -> None:
    """Erasure: the member's entries keep who did what and when, not the personal data."""
    entries = await session.scalars(
        select(AuditEntry).where(AuditEntry.merchant_id == merchant_id, AuditEntry.member_id == member_id)
    )
    for entry in entries:
        entry.before = _redacted(entry.before)
        entry.after = _redacted(entry.after)


def _redacted(document: dict[str, Any] | None) -> dict[str, Any] | None:
    if document is None:
        return None
    return {key: "[erased]" if key in PERSONAL_KEYS and value else value for key, value in document.items()}
