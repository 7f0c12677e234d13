"""Member sessions, the access change log that invalidates caches, failed logins."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from einlass.db.base import Base, merchant_fk


class MemberSession(Base):
    """A server-side member session; the cookie holds a random token, the table its digest."""

    __tablename__ = "member_sessions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    member_id: Mapped[str] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AccessChange(Base):
    """One row per change that can alter an access decision (grant, lock, password, session).

    Written in the transaction of the change; every process polls it to drop
    cached decisions, which bounds how stale a decision can be.
    """

    __tablename__ = "access_changes"
    __table_args__ = (sa.Index("ix_access_changes_at", "at"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    merchant_id: Mapped[str] = mapped_column(sa.String(40))
    member_id: Mapped[str | None] = mapped_column(sa.String(40))
    reason: Mapped[str] = mapped_column(sa.String(100))
    at: Mapped[datetime]


class LoginFailure(Base):
    """Failed member logins, counted per merchant and username or client address for rate limiting."""

    __tablename__ = "login_failures"
    __table_args__ = (sa.Index("ix_login_failures_key", "merchant_id", "key", "at"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime]
