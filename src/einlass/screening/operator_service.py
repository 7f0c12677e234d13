"""The operator's side of the blacklist: the review queue, direct entries, appeals, data-subject requests.

The operator is one instance-wide role and sees every report, reporter and
piece of evidence; every action is audited with ``merchant_id`` None. Every
function runs in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.billing.models import Payment
from einlass.config import Settings
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.members.models import Member
from einlass.screening.blacklist import file_report, identifier_digest, recompute
from einlass.screening.identifiers import Identifier, IdentifierKind, normalize
from einlass.screening.models import (
    OUTCOME_ACCEPT,
    REPORT_CONFIRMED,
    REPORT_REJECTED,
    REPORT_WITHDRAWN,
    SOURCE_OPERATOR,
    Appeal,
    BlacklistEntry,
    BlacklistReport,
    ScreeningDecision,
)
from einlass.screening.service import delete_entries, seal, unseal
from einlass.tenants.models import Merchant

OPERATOR = Actor("operator")
APPEAL_PENDING = "pending"
APPEAL_UPHELD = "upheld"
APPEAL_DISMISSED = "dismissed"


async def review_queue(
    session: AsyncSession, *, status: str | None, starting_after: str | None, limit: int
) -> list[tuple[BlacklistReport, BlacklistEntry, Merchant | None]]:
    query = (
        select(BlacklistReport, BlacklistEntry, Merchant)
        .join(BlacklistEntry, BlacklistEntry.id == BlacklistReport.entry_id)
        .outerjoin(Merchant, Merchant.id == BlacklistReport.merchant_id)
    )
    if status:
        query = query.where(BlacklistReport.status == status)
    if starting_after:
        query = query.where(BlacklistReport.id < starting_after)
    rows = await session.execute(query.order_by(BlacklistReport.id.desc()).limit(limit))
    return [(row[0], row[1], row[2]) for row in rows]


async def _report_for_review(session: AsyncSession, report_id: str) -> tuple[BlacklistReport, BlacklistEntry]:
    row = (
        await session.execute(
            select(BlacklistReport, BlacklistEntry)
            .join(BlacklistEntry, BlacklistEntry.id == BlacklistReport.entry_id)
            .where(BlacklistReport.id == report_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"no blacklist report {report_id!r}")
    return row[0], row[1]


async def review_report(
    session: AsyncSession,
    settings: Settings,
    report_id: str,
    *,
    status: str,
    note: str | None,
    actor: Actor,
) -> tuple[BlacklistReport, BlacklistEntry]:
    """The operator confirms or rejects one report; the entry follows."""
    report, entry = await _report_for_review(session, report_id)
    if report.status == REPORT_WITHDRAWN:
        raise Conflict("the reporter withdrew this report")
    before = {"status": report.status, "entry_status": entry.status}
    now = clock.now()
    report.status, report.review_note, report.reviewed_at, report.updated_at = status, note, now, now
    await session.flush()
    await recompute(session, settings, entry)
    record(
        session,
        merchant_id=None,
        actor=actor,
        action=f"blacklist_report.{'confirmed' if status == REPORT_CONFIRMED else 'rejected'}",
        entity_kind="blacklist_report",
        entity_id=report.id,
        before=before,
        after={"status": report.status, "entry_status": entry.status, "note": note},
    )
    return report, entry


async def operator_entry(
    session: AsyncSession,
    settings: Settings,
    identifier: Identifier,
    *,
    category: str,
    evidence: dict[str, Any] | None,
    actor: Actor,
) -> tuple[BlacklistEntry, BlacklistReport]:
    entry, report = await file_report(
        session,
        settings,
        identifier,
        category=category,
        source=SOURCE_OPERATOR,
        merchant_id=None,
        status=REPORT_CONFIRMED,
    )
    now = clock.now()
    report.evidence, report.reviewed_at = seal(settings, evidence), now
    record(
        session,
        merchant_id=None,
        actor=actor,
        action="blacklist_entry.filed",
        entity_kind="blacklist_entry",
        entity_id=entry.id,
        after={"kind": entry.kind, "category": category, "status": entry.status, "report": report.id},
    )
    return entry, report


async def appeals(
    session: AsyncSession, *, status: str | None, starting_after: str | None, limit: int
) -> list[tuple[Appeal, BlacklistEntry]]:
    query = select(Appeal, BlacklistEntry).join(BlacklistEntry, BlacklistEntry.id == Appeal.entry_id)
    if status:
        query = query.where(Appeal.status == status)
    if starting_after:
        query = query.where(Appeal.id < starting_after)
    rows = await session.execute(query.order_by(Appeal.id.desc()).limit(limit))
    return [(row[0], row[1]) for row in rows]


async def decide_appeal(
    session: AsyncSession, settings: Settings, appeal_id: str, *, uphold: bool, note: str | None, actor: Actor
) -> tuple[Appeal, BlacklistEntry]:
    """Upheld: every report on the entry is rejected, so the entry is; dismissed: nothing changes."""
    row = (
        await session.execute(
            select(Appeal, BlacklistEntry)
            .join(BlacklistEntry, BlacklistEntry.id == Appeal.entry_id)
            .where(Appeal.id == appeal_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"no appeal {appeal_id!r}")
    appeal, entry = row[0], row[1]
    if appeal.status != APPEAL_PENDING:
        raise Conflict(f"the appeal was already {appeal.status}")
    now = clock.now()
    appeal.status, appeal.decided_at = (APPEAL_UPHELD if uphold else APPEAL_DISMISSED), now
    if uphold:
        reports = await session.scalars(select(BlacklistReport).where(BlacklistReport.entry_id == entry.id))
        for report in reports:
            if report.status != REPORT_WITHDRAWN:
                report.status, report.reviewed_at, report.updated_at = REPORT_REJECTED, now, now
                report.review_note = note or "appeal upheld"
        await session.flush()
        await recompute(session, settings, entry)
    record(
        session,
        merchant_id=None,
        actor=actor,
        action=f"blacklist_appeal.{appeal.status}",
        entity_kind="blacklist_appeal",
        entity_id=appeal.id,
        after={"status": appeal.status, "entry": entry.id, "entry_status": entry.status, "note": note},
    )
    return appeal, entry


async def entries_for(
    session: AsyncSession, settings: Settings, identifier: Identifier
) -> list[BlacklistEntry]:
    value = identifier_digest(settings, identifier)
    rows = await session.scalars(
        select(BlacklistEntry)
        .where(BlacklistEntry.kind == identifier.kind.value, BlacklistEntry.digest == value)
        .order_by(BlacklistEntry.id)
    )
    return list(rows)


async def erase_data_subject(
    session: AsyncSession, settings: Settings, identifier: Identifier, actor: Actor
) -> dict[str, int]:
    entries = await entries_for(session, settings, identifier)
    reports, appeal_count = await delete_entries(session, [entry.id for entry in entries])
    erased = {"entries": len(entries), "reports": reports, "appeals": appeal_count}
    # The audit keeps what was done, never the identifier or its digest (that would re-link it).
    record(
        session,
        merchant_id=None,
        actor=actor,
        action="blacklist.data_subject_erased",
        entity_kind="blacklist_entry",
        entity_id=None,
        after={"kind": identifier.kind.value, **erased},
    )
    return erased


DECISIONS_EXPLAINED = (
    "Screening decisions keep only the kind, category and status of the entries they cite, never a "
    "digest, so a decision cannot be tied to an identifier by what it stores. For an email, decisions "
    "are linked through the payment or member they belong to whose email normalises to the same "
    "address; those are listed. Other decisions that cite an entry of the same kind and category may "
    "or may not concern this data subject: they are only counted."
)


async def export_data_subject(
    session: AsyncSession, settings: Settings, identifier: Identifier
) -> dict[str, Any]:
    """Everything stored about one identifier, for the operator to answer an access request."""
    entries = await entries_for(session, settings, identifier)
    entry_ids = [entry.id for entry in entries]
    reports = await session.execute(
        select(BlacklistReport, Merchant)
        .outerjoin(Merchant, Merchant.id == BlacklistReport.merchant_id)
        .where(BlacklistReport.entry_id.in_(entry_ids))
        .order_by(BlacklistReport.id)
    )
    appeal_rows = await session.scalars(
        select(Appeal).where(Appeal.entry_id.in_(entry_ids)).order_by(Appeal.id)
    )
    linked, unlinkable = await _decisions_citing(session, identifier, {entry.category for entry in entries})
    return {
        "object": "data_subject_export",
        "kind": identifier.kind.value,
        "normalized_value": identifier.value,
        "entries": [
            {
                "id": entry.id,
                "kind": entry.kind,
                "category": entry.category,
                "status": entry.status,
                "source": entry.source,
                "created_at": entry.created_at.isoformat(),
                "expires_at": entry.expires_at.isoformat(),
            }
            for entry in entries
        ],
        "reports": [
            {
                "id": report.id,
                "entry": report.entry_id,
                "source": report.source,
                "reporter": None if merchant is None else {"merchant": merchant.id, "slug": merchant.slug},
                "status": report.status,
                "evidence": unseal(settings, report.evidence),
                "review_note": report.review_note,
                "created_at": report.created_at.isoformat(),
            }
            for report, merchant in reports
        ],
        "appeals": [
            {
                "id": appeal.id,
                "entry": appeal.entry_id,
                "status": appeal.status,
                "statement": unseal(settings, appeal.statement),
                "created_at": appeal.created_at.isoformat(),
                "decided_at": None if appeal.decided_at is None else appeal.decided_at.isoformat(),
            }
            for appeal in appeal_rows
        ],
        "decisions": {
            "explanation": DECISIONS_EXPLAINED,
            "linked": linked,
            "not_linkable_count": unlinkable,
        },
    }


async def _decisions_citing(
    session: AsyncSession, identifier: Identifier, categories: set[str]
) -> tuple[list[dict[str, Any]], int]:
    """Decisions that cite an entry of this kind and category: linked ones listed, the rest counted."""
    if not categories:
        return [], 0
    rows = await session.execute(
        select(ScreeningDecision, Payment.customer_email, Member.email, Merchant.slug)
        .join(Merchant, Merchant.id == ScreeningDecision.merchant_id)
        .outerjoin(
            Payment,
            (Payment.id == ScreeningDecision.payment_id)
            & (Payment.merchant_id == ScreeningDecision.merchant_id),
        )
        .outerjoin(
            Member,
            (Member.id == ScreeningDecision.member_id)
            & (Member.merchant_id == ScreeningDecision.merchant_id),
        )
        .where(ScreeningDecision.outcome != OUTCOME_ACCEPT)
        .order_by(ScreeningDecision.id)
    )
    linked: list[dict[str, Any]] = []
    unlinkable = 0
    for decision, payment_email, member_email, slug in rows:
        cites = any(
            isinstance(reason, dict)
            and reason.get("source") == "blacklist"
            and reason.get("kind") == identifier.kind.value
            and reason.get("category") in categories
            for reason in decision.reasons or []
        )
        if not cites:
            continue
        if identifier.kind == IdentifierKind.EMAIL and identifier.value in {
            _normalized_email(payment_email),
            _normalized_email(member_email),
        }:
            linked.append(
                {
                    "id": decision.id,
                    "merchant": slug,
                    "member": decision.member_id,
                    "payment": decision.payment_id,
                    "context": decision.context,
                    "outcome": decision.outcome,
                    "reasons": decision.reasons,
                    "created_at": decision.created_at.isoformat(),
                }
            )
        else:
            unlinkable += 1
    return linked, unlinkable


def _normalized_email(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return normalize(IdentifierKind.EMAIL, value).value
    except InvalidInput:
        return None


def record_export(session: AsyncSession, identifier: Identifier, actor: Actor) -> None:
    # The audit names the kind only: the value or its digest would re-link the person.
    record(
        session,
        merchant_id=None,
        actor=actor,
        action="blacklist.data_subject_exported",
        entity_kind="blacklist_entry",
        entity_id=None,
        after={"kind": identifier.kind.value},
    )
