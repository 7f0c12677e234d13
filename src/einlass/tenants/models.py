"""Merchants, their API keys and their gateway accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from einlass.db.base import Base, merchant_fk

PARTIAL_REFUND_KEEPS_ACCESS = "keep_access"
PARTIAL_REFUND_REVOKES_ACCESS = "revoke_access"
DEFAULT_MERCHANT_SETTINGS: dict[str, Any] = {
    # A partial refund is usually a goodwill gesture, so access stays by default.
    "partial_refund": PARTIAL_REFUND_KEEPS_ACCESS,
    "locale": "en",
    # File every chargeback as a pending blacklist report (docs/screening.md).
    "report_chargebacks": False,
    # Country for phone numbers without a country code (screening).
    "default_region": "DE",
    # Member pages (/m/{merchant}/...): docs/member-pages.md.
    "session_lifetime_days": 30,
    "cookie_path": "/",
    "cookie_domain": None,
    # Hosts `next` may point to after login, besides relative paths on the page's own host.
    "allowed_hosts": [],
    # Proxies (IP addresses or networks) whose X-Forwarded-For is believed.
    "trusted_proxies": [],
    "login_failures_per_username": 5,
    "login_failures_per_address": 20,
    "login_failure_window_minutes": 15,
}


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]

    def setting(self, key: str) -> Any:
        return (self.settings or {}).get(key, DEFAULT_MERCHANT_SETTINGS.get(key))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    # The first characters, shown in lists so a key can be recognised.
    prefix: Mapped[str] = mapped_column(sa.String(24))
    # sha256 of the whole key: keys are 256-bit random, so a slow hash adds nothing.
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class GatewayAccount(Base):
    """A merchant's credentials for one gateway; secrets encrypted at rest."""

    __tablename__ = "gateway_accounts"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "gateway"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    gateway: Mapped[str] = mapped_column(sa.String(32))
    encrypted_secrets: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


STAFF_ROLE_OPERATOR = "operator"
STAFF_ROLE_ADMIN = "admin"
STAFF_ROLE_VIEWER = "viewer"
STAFF_ROLES = (STAFF_ROLE_OPERATOR, STAFF_ROLE_ADMIN, STAFF_ROLE_VIEWER)


class StaffAccount(Base):
    """A person who logs in to the admin UI: the operator (no merchant) or a merchant's admin or viewer."""

    __tablename__ = "staff_accounts"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    # None for the operator, who sees every merchant.
    merchant_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(8), default="en")
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    # The TOTP seed, encrypted at rest (crypto.encrypt_json).
    encrypted_totp: Mapped[str] = mapped_column(sa.Text)
    # The last TOTP time step accepted: a code works once.
    last_totp_step: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StaffSession(Base):
    """A server-side admin session; the cookie holds a random token, the table its digest."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    staff_id: Mapped[str] = mapped_column(sa.ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
