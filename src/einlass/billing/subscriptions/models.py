"""Subscriptions, the facts they are folded from, their status history and merchant actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from einlass.db.base import Base, merchant_fk


class Subscription(Base):
    """One subscription at one gateway. Every column below ``status`` is derived by the fold."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        # One gateway subscription is one row, however often its creation is told.
        sa.UniqueConstraint("merchant_id", "gateway", "external_id"),
        # The worker's queue: the next status change that time alone makes.
        sa.Index("ix_subscriptions_next_change_at", "next_change_at"),
        sa.Index("ix_subscriptions_merchant_status", "merchant_id", "status"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    gateway: Mapped[str] = mapped_column(sa.String(32))
    external_id: Mapped[str] = mapped_column(sa.String(200))
    member_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("members.id", ondelete="SET NULL"), index=True
    )
    # The plan it was bought with; ``plan_id`` below is the current one.
    initial_plan_id: Mapped[str] = mapped_column(sa.ForeignKey("plans.id"))
    order_id: Mapped[str | None] = mapped_column(sa.String(40))
    customer_email: Mapped[str | None] = mapped_column(sa.String(320))
    customer_name: Mapped[str | None] = mapped_column(sa.String(200))
    customer_locale: Mapped[str | None] = mapped_column(sa.String(16))
    # Gateway details the actions need (Stripe: the subscription item id).
    gateway_data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    status: Mapped[str] = mapped_column(sa.String(20))
    plan_id: Mapped[str] = mapped_column(sa.ForeignKey("plans.id"))
    amount: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    interval: Mapped[str] = mapped_column(sa.String(32))
    started_at: Mapped[datetime | None]
    paid_through: Mapped[datetime | None]
    cycles_paid: Mapped[int] = mapped_column(default=0)
    paused_at: Mapped[datetime | None]
    resume_at: Mapped[datetime | None]
    cancel_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    pending_plan_id: Mapped[str | None] = mapped_column(sa.String(40))
    access_until: Mapped[datetime | None]
    # [[iso time, status], ...]: the fold's schedule, past and projected.
    schedule: Mapped[list[Any]] = mapped_column(default=list)
    next_change_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SubscriptionFact(Base):
    """Something a gateway, the merchant or the member said about a subscription; each counts once."""

    __tablename__ = "subscription_facts"
    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "fact_key"),
        # A payment finds the subscription it pays for through its PERIOD fact.
        sa.Index("ix_subscription_facts_payment", "merchant_id", "payment_ref"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="CASCADE"))
    fact_key: Mapped[str] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(32))
    occurred_at: Mapped[datetime]
    # The optional fields of rules.SubFact, as JSON (times as ISO strings).
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    payment_ref: Mapped[str | None] = mapped_column(sa.String(200))
    inbox_event_id: Mapped[str | None] = mapped_column(sa.String(40))
    action_id: Mapped[str | None] = mapped_column(sa.String(40))
    # An action the gateway refused no longer counts.
    retracted_at: Mapped[datetime | None]


class SubscriptionStatusChange(Base):
    __tablename__ = "subscription_status_changes"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    subscription_id: Mapped[str] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    # When it happened by the rules (a worker that was down records the past instant).
    at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    cause: Mapped[str] = mapped_column(sa.String(40))  # gateway_event, action, time


ACTION_PAUSE = "pause"
ACTION_RESUME = "resume"
ACTION_CANCEL = "cancel"
ACTION_CHANGE_PLAN = "change_plan"
ACTION_KINDS = (ACTION_PAUSE, ACTION_RESUME, ACTION_CANCEL, ACTION_CHANGE_PLAN)

ACTION_PENDING = "pending"  # applied here, waiting for the gateway
ACTION_SUCCEEDED = "succeeded"  # the gateway accepted it
ACTION_REFUSED = "refused"  # the gateway said no: retracted here, shown with the reason
ACTION_FAILED = "failed"  # the gateway could not be reached after every retry


class SubscriptionAction(Base):
    """Pause, resume, cancel or change plan, asked for here and sent to the gateway."""

    __tablename__ = "subscription_actions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = merchant_fk()
    subscription_id: Mapped[str] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(20))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_by: Mapped[str] = mapped_column(sa.String(80))  # actor kind:id
    status: Mapped[str] = mapped_column(sa.String(20), default=ACTION_PENDING)
    # What the gateway answered (status code and message), shown to the merchant.
    response: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
