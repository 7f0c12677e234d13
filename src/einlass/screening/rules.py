"""The screening rules: an entry's status from its reports, and the decision. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from einlass.screening.models import (
    ENTRY_ACTIVE,
    ENTRY_EXPIRED,
    ENTRY_PENDING,
    ENTRY_REJECTED,
    ENTRY_WITHDRAWN,
    OUTCOME_ACCEPT,
    OUTCOME_REJECT,
    OUTCOME_REVIEW,
    REPORT_CONFIRMED,
    REPORT_PENDING,
    REPORT_REJECTED,
    REPORT_UNVERIFIED,
    SOURCE_MERCHANT,
)


@dataclass(frozen=True)
class ReportView:
    source: str
    merchant_id: str | None
    status: str


def entry_status(
    reports: Iterable[ReportView], *, expires_at: datetime, now: datetime, independent_reports: int
) -> str:
    """Active when the operator confirmed a report, or enough different merchants reported it."""
    # A report nobody has verified yet (an end customer's before the email link) says nothing.
    reports = [report for report in reports if report.status != REPORT_UNVERIFIED]
    if now >= expires_at:
        return ENTRY_EXPIRED
    if any(report.status == REPORT_CONFIRMED for report in reports):
        return ENTRY_ACTIVE
    pending = [report for report in reports if report.status == REPORT_PENDING]
    merchants = {report.merchant_id for report in pending if report.source == SOURCE_MERCHANT}
    if len(merchants) >= independent_reports:
        return ENTRY_ACTIVE
    if pending:
        return ENTRY_PENDING
    if reports and all(report.status == REPORT_REJECTED for report in reports):
        return ENTRY_REJECTED
    return ENTRY_WITHDRAWN


@dataclass(frozen=True)
class Hit:
    """A blacklist entry that matched one of the customer's identifiers."""

    kind: str
    category: str
    status: str


@dataclass(frozen=True)
class Decision:
    outcome: str
    reasons: tuple[dict[str, str], ...]


def decide(*, whitelisted_by: Iterable[str], hits: Iterable[Hit]) -> Decision:
    """Whitelist wins; an active entry rejects; a pending one asks for review; else accept."""
    whitelisted = tuple({"source": "whitelist", "kind": kind} for kind in sorted(set(whitelisted_by)))
    if whitelisted:
        return Decision(OUTCOME_ACCEPT, whitelisted)
    hits = list(hits)
    reasons = tuple(
        {"source": "blacklist", "kind": hit.kind, "category": hit.category, "status": hit.status}
        for hit in sorted(hits, key=lambda hit: (hit.status != ENTRY_ACTIVE, hit.kind, hit.category))
        if hit.status in (ENTRY_ACTIVE, ENTRY_PENDING)
    )
    if any(hit.status == ENTRY_ACTIVE for hit in hits):
        return Decision(OUTCOME_REJECT, reasons)
    if reasons:
        return Decision(OUTCOME_REVIEW, reasons)
    return Decision(OUTCOME_ACCEPT, ())
