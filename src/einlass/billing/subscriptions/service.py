"""Applying subscription facts: fold, store what the fold says, turn its windows into grants.

Runs in the caller's transaction under a row lock on the subscription, so a
fact, the derived state, the grants, the status history and the jobs commit
together (invariants 1 to 3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.billing.catalogue import plan_for_reference
from einlass.billing.gateways.base import Customer, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.models import PLAN_SUBSCRIPTION, Order, Payment, Plan, PlanArea
from einlass.billing.subscriptions.models import (
    Subscription,
    SubscriptionFact,
    SubscriptionStatusChange,
)
from einlass.billing.subscriptions.plans import check_dynamic_purchase
from einlass.billing.subscriptions.rules import SubFact, SubscriptionState, Terms, fold
from einlass.db.util import insert_ignoring_conflict
from einlass.errors import InvalidInput
from einlass.ids import new_id
from einlass.members.models import GRANT_SOURCE_SUBSCRIPTION, Grant, Member
from einlass.members.service import access_changed
from einlass.tenants.models import PARTIAL_REFUND_KEEPS_ACCESS, Merchant

log = structlog.get_logger(__name__)

APPLIED, PARKED = "applied", "parked"
CAUSE_WITHDRAWN = "action_withdrawn"
# Facts that can create a subscription einlass has not seen; any other waits for it.
OPENING_KINDS = frozenset({Kind.CREATED, Kind.PERIOD, Kind.SNAPSHOT})
DEFAULT_GRACE = "P3D"


class UnknownPlan(InvalidInput):
    """The gateway's product or tariff maps to no subscription plan (the merchant adds a reference)."""


def terms_of(plan: Plan) -> Terms:
    return Terms(
        interval=plan.access_period or plan.min_interval or "P1M",
        grace=plan.grace_period or DEFAULT_GRACE,
        trial=plan.trial_period,
        min_term=plan.min_term,
        max_cycles=plan.max_cycles,
    )


# -- facts ----------------------------------------------------------------

_TIME_FIELDS = ("period_end", "trial_end", "resume_at", "cancel_at")
_DATA_FIELDS = tuple(f.name for f in fields(SubFact) if f.name not in ("key", "kind", "at", "payment_ref"))


def fact_data(**values: Any) -> dict[str, Any]:
    """The JSON stored for a fact: the optional SubFact fields that are set."""
    data: dict[str, Any] = {}
    for name in _DATA_FIELDS:
        value = values.get(name)
        if value is None or (name in _DEFAULTS and _DEFAULTS[name] is value):
            continue
        data[name] = value.isoformat() if isinstance(value, datetime) else value
    return data


_DEFAULTS = {"at_period_end": True, "cancel_at_period_end": False}


def to_sub_fact(row: SubscriptionFact) -> SubFact:
    data = dict(row.data or {})
    for name in _TIME_FIELDS:
        if data.get(name):
            data[name] = datetime.fromisoformat(data[name])
    known = {name: data[name] for name in _DATA_FIELDS if name in data}
    return SubFact(
        key=row.fact_key, kind=Kind(row.kind), at=row.occurred_at, payment_ref=row.payment_ref, **known
    )


async def add_fact(
    session: AsyncSession,
    subscription: Subscription,
    *,
    key: str,
    kind: Kind,
    at: datetime,
    data: dict[str, Any],
    payment_ref: str | None = None,
    inbox_event_id: str | None = None,
    action_id: str | None = None,
) -> bool:
    return await insert_ignoring_conflict(
        session,
        SubscriptionFact,
        {
            "id": new_id("sfc"),
            "merchant_id": subscription.merchant_id,
            "subscription_id": subscription.id,
            "fact_key": key[:255],
            "kind": kind.value,
            "occurred_at": at,
            "data": data,
            "payment_ref": payment_ref,
            "inbox_event_id": inbox_event_id,
            "action_id": action_id,
            "retracted_at": None,
        },
    )


# -- gateway events -------------------------------------------------------


async def locked_subscription(
    session: AsyncSession, merchant_id: str, gateway: str, external_id: str
) -> Subscription | None:
    return await session.scalar(
        select(Subscription)
        .where(
            Subscription.merchant_id == merchant_id,
            Subscription.gateway == gateway,
            Subscription.external_id == external_id,
        )
        .with_for_update()
    )


