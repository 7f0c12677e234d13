"""Push targets (htpasswd files local or remote, merchant webhooks) and what was pushed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from einlass.db.base import Base, merchant_fk

TARGET_HTPASSWD_FILE = "htpasswd_file"
TARGET_FTP = "ftp"
TARGET_FTPS = "ftps"
TARGET_SFTP = "sftp"
TARGET_WEBHOOK = "webhook"
TARGET_KINDS = (TARGET_HTPASSWD_FILE, TARGET_FTP, TARGET_FTPS, TARGET_SFTP, TARGET_WEBHOOK)
# Targets that hold an htpasswd file and so need password hashes in their scheme.
HTPASSWD_KINDS = (TARGET_HTPASSWD_FILE, TARGET_FTP, TARGET_FTPS, TARGET_SFTP)


class ProvisioningTarget(Base):
    __tablename__ = "provisioning_targets"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(20))
    # Non-secret settings: path, host, port, username, remote_path, hash_scheme, hash_cost, url.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Passwords, private keys, signing secrets: encrypted at rest, write-only.
    encrypted_secrets: Mapped[str | None] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    last_attempt_at: Mapped[datetime | None]
    last_reconciled_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_drift: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TargetArea(Base):
    """A target lists the members who may enter any of its areas."""

    __tablename__ = "target_areas"

    target_id: Mapped[str] = mapped_column(
        sa.ForeignKey("provisioning_targets.id", ondelete="CASCADE"), primary_key=True
    )
    area_id: Mapped[str] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()


class MemberPushHash(Base):
    """A member's password hashed in a target's htpasswd scheme, made when the password is set."""

    __tablename__ = "member_push_hashes"

    member_id: Mapped[str] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    # e.g. "bcrypt:10", "sha512_crypt:5000", "apr1:0"
    scheme: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    hash: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]


class PushedMember(Base):
    """What a webhook target was last told about a member (it cannot be read back)."""

    __tablename__ = "pushed_members"

    target_id: Mapped[str] = mapped_column(
        sa.ForeignKey("provisioning_targets.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    active: Mapped[bool]
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime]


class WebhookDelivery(Base):
    """The delivery log of outgoing merchant webhooks."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_target", "merchant_id", "target_id", "id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    target_id: Mapped[str] = mapped_column(sa.ForeignKey("provisioning_targets.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(sa.String(64))
    member_id: Mapped[str | None] = mapped_column(sa.String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    response_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
