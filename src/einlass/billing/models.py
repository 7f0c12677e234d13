"""Catalogue (areas, plans, gateway references), orders, the inbox and the ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from einlass.db.base import Base, merchant_fk

PLAN_ONE_TIME = "one_time"
PLAN_SUBSCRIPTION = "subscription"


class Area(Base):
    """A protected area on the merchant's server, such as ``/premium/``."""

    __tablename__ = "areas"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "slug"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    slug: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "slug"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    slug: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(20), default=PLAN_ONE_TIME)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(sa.String(3))
    # ISO 8601 duration such as P30D; NULL means lifetime access. For a
    # subscription: the billing interval (P1M), NULL for a dynamic plan.
    access_period: Mapped[str | None] = mapped_column(sa.String(32))
    active: Mapped[bool] = mapped_column(default=True)
    # Subscriptions only (see billing.subscriptions.rules.Terms and docs/subscriptions.md).
    trial_period: Mapped[str | None] = mapped_column(sa.String(32))
    first_amount: Mapped[int | None]  # the first period's price, when it differs
    grace_period: Mapped[str | None] = mapped_column(sa.String(32))
    min_term: Mapped[str | None] = mapped_column(sa.String(32))
    max_cycles: Mapped[int | None]
    # Dynamic: amount and interval come with each purchase, within these bounds.
    dynamic: Mapped[bool] = mapped_column(default=False)
    min_amount: Mapped[int | None]
    max_amount: Mapped[int | None]
    min_interval: Mapped[str | None] = mapped_column(sa.String(32))
    max_interval: Mapped[str | None] = mapped_column(sa.String(32))
    # What a member may do on the account page.
    member_can_pause: Mapped[bool] = mapped_column(default=False)
    member_can_cancel: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PlanArea(Base):
    __tablename__ = "plan_areas"

    plan_id: Mapped[str] = mapped_column(sa.ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True)
    area_id: Mapped[str] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()


class GatewayReference(Base):
    """Maps a gateway's product, tariff or price id to a plan."""

    __tablename__ = "gateway_references"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "gateway", "external_id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    plan_id: Mapped[str] = mapped_column(sa.ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    gateway: Mapped[str] = mapped_column(sa.String(32))
    external_id: Mapped[str] = mapped_column(sa.String(200))


class Order(Base):
    """A checkout the merchant started; gateway events carry its ``order_no``."""

    __tablename__ = "orders"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "order_no"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    order_no: Mapped[str] = mapped_column(sa.String(64))
    plan_id: Mapped[str] = mapped_column(sa.ForeignKey("plans.id"))
    customer_email: Mapped[str | None] = mapped_column(sa.String(320))
    customer_name: Mapped[str | None] = mapped_column(sa.String(200))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    payment_id: Mapped[str | None] = mapped_column(sa.String(40))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


INBOX_RECEIVED = "received"
INBOX_APPLIED = "applied"
INBOX_PARKED = "parked"
INBOX_IGNORED = "ignored"
INBOX_FAILED = "failed"


class InboxEvent(Base):
    """A gateway request exactly as it arrived, committed before the 2xx (invariant 2)."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "gateway", "event_key"),
        sa.Index("ix_inbox_events_status_received", "status", "received_at"),
        sa.Index("ix_inbox_events_parked", "merchant_id", "gateway", "parked_on"),
        sa.Index("ix_inbox_events_payment", "merchant_id", "payment_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    gateway: Mapped[str] = mapped_column(sa.String(32))
    event_key: Mapped[str] = mapped_column(sa.String(255))
    event_type: Mapped[str] = mapped_column(sa.String(100))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes]
    status: Mapped[str] = mapped_column(sa.String(20), default=INBOX_RECEIVED)
    # The gateway's id of the payment this event waits for, while parked.
    parked_on: Mapped[str | None] = mapped_column(sa.String(200))
    # The ledger payment the event was applied to (erasure finds raw bodies by it).
    payment_id: Mapped[str | None] = mapped_column(sa.String(40))
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime]
    applied_at: Mapped[datetime | None]


class Payment(Base):
    """One payment in the ledger; its state is folded from its facts."""

    __tablename__ = "payments"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "gateway", "external_id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    gateway: Mapped[str] = mapped_column(sa.String(32))
    external_id: Mapped[str] = mapped_column(sa.String(200))
    order_id: Mapped[str | None] = mapped_column(sa.String(40))
    plan_id: Mapped[str | None] = mapped_column(sa.ForeignKey("plans.id"))
    member_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("members.id", ondelete="SET NULL"), index=True
    )
    subscription_id: Mapped[str | None] = mapped_column(sa.String(40))
    # Kept on the ledger after erasure only as a pseudonym (see members.service).
    customer_email: Mapped[str | None] = mapped_column(sa.String(320))
    customer_name: Mapped[str | None] = mapped_column(sa.String(200))
    customer_locale: Mapped[str | None] = mapped_column(sa.String(16))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(24))
    amount_paid: Mapped[int] = mapped_column(default=0)
    amount_refunded: Mapped[int] = mapped_column(default=0)
    charged_back: Mapped[bool] = mapped_column(default=False)
    # Screening on confirmation: "reject" flags the payment (no access; the merchant refunds).
    screening_outcome: Mapped[str | None] = mapped_column(sa.String(16))
    confirmed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PaymentFact(Base):
    """Something a gateway said about a payment; each fact counts once."""

    __tablename__ = "payment_facts"
    __table_args__ = (sa.UniqueConstraint("payment_id", "fact_key"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    payment_id: Mapped[str] = mapped_column(sa.ForeignKey("payments.id", ondelete="CASCADE"))
    fact_key: Mapped[str] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(32))
    amount: Mapped[int | None]
    inbox_event_id: Mapped[str | None] = mapped_column(sa.String(40))
    occurred_at: Mapped[datetime]


class PaymentStatusChange(Base):
    __tablename__ = "payment_status_changes"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    payment_id: Mapped[str] = mapped_column(sa.ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(sa.String(24))
    to_status: Mapped[str] = mapped_column(sa.String(24))
    inbox_event_id: Mapped[str | None] = mapped_column(sa.String(40))
    at: Mapped[datetime]