async def apply_subscription_event(
    session: AsyncSession,
    merchant: Merchant,
    gateway: str,
    inbox_id: str,
    event: SubscriptionEvent,
    actor: Actor,
) -> tuple[str, bool]:
    """Store one subscription fact and bring the subscription up to date.

    Returns the outcome (PARKED when it waits for its subscription) and whether
    the subscription was created, so that what waited for it can follow.
    """
    subscription = await locked_subscription(session, merchant.id, gateway, event.subscription_ref)
    created = subscription is None
    if subscription is None:
        plan = (
            await _plan_for_event(session, merchant.id, gateway, event)
            if event.kind in OPENING_KINDS
            else None
        )
        if plan is None:
            if event.kind in (Kind.CREATED, Kind.SNAPSHOT):
                raise UnknownPlan(
                    f"subscription {event.subscription_ref!r}: no subscription plan for "
                    f"{gateway} product {event.product_ref!r} or order {event.order_no!r}; "
                    "add a gateway reference to the plan and reprocess the event"
                )
            # A renewal, pause or cancellation before the subscription itself waits for it.
            return PARKED, False
        subscription = await _open_subscription(session, merchant, gateway, event, plan)
    plan_id = None
    if event.product_ref and event.kind in (Kind.PLAN_CHANGED, Kind.SNAPSHOT, Kind.CREATED):
        plan = await plan_for_reference(session, merchant.id, gateway, event.product_ref)
        if plan is not None and plan.kind == PLAN_SUBSCRIPTION:
            plan_id = plan.id
        elif event.kind is Kind.PLAN_CHANGED:
            raise UnknownPlan(f"no subscription plan has the {gateway} reference {event.product_ref!r}")
    _fill_in(subscription, event)
    values = {name: getattr(event, name, None) for name in _DATA_FIELDS}
    values["plan_id"] = plan_id
    await add_fact(
        session,
        subscription,
        key=event.fact_key,
        kind=event.kind,
        at=event.occurred_at or clock.now(),
        data=fact_data(**values),
        payment_ref=event.payment_ref,
        inbox_event_id=inbox_id,
    )
    if event.payment_ref:
        await _link_payment(session, subscription, event.payment_ref)
    await refresh(session, merchant, subscription, actor, cause="gateway_event")
    return APPLIED, created


async def _open_subscription(
    session: AsyncSession, merchant: Merchant, gateway: str, event: SubscriptionEvent, plan: Plan
) -> Subscription:
    check_dynamic_purchase(plan, event.amount, event.interval)
    now = clock.now()
    await insert_ignoring_conflict(
        session,
        Subscription,
        {
            "id": new_id("sub"),
            "merchant_id": merchant.id,
            "gateway": gateway,
            "external_id": event.subscription_ref,
            "initial_plan_id": plan.id,
            "plan_id": plan.id,
            "gateway_data": {},
            "status": "pending",
            "amount": event.amount if event.amount is not None else plan.amount,
            "currency": (event.currency or plan.currency).upper(),
            "interval": event.interval or terms_of(plan).interval,
            "cycles_paid": 0,
            "schedule": [],
            "created_at": now,
            "updated_at": now,
        },
    )
    subscription = await locked_subscription(session, merchant.id, gateway, event.subscription_ref)
    assert subscription is not None  # inserted above, or by a concurrent delivery that committed
    return subscription


async def _plan_for_event(
    session: AsyncSession, merchant_id: str, gateway: str, event: SubscriptionEvent
) -> Plan | None:
    if event.product_ref:
        plan = await plan_for_reference(session, merchant_id, gateway, event.product_ref)
        if plan is not None and plan.kind == PLAN_SUBSCRIPTION:
            return plan
    if event.order_no:
        order = await session.scalar(
            select(Order).where(Order.merchant_id == merchant_id, Order.order_no == event.order_no)
        )
        if order is not None:
            plan = await session.get(Plan, order.plan_id)
            if plan is not None and plan.kind == PLAN_SUBSCRIPTION:
                return plan
    if event.payment_ref:
        payment_plan = await session.scalar(
            select(Plan)
            .join(Payment, Payment.plan_id == Plan.id)
            .where(
                Payment.merchant_id == merchant_id,
                Payment.gateway == gateway,
                Payment.external_id == event.payment_ref,
            )
        )
        if payment_plan is not None and payment_plan.kind == PLAN_SUBSCRIPTION:
            return payment_plan
    return None


