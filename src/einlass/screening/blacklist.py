"""Writing to the shared blacklist: a report files an entry, the entry's status follows its reports.

Every function runs in the caller's transaction. Nothing here stores a raw
identifier: callers pass an ``Identifier`` and only its keyed digest is kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.config import Settings
from einlass.crypto import encrypt_json
from einlass.db.util import insert_ignoring_conflict
from einlass.errors import InvalidInput
from einlass.ids import new_id
from einlass.screening.identifiers import Identifier, blacklist_key, digest
from einlass.screening.models import (
    CATEGORIES,
    ENTRY_PENDING,
    BlacklistEntry,
    BlacklistReport,
)
from einlass.screening.rules import ReportView, entry_status

# How long an entry lives after its last report, per category (docs/screening.md says why).
RETENTION = {
    "chargeback": timedelta(days=730),
    "fraud_attempt": timedelta(days=1095),
    "identity_misuse": timedelta(days=365),
    "payment_default": timedelta(days=730),
    "abuse": timedelta(days=365),
}


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise InvalidInput(f"category must be one of {', '.join(CATEGORIES)}", param="category")
    return category


def identifier_digest(settings: Settings, identifier: Identifier) -> str:
    return digest(blacklist_key(settings.secret_key), identifier)


async def file_report(
    session: AsyncSession,
    settings: Settings,
    identifier: Identifier,
    *,
    category: str,
    source: str,
    merchant_id: str | None,
    status: str,
    evidence: dict[str, Any] | None = None,
    contact_digest: str | None = None,
) -> tuple[BlacklistEntry, BlacklistReport]:
    """File one report about one identifier; the entry is created or kept, its status recomputed."""
    check_category(category)
    now = clock.now()
    value = identifier_digest(settings, identifier)
    await insert_ignoring_conflict(
        session,
        BlacklistEntry,
        {
            "id": new_id("ble"),
            "kind": identifier.kind.value,
            "digest": value,
            "category": category,
            "source": source,
            "status": ENTRY_PENDING,
            "expires_at": now + RETENTION[category],
            "created_at": now,
            "updated_at": now,
        },
    )
    entry = await session.scalar(
        select(BlacklistEntry)
        .where(
            BlacklistEntry.kind == identifier.kind.value,
            BlacklistEntry.digest == value,
            BlacklistEntry.category == category,
        )
        .with_for_update()
    )
    assert entry is not None
    report = BlacklistReport(
        id=new_id("blr"),
        entry_id=entry.id,
        source=source,
        merchant_id=merchant_id,
        status=status,
        evidence=encrypt_json(settings.secret_key, evidence).encode() if evidence else None,
        contact_digest=contact_digest,
        created_at=now,
        updated_at=now,
    )
    session.add(report)
    # A new report keeps the entry for the category's retention from now.
    entry.expires_at = max(entry.expires_at, now + RETENTION[category])
    await session.flush()
    await recompute(session, settings, entry)
    return entry, report


async def recompute(
    session: AsyncSession, settings: Settings, entry: BlacklistEntry, now: datetime | None = None
) -> str:
    """Set the entry's status from its reports (call after any report changes)."""
    rows = await session.scalars(select(BlacklistReport).where(BlacklistReport.entry_id == entry.id))
    views = [ReportView(row.source, row.merchant_id, row.status) for row in rows]
    status = entry_status(
        views,
        expires_at=entry.expires_at,
        now=now or clock.now(),
        independent_reports=settings.blacklist_independent_reports,
    )
    if status != entry.status:
        entry.status, entry.updated_at = status, clock.now()
    return status
