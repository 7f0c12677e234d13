"""The shared blacklist, its reports, the merchants' whitelists and the decisions.

The blacklist is one per instance and holds no raw identifier: only the kind
and the keyed digest (``identifiers.digest``). Who reported an entry and the
evidence live in ``blacklist_reports`` and are shown only to that reporter and
to the operator (invariant 5).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from einlass.db.base import Base, merchant_fk

# Categories, with their default retention in docs/screening.md.
CATEGORIES = ("chargeback", "fraud_attempt", "identity_misuse", "payment_default", "abuse")

SOURCE_MERCHANT = "merchant_report"
SOURCE_END_CUSTOMER = "end_customer_report"
SOURCE_OPERATOR = "operator"

ENTRY_PENDING = "pending"
ENTRY_ACTIVE = "active"
ENTRY_REJECTED = "rejected"
ENTRY_WITHDRAWN = "withdrawn"
ENTRY_EXPIRED = "expired"

REPORT_PENDING = "pending"  # waiting for the operator (or enough independent merchants)
REPORT_UNVERIFIED = "unverified"  # an end customer's report before the email link was followed
REPORT_CONFIRMED = "confirmed"
REPORT_REJECTED = "rejected"
REPORT_WITHDRAWN = "withdrawn"


class BlacklistEntry(Base):
    """One identifier on the shared list; its status follows from its reports."""

    __tablename__ = "blacklist_entries"
    __table_args__ = (
        sa.UniqueConstraint("kind", "digest", "category"),
        # The decision's lookup: all entries for a set of digests.
        sa.Index("ix_blacklist_entries_digest", "digest"),
        sa.Index("ix_blacklist_entries_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    digest: Mapped[str] = mapped_column(sa.String(64))
    category: Mapped[str] = mapped_column(sa.String(32))
    source: Mapped[str] = mapped_column(sa.String(32))  # how the first report came
    status: Mapped[str] = mapped_column(sa.String(16))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class BlacklistReport(Base):
    """Who said so, and why. Visible to its reporter and the operator only."""

    __tablename__ = "blacklist_reports"
    __table_args__ = (
        sa.Index("ix_blacklist_reports_entry", "entry_id"),
        # Withdrawals and appeals find a person's reports by it.
        sa.Index("ix_blacklist_reports_contact", "contact_digest"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    entry_id: Mapped[str] = mapped_column(sa.ForeignKey("blacklist_entries.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(sa.String(32))
    # The reporting merchant; NULL for end-customer and operator reports.
    merchant_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(sa.String(16))
    # Free text and references (order, payment ids), encrypted at rest (crypto.encrypt_json).
    evidence: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    # End-customer reports: a digest of the email the confirmation link went to.
    contact_digest: Mapped[str | None] = mapped_column(sa.String(64))
    reviewed_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Appeal(Base):
    """Someone says an entry about them is wrong; the operator decides."""

    __tablename__ = "blacklist_appeals"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    entry_id: Mapped[str] = mapped_column(
        sa.ForeignKey("blacklist_entries.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(sa.String(16))  # pending, upheld (entry rejected), dismissed
    statement: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # encrypted
    contact_digest: Mapped[str | None] = mapped_column(sa.String(64))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class WhitelistEntry(Base):
    """A merchant's loyal customer: by member, or by identifier digest. Always wins for that merchant."""

    __tablename__ = "whitelist_entries"
    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "member_id"),
        sa.UniqueConstraint("merchant_id", "kind", "digest"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    member_id: Mapped[str | None] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    kind: Mapped[str | None] = mapped_column(sa.String(20))
    digest: Mapped[str | None] = mapped_column(sa.String(64))
    note: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime]


OUTCOME_ACCEPT = "accept"
OUTCOME_REVIEW = "review"
OUTCOME_REJECT = "reject"


class ScreeningDecision(Base):
    """Every decision, stored and shown per member."""

    __tablename__ = "screening_decisions"
    __table_args__ = (sa.Index("ix_screening_decisions_member", "merchant_id", "member_id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    member_id: Mapped[str | None] = mapped_column(sa.ForeignKey("members.id", ondelete="SET NULL"))
    payment_id: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    context: Mapped[str] = mapped_column(sa.String(16))  # checkout, payment
    outcome: Mapped[str] = mapped_column(sa.String(16))
    # [{"kind", "category", "status", "source": "blacklist"|"whitelist"}]: no digests of other merchants' data, no raw values.
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