def _fill_in(subscription: Subscription, event: SubscriptionEvent) -> None:
    customer: Customer | None = event.customer
    if customer is not None:
        subscription.customer_email = subscription.customer_email or (customer.email or "").strip() or None
        subscription.customer_name = subscription.customer_name or customer.name
        subscription.customer_locale = subscription.customer_locale or customer.locale


async def _link_payment(session: AsyncSession, subscription: Subscription, payment_ref: str) -> None:
    payment = await session.scalar(
        select(Payment).where(
            Payment.merchant_id == subscription.merchant_id,
            Payment.gateway == subscription.gateway,
            Payment.external_id == payment_ref,
        )
    )
    if payment is not None:
        payment.subscription_id = subscription.id
        payment.plan_id = payment.plan_id or subscription.plan_id
        if subscription.member_id is None and payment.member_id is not None:
            subscription.member_id = payment.member_id
        elif payment.member_id is None and subscription.member_id is not None:
            # A renewal names no customer: it is the subscription member's payment.
            payment.member_id = subscription.member_id
        subscription.customer_email = subscription.customer_email or payment.customer_email
        subscription.customer_name = subscription.customer_name or payment.customer_name
        subscription.customer_locale = subscription.customer_locale or payment.customer_locale
        if subscription.order_id is None:
            subscription.order_id = payment.order_id


async def subscription_for_payment(session: AsyncSession, payment: Payment) -> Subscription | None:
    """The subscription a payment pays for, found by a PERIOD fact that names it."""
    if payment.subscription_id is None:
        payment.subscription_id = await session.scalar(
            select(SubscriptionFact.subscription_id)
            .join(Subscription, Subscription.id == SubscriptionFact.subscription_id)
            .where(
                SubscriptionFact.merchant_id == payment.merchant_id,
                SubscriptionFact.payment_ref == payment.external_id,
                Subscription.gateway == payment.gateway,
            )
            .limit(1)
        )
    if payment.subscription_id is None:
        return None
    return await session.scalar(
        select(Subscription).where(Subscription.id == payment.subscription_id).with_for_update()
    )


# -- the fold and what follows from it -------------------------------------


async def fold_subscription(
    session: AsyncSession, merchant: Merchant, subscription: Subscription, now: datetime | None = None
) -> SubscriptionState:
    # Callers apply events under no_autoflush; the fold must read the payments' new states.
    await session.flush()
    rows = list(
        await session.scalars(
            select(SubscriptionFact).where(
                SubscriptionFact.subscription_id == subscription.id,
                SubscriptionFact.retracted_at.is_(None),
            )
        )
    )
    facts = [to_sub_fact(row) for row in rows]
    plan_ids = {subscription.initial_plan_id, subscription.plan_id}
    plan_ids |= {fact.plan_id for fact in facts if fact.plan_id}
    plans = (await session.scalars(select(Plan).where(Plan.id.in_(plan_ids)))).all()
    terms = {plan.id: terms_of(plan) for plan in plans}
    payment_refs = {fact.payment_ref for fact in facts if fact.payment_ref}
    paid = await _paid_payment_refs(session, merchant, subscription.gateway, payment_refs)
    interval = next((fact.interval for fact in facts if fact.kind is Kind.CREATED and fact.interval), None)
    return fold(
        facts,
        plan_id=subscription.initial_plan_id,
        terms_by_plan=terms,
        paid_payments=paid,
        interval=interval or subscription.interval,
        now=now,
    )


