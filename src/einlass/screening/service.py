"""Blacklist reports and their review: merchants report, the operator decides, retention forgets.

Every function runs in the caller's transaction (``expire_entries`` opens its
own). A merchant only ever reaches its own reports: every merchant query filters
by ``merchant_id`` (invariant 6), and nothing here tells a merchant who else
reported an identifier or how many did. The operator sees everything.
Raw identifiers never reach the database or the audit log (invariant 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import SYSTEM, Actor, record
from einlass.billing.models import Payment
from einlass.config import Settings
from einlass.crypto import decrypt_json, encrypt_json
from einlass.db.engine import Database
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.screening.blacklist import check_category, file_report, identifier_digest, recompute
from einlass.screening.identifiers import Identifier, IdentifierKind, normalize
from einlass.screening.models import (
    ENTRY_EXPIRED,
    REPORT_CONFIRMED,
    REPORT_PENDING,
    REPORT_REJECTED,
    REPORT_WITHDRAWN,
    SOURCE_MERCHANT,
    Appeal,
    BlacklistEntry,
    BlacklistReport,
)
from einlass.tenants.models import Merchant

log = structlog.get_logger(__name__)

# An expired entry is kept this long (still shown to the operator, no longer screening) before it goes.
EXPIRED_KEPT_FOR = timedelta(days=30)
# The merchant setting that turns on automatic chargeback reports.
REPORT_CHARGEBACKS_SETTING = "report_chargebacks"
MAX_EVIDENCE_TEXT = 4000


def seal(settings: Settings, document: dict[str, Any] | None) -> bytes | None:
    """Evidence and statements at rest: encrypted, as bytes for the binary column."""
    return encrypt_json(settings.secret_key, document).encode() if document else None


def unseal(settings: Settings, stored: bytes | str | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return decrypt_json(settings.secret_key, stored.decode() if isinstance(stored, bytes) else stored)


def parse_identifiers(raw: dict[str, str], default_region: str = "DE") -> list[Identifier]:
    """All of them valid, or InvalidInput naming the first bad one: a report is filed whole or not at all."""
    if not raw:
        raise InvalidInput("name at least one identifier", param="identifiers")
    parsed = []
    for kind, value in raw.items():
        if kind not in IdentifierKind.__members__.values():
            known = ", ".join(member.value for member in IdentifierKind)
            raise InvalidInput(f"identifiers.{kind}: kind must be one of {known}", param="identifiers")
        try:
            parsed.append(normalize(kind, value, default_region=default_region))
        except InvalidInput as error:
            raise InvalidInput(error.message, param=f"identifiers.{kind}") from None
    return parsed


@dataclass(frozen=True)
class FiledReport:
    report: BlacklistReport
    entry: BlacklistEntry
    already_reported: bool


async def _own_open_report(
    session: AsyncSession, settings: Settings, merchant_id: str, identifier: Identifier, category: str
) -> tuple[BlacklistEntry, BlacklistReport] | None:
    """The merchant's live report on this identifier and category, so that reporting twice files once."""
    row = (
        await session.execute(
            select(BlacklistEntry, BlacklistReport)
            .join(BlacklistReport, BlacklistReport.entry_id == BlacklistEntry.id)
            .where(
                BlacklistEntry.kind == identifier.kind.value,
                BlacklistEntry.digest == identifier_digest(settings, identifier),
                BlacklistEntry.category == category,
                BlacklistReport.merchant_id == merchant_id,
                BlacklistReport.status.in_((REPORT_PENDING, REPORT_CONFIRMED)),
            )
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def report_identifiers(
    session: AsyncSession,
    settings: Settings,
    merchant: Merchant,
    identifiers: Sequence[Identifier],
    *,
    category: str,
    evidence: dict[str, Any] | None,
    actor: Actor,
) -> list[FiledReport]:
    """One pending merchant report per identifier, all with the same (encrypted) evidence."""
    check_category(category)
    payment_id = (evidence or {}).get("payment")
    if payment_id is not None:
        found = await session.scalar(
            select(Payment.id).where(Payment.merchant_id == merchant.id, Payment.id == payment_id)
        )
        if found is None:
            raise InvalidInput(f"no payment {payment_id!r}", param="evidence.payment")
    filed = []
    for identifier in identifiers:
        existing = await _own_open_report(session, settings, merchant.id, identifier, category)
        if existing is not None:
            filed.append(FiledReport(existing[1], existing[0], already_reported=True))
            continue
        entry, report = await file_report(
            session,
            settings,
            identifier,
            category=category,
            source=SOURCE_MERCHANT,
            merchant_id=merchant.id,
            status=REPORT_PENDING,
        )
        report.evidence = seal(settings, evidence)
        record(
            session,
            merchant_id=merchant.id,
            actor=actor,
            action="blacklist_report.filed",
            entity_kind="blacklist_report",
            entity_id=report.id,
            after={"kind": entry.kind, "category": category, "entry_status": entry.status},
        )
        filed.append(FiledReport(report, entry, already_reported=False))
    await session.flush()
    return filed


async def report_chargeback(
    session: AsyncSession, settings: Settings, merchant: Merchant, payment: Payment
) -> BlacklistReport | None:
    """File a pending chargeback report on the payment's customer email, if the merchant asked for it."""
    if merchant.setting(REPORT_CHARGEBACKS_SETTING) is not True or not payment.customer_email:
        return None
    try:
        identifier = normalize(IdentifierKind.EMAIL, payment.customer_email)
    except InvalidInput:
        log.info("chargeback not reported: the customer email is not valid", payment_id=payment.id)
        return None
    [filed] = await report_identifiers(
        session,
        settings,
        merchant,
        [identifier],
        category="chargeback",
        evidence={"text": "chargeback reported by the gateway", "payment": payment.id},
        actor=SYSTEM,
    )
    return filed.report


async def merchant_reports(
    session: AsyncSession, merchant_id: str, *, starting_after: str | None, limit: int
) -> list[tuple[BlacklistReport, BlacklistEntry]]:
    query = (
        select(BlacklistReport, BlacklistEntry)
        .join(BlacklistEntry, BlacklistEntry.id == BlacklistReport.entry_id)
        .where(BlacklistReport.merchant_id == merchant_id)
    )
    if starting_after:
        query = query.where(BlacklistReport.id < starting_after)
    rows = await session.execute(query.order_by(BlacklistReport.id.desc()).limit(limit))
    return [(row[0], row[1]) for row in rows]


async def merchant_report(
    session: AsyncSession, merchant_id: str, report_id: str, *, for_update: bool = False
) -> tuple[BlacklistReport, BlacklistEntry]:
    """The merchant's own report; any other id, whoever filed it, is simply not found."""
    query = (
        select(BlacklistReport, BlacklistEntry)
        .join(BlacklistEntry, BlacklistEntry.id == BlacklistReport.entry_id)
        .where(BlacklistReport.merchant_id == merchant_id, BlacklistReport.id == report_id)
    )
    row = (await session.execute(query.with_for_update() if for_update else query)).first()
    if row is None:
        raise NotFound(f"no blacklist report {report_id!r}")
    return row[0], row[1]


async def withdraw_report(
    session: AsyncSession, settings: Settings, merchant_id: str, report_id: str, actor: Actor
) -> tuple[BlacklistReport, BlacklistEntry, bool]:
    """Withdraw, erase the evidence, recompute the entry; True when the entry went with it."""
    report, entry = await merchant_report(session, merchant_id, report_id, for_update=True)
    if report.status == REPORT_REJECTED:
        raise Conflict("the operator rejected this report; there is nothing to withdraw")
    before = {"status": report.status}
    now = clock.now()
    report.status, report.evidence, report.updated_at = REPORT_WITHDRAWN, None, now
    await session.flush()
    remaining = await session.scalar(
        select(BlacklistReport.id).where(
            BlacklistReport.entry_id == entry.id, BlacklistReport.status != REPORT_WITHDRAWN
        )
    )
    record(
        session,
        merchant_id=merchant_id,
        actor=actor,
        action="blacklist_report.withdrawn",
        entity_kind="blacklist_report",
        entity_id=report.id,
        before=before,
        after={"status": REPORT_WITHDRAWN, "entry_deleted": remaining is None},
    )
    if remaining is None:
        await delete_entries(session, [entry.id])
        return report, entry, True
    await recompute(session, settings, entry)
    return report, entry, False


async def delete_entries(session: AsyncSession, entry_ids: Sequence[str]) -> tuple[int, int]:
    """Entries with their reports and appeals, explicitly: SQLite enforces no cascade by default."""
    if not entry_ids:
        return 0, 0
    reports = await session.execute(delete(BlacklistReport).where(BlacklistReport.entry_id.in_(entry_ids)))
    appeal_rows = await session.execute(delete(Appeal).where(Appeal.entry_id.in_(entry_ids)))
    await session.execute(delete(BlacklistEntry).where(BlacklistEntry.id.in_(entry_ids)))
    return int(getattr(reports, "rowcount", 0) or 0), int(getattr(appeal_rows, "rowcount", 0) or 0)


async def expire_entries(db: Database) -> int:
    """Retention: past ``expires_at`` an entry stops screening; 30 days later it is deleted with its reports."""
    now = clock.now()
    async with db.transaction() as session:
        due = await session.scalars(
            select(BlacklistEntry)
            .where(BlacklistEntry.status != ENTRY_EXPIRED, BlacklistEntry.expires_at <= now)
            .with_for_update()
        )
        expired = 0
        for entry in due:
            entry.status, entry.updated_at = ENTRY_EXPIRED, now
            expired += 1
        gone = list(
            await session.scalars(
                select(BlacklistEntry.id).where(
                    BlacklistEntry.status == ENTRY_EXPIRED,
                    BlacklistEntry.expires_at <= now - EXPIRED_KEPT_FOR,
                )
            )
        )
        await delete_entries(session, gone)
        if expired or gone:
            record(
                session,
                merchant_id=None,
                actor=SYSTEM,
                action="blacklist.retention",
                entity_kind="blacklist_entry",
                entity_id=None,
                after={"expired": expired, "deleted": len(gone)},
            )
    return expired + len(gone)
