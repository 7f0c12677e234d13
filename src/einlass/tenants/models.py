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