async def _paid_payment_refs(
    session: AsyncSession, merchant: Merchant, gateway: str, refs: set[str]
) -> set[str]:
    if not refs:
        return set()
    keeps = merchant.setting("partial_refund") == PARTIAL_REFUND_KEEPS_ACCESS
    opening = ["confirmed", "partially_refunded"] if keeps else ["confirmed"]
    return set(
        await session.scalars(
            select(Payment.external_id).where(
                Payment.merchant_id == merchant.id,
                Payment.gateway == gateway,
                Payment.external_id.in_(refs),
                Payment.status.in_(opening),
                # A payment screening rejected pays for nothing (the merchant refunds it).
                Payment.screening_outcome.is_distinct_from("reject"),
            )
        )
    )


def schedule_json(state: SubscriptionState) -> list[list[Any]]:
    """Status and access at every instant either changes: ``[[iso, status, has_access], ...]``."""
    instants = {at for at, _ in state.schedule}
    for window in state.windows:
        instants.update((window.starts_at, window.ends_at))
    return [[at.isoformat(), state.status_at(at).value, state.has_access(at)] for at in sorted(instants)]


@dataclass(frozen=True)
class Position:
    status: str
    # End of the access window around ``now``; None when there is no access now.
    access_until: datetime | None
    upcoming: datetime | None  # the next instant status or access changes
    last_change_at: datetime | None


def position(schedule: list[list[Any]], now: datetime) -> Position:
    """Where a stored schedule stands at ``now``."""
    status, access, last_change = "pending", False, None
    ahead: list[tuple[datetime, bool]] = []
    for iso, value, has_access in schedule:
        at = datetime.fromisoformat(iso)
        if at <= now:
            status, access, last_change = value, has_access, at
        else:
            ahead.append((at, has_access))
    access_until = next((at for at, has_access in ahead if not has_access), None) if access else None
    return Position(status, access_until, ahead[0][0] if ahead else None, last_change)


async def refresh(
    session: AsyncSession, merchant: Merchant, subscription: Subscription, actor: Actor, *, cause: str
) -> SubscriptionState:
    """Fold the facts, store the result, make the grants match the windows."""
    now = clock.now()
    state = await fold_subscription(session, merchant, subscription, now)
    if subscription.member_id is None and subscription.customer_email and state.windows:
        from einlass.billing.service import member_for_customer

        member = await member_for_customer(
            session,
            merchant,
            email=subscription.customer_email,
            name=subscription.customer_name,
            locale=subscription.customer_locale,
            actor=actor,
        )
        subscription.member_id = member.id if member is not None else None
    schedule = schedule_json(state)
    where = position(schedule, now)
    status = where.status
    if status != subscription.status:
        # Taking back an action the gateway refused happens now, whatever instant
        # the schedule falls back to.
        at = now if cause == CAUSE_WITHDRAWN else where.last_change_at or now
        record_status_change(session, subscription, status, at, cause)
        record(
            session,
            merchant_id=merchant.id,
            actor=actor,
            action="subscription.status_changed",
            entity_kind="subscription",
            entity_id=subscription.id,
            member_id=subscription.member_id,
            before={"status": subscription.status},
            after={"status": status},
        )
    if (
        subscription.resume_at is not None
        and subscription.resume_at <= now
        and subscription.status == "paused"
        and status not in ("paused", "cancelled", "expired")
    ):
        # The pause ran out by its date before the worker saw it: the gateway still needs telling.
        from einlass.billing.subscriptions.actions import RESUME_SENT_BY_EINLASS, queue_scheduled_resume

        if subscription.gateway in RESUME_SENT_BY_EINLASS:
            await queue_scheduled_resume(session, merchant.id, subscription.id)
    subscription.status = status
    subscription.plan_id = state.plan_id
    subscription.amount = state.amount if state.amount is not None else subscription.amount
    subscription.currency = state.currency or subscription.currency
    subscription.interval = state.interval
    subscription.started_at = state.started_at
    subscription.paid_through = state.paid_through
    subscription.cycles_paid = state.cycles_paid
    subscription.paused_at = state.paused_at
    subscription.resume_at = state.resume_at
    subscription.cancel_at = state.cancel_at
    subscription.ended_at = state.ended_at
    subscription.pending_plan_id = state.pending_plan_id
    subscription.access_until = where.access_until
    subscription.schedule = schedule
    subscription.next_change_at = where.upcoming
    subscription.updated_at = now
    if subscription.member_id is not None:
        member_deleted = await session.scalar(
            select(Member.deleted_at.is_not(None)).where(Member.id == subscription.member_id)
        )
        if not member_deleted:
            # An erased member's grants stay revoked whatever the gateway says later.
            await sync_grants(session, merchant, subscription, state, actor)
    return state


