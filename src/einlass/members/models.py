"""Members and the grants that give them access."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from einlass.db.base import Base, merchant_fk

GRANT_SOURCE_PAYMENT = "payment"
GRANT_SOURCE_MANUAL = "manual"
GRANT_SOURCE_SUBSCRIPTION = "subscription"


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "email_normalized"),
        sa.UniqueConstraint("merchant_id", "username"),
        # The admin's list (einlass.members.search): newest first per merchant, keyset on the id.
        sa.Index("ix_members_merchant_newest", "merchant_id", "id"),
        # The few locked or deleted members of a large merchant, without scanning the others.
        sa.Index(
            "ix_members_locked",
            "merchant_id",
            "id",
            postgresql_where=sa.text("locked_at IS NOT NULL"),
            sqlite_where=sa.text("locked_at IS NOT NULL"),
        ),
        sa.Index(
            "ix_members_deleted",
            "merchant_id",
            "id",
            postgresql_where=sa.text("deleted_at IS NOT NULL"),
            sqlite_where=sa.text("deleted_at IS NOT NULL"),
        ),
        # Search by the start of an email address: LIKE 'prefix%' needs a pattern index on PostgreSQL.
        sa.Index(
            "ix_members_email_prefix",
            "merchant_id",
            "email_normalized",
            postgresql_ops={"email_normalized": "varchar_pattern_ops"},
        ),
        # Search by the start of any word of the name (first or last name), on PostgreSQL;
        # the expression must be the one einlass.members.search.name_words() queries.
        sa.Index(
            "ix_members_name_words",
            sa.func.to_tsvector(sa.literal_column("'simple'::regconfig"), sa.column("name")),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    # Personal data; all of it is cleared on erasure (deleted_at set).
    email: Mapped[str | None] = mapped_column(sa.String(320))
    email_normalized: Mapped[str | None] = mapped_column(sa.String(320))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    username: Mapped[str | None] = mapped_column(sa.String(320))
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    locale: Mapped[str] = mapped_column(sa.String(8), default="en")
    locked_at: Mapped[datetime | None]
    lock_reason: Mapped[str | None] = mapped_column(sa.String(500))
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Grant(Base):
    """An access period for one area, with the source it came from.

    Access is derived from these rows (invariant 1). A grant whose source is
    reversed gets ``revoked_at``; a restored source clears it again.
    """

    __tablename__ = "grants"
    __table_args__ = (
        # A subscription has one grant per access window (a pause leaves a gap).
        sa.UniqueConstraint("merchant_id", "source_kind", "source_id", "area_id", "starts_at"),
        sa.Index("ix_grants_member_area", "member_id", "area_id"),
        # The worker looks for grants that started, ended or were cut since its last look.
        sa.Index("ix_grants_ends_at", "ends_at"),
        sa.Index("ix_grants_starts_at", "starts_at"),
        sa.Index("ix_grants_revoked_at", "revoked_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    member_id: Mapped[str] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    area_id: Mapped[str] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"))
    source_kind: Mapped[str] = mapped_column(sa.String(20))
    source_id: Mapped[str] = mapped_column(sa.String(40))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(200))
    note: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


def grant_covers(at: Any, grant: Any = Grant) -> sa.ColumnElement[bool]:
    """``GrantWindow.covers`` in SQL: the grant (``Grant`` or an alias) has begun, not ended, not been revoked at ``at``."""
    return sa.and_(
        grant.starts_at <= at,
        sa.or_(grant.ends_at.is_(None), grant.ends_at > at),
        sa.or_(grant.revoked_at.is_(None), grant.revoked_at > at),
    )
