"""A merchant's whitelist: loyal customers screening never turns away at that merchant.

An entry names a member, or an identifier. An identifier is kept only as its
keyed digest (the same one the blacklist uses, so the two meet), never raw.
The whitelist wins over the blacklist for its merchant alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.config import Settings
from einlass.db.util import insert_ignoring_conflict, newest_first
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.ids import new_id
from einlass.members.models import Member
from einlass.screening.decisions import default_region, identifier_digests, normalize_all
from einlass.screening.identifiers import normalize
from einlass.screening.models import WhitelistEntry
from einlass.tenants.models import Merchant

MAX_NOTE = 500


def entry_document(entry: WhitelistEntry) -> dict[str, Any]:
    """What the merchant sees: the member or the identifier's kind, and the note; no digest."""
    return {
        "id": entry.id,
        "object": "whitelist_entry",
        "member": entry.member_id,
        "kind": entry.kind or "member",
        "note": entry.note,
        "created_at": entry.created_at.isoformat(),
    }


async def add_entry(
    session: AsyncSession,
    settings: Settings,
    merchant: Merchant,
    *,
    member_id: str | None = None,
    kind: str | None = None,
    value: str | None = None,
    note: str | None = None,
    actor: Actor,
) -> WhitelistEntry:
    """Whitelist a member (by id) or an identifier (kind and raw value); Conflict when listed already."""
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInput(f"note is longer than {MAX_NOTE} characters", param="note")
    values: dict[str, Any] = {"member_id": None, "kind": None, "digest": None}
    if member_id is not None:
        if kind is not None or value is not None:
            raise InvalidInput("give either member, or kind and value", param="member")
        member = await session.scalar(
            select(Member.id).where(Member.id == member_id, Member.merchant_id == merchant.id)
        )
        if member is None:
            raise NotFound(f"no member {member_id!r}", param="member")
        values["member_id"] = member_id
    elif kind is not None and value is not None:
        [identifier] = normalize_all({kind: value}, default_region(merchant))
        [(normalized_kind, value_digest)] = identifier_digests(settings, [identifier])
        values.update(kind=normalized_kind, digest=value_digest)
    else:
        raise InvalidInput("give a member, or an identifier's kind and value", param="kind")
    entry_id = new_id("wle")
    now = clock.now()
    inserted = await insert_ignoring_conflict(
        session,
        WhitelistEntry,
        {**values, "id": entry_id, "merchant_id": merchant.id, "note": note, "created_at": now},
    )
    if not inserted:
        raise Conflict("this customer is on the whitelist already", code="already_whitelisted")
    entry = await session.get_one(WhitelistEntry, entry_id)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="whitelist.added",
        entity_kind="whitelist_entry",
        entity_id=entry_id,
        member_id=entry.member_id,
        after={"member": entry.member_id, "kind": entry.kind, "note": note},
    )
    return entry


async def get_entry(session: AsyncSession, merchant_id: str, entry_id: str) -> WhitelistEntry:
    entry = await session.scalar(
        select(WhitelistEntry).where(WhitelistEntry.id == entry_id, WhitelistEntry.merchant_id == merchant_id)
    )
    if entry is None:
        raise NotFound(f"no whitelist entry {entry_id!r}")
    return entry


async def list_entries(
    session: AsyncSession,
    merchant_id: str,
    *,
    member_id: str | None = None,
    starting_after: str | None = None,
    limit: int = 20,
) -> list[WhitelistEntry]:
    query = select(WhitelistEntry).where(WhitelistEntry.merchant_id == merchant_id)
    if member_id is not None:
        query = query.where(WhitelistEntry.member_id == member_id)
    return await newest_first(session, query, WhitelistEntry.id, starting_after=starting_after, limit=limit)


async def remove_entry(
    session: AsyncSession, merchant_id: str, entry_id: str, actor: Actor
) -> WhitelistEntry:
    entry = await get_entry(session, merchant_id, entry_id)
    await session.delete(entry)
    record(
        session,
        merchant_id=merchant_id,
        actor=actor,
        action="whitelist.removed",
        entity_kind="whitelist_entry",
        entity_id=entry.id,
        member_id=entry.member_id,
        before={"member": entry.member_id, "kind": entry.kind, "note": entry.note},
    )
    return entry


async def member_whitelisted(
    session: AsyncSession, settings: Settings, merchant: Merchant, member: Member
) -> bool:
    """Whether screening lets this member in at its merchant: listed by id, or by its email."""
    matches = [WhitelistEntry.member_id == member.id]
    if member.email:
        try:
            email = normalize("email", member.email, default_region=default_region(merchant))
        except InvalidInput:
            email = None
        if email is not None:
            [(kind, value)] = identifier_digests(settings, [email])
            matches.append(and_(WhitelistEntry.kind == kind, WhitelistEntry.digest == value))
    found = await session.scalar(
        select(WhitelistEntry.id).where(WhitelistEntry.merchant_id == merchant.id, or_(*matches)).limit(1)
    )
    return found is not None