def record_status_change(
    session: AsyncSession, subscription: Subscription, to_status: str, at: datetime, cause: str
) -> None:
    session.add(
        SubscriptionStatusChange(
            id=new_id("ssc"),
            merchant_id=subscription.merchant_id,
            subscription_id=subscription.id,
            from_status=subscription.status,
            to_status=to_status,
            at=at,
            recorded_at=clock.now(),
            cause=cause,
        )
    )


async def sync_grants(
    session: AsyncSession,
    merchant: Merchant,
    subscription: Subscription,
    state: SubscriptionState,
    actor: Actor,
) -> None:
    """One grant per access window and area; grants no window wants any more are revoked."""
    assert subscription.member_id is not None
    plan_ids = {window.plan_id for window in state.windows}
    areas_by_plan: dict[str, list[str]] = {plan_id: [] for plan_id in plan_ids}
    if plan_ids:
        rows = await session.execute(
            select(PlanArea.plan_id, PlanArea.area_id).where(
                PlanArea.plan_id.in_(plan_ids), PlanArea.merchant_id == merchant.id
            )
        )
        for plan_id, area_id in rows:
            areas_by_plan[plan_id].append(area_id)
    wanted = _area_windows(
        (area, w.starts_at, w.ends_at) for w in state.windows for area in areas_by_plan[w.plan_id]
    )
    existing = list(
        await session.scalars(
            select(Grant)
            .where(
                Grant.merchant_id == merchant.id,
                Grant.source_kind == GRANT_SOURCE_SUBSCRIPTION,
                Grant.source_id == subscription.id,
            )
            .with_for_update()
        )
    )
    now = clock.now()
    changed = False
    by_start = {(grant.area_id, grant.starts_at): grant for grant in existing}
    for (area_id, starts_at), ends_at in wanted.items():
        grant = by_start.pop((area_id, starts_at), None)
        if grant is None:
            grant = Grant(
                id=new_id("grt"),
                merchant_id=merchant.id,
                member_id=subscription.member_id,
                area_id=area_id,
                source_kind=GRANT_SOURCE_SUBSCRIPTION,
                source_id=subscription.id,
                starts_at=starts_at,
                ends_at=ends_at,
                revoked_at=None,
                created_at=now,
                updated_at=now,
            )
            session.add(grant)
            changed = True
        elif grant.ends_at != ends_at or grant.revoked_at is not None:
            grant.ends_at, grant.revoked_at, grant.revoked_reason, grant.updated_at = ends_at, None, None, now
            changed = True
    for grant in by_start.values():
        if grant.revoked_at is None:
            grant.revoked_at, grant.revoked_reason, grant.updated_at = now, "subscription changed", now
            changed = True
    if changed:
        record(
            session,
            merchant_id=merchant.id,
            actor=actor,
            action="subscription.access_changed",
            entity_kind="subscription",
            entity_id=subscription.id,
            member_id=subscription.member_id,
            after={"access_until": _iso(subscription.access_until), "status": subscription.status},
        )
        await access_changed(session, merchant.id, subscription.member_id, f"subscription {subscription.id}")


def _area_windows(spans: Iterable[tuple[str, datetime, datetime]]) -> dict[tuple[str, datetime], datetime]:
    """Per area, touching spans joined (an upgrade that keeps an area keeps one grant)."""
    joined: dict[tuple[str, datetime], datetime] = {}
    last_by_area: dict[str, tuple[datetime, datetime]] = {}
    for area_id, starts_at, ends_at in sorted(spans, key=lambda span: (span[0], span[1])):
        last = last_by_area.get(area_id)
        if last is not None and starts_at <= last[1]:
            starts_at = last[0]
            ends_at = max(ends_at, last[1])
        joined[(area_id, starts_at)] = ends_at
        last_by_area[area_id] = (starts_at, ends_at)
    return joined


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
