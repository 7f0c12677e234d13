"""Reads of subscriptions, tenant-scoped: what the REST API, the CLI and the admin pages show."""

from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.billing.models import Plan
from einlass.billing.subscriptions.models import Subscription, SubscriptionStatusChange
from einlass.billing.subscriptions.rules import Status
from einlass.errors import InvalidInput, NotFound


def subscriptions_query(
    merchant_id: str, *, status: str | None = None, member: str | None = None, plan: str | None = None
) -> Select[Subscription]:
    """The merchant's subscriptions, filtered; the plan by id or slug."""
    query = select(Subscription).where(Subscription.merchant_id == merchant_id)
    if status is not None:
        if status not in {value.value for value in Status}:
            raise InvalidInput(
                f"status {status!r} is not one of {', '.join(value.value for value in Status)}",
                param="status",
            )
        query = query.where(Subscription.status == status)
    if member:
        query = query.where(Subscription.member_id == member)
    if plan:
        plan_ids = select(Plan.id).where(
            Plan.merchant_id == merchant_id, or_(Plan.id == plan, Plan.slug == plan)
        )
        query = query.where(Subscription.plan_id.in_(plan_ids))
    return query


async def find_subscription(session: AsyncSession, merchant_id: str, subscription_id: str) -> Subscription:
    """The merchant's subscription (read only; ``actions.get_subscription`` locks it for a change)."""
    subscription = await session.scalar(
        select(Subscription).where(
            Subscription.merchant_id == merchant_id, Subscription.id == subscription_id
        )
    )
    if subscription is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return subscription


async def member_subscriptions(session: AsyncSession, merchant_id: str, member_id: str) -> list[Subscription]:
    """A member's subscriptions, newest first."""
    query = subscriptions_query(merchant_id, member=member_id).order_by(Subscription.id.desc())
    return list(await session.scalars(query))


async def status_history(session: AsyncSession, subscription: Subscription) -> list[SubscriptionStatusChange]:
    """The subscription's status changes, oldest first."""
    rows = await session.scalars(
        select(SubscriptionStatusChange)
        .where(
            SubscriptionStatusChange.merchant_id == subscription.merchant_id,
            SubscriptionStatusChange.subscription_id == subscription.id,
        )
        .order_by(SubscriptionStatusChange.recorded_at, SubscriptionStatusChange.id)
    )
    return list(rows)
