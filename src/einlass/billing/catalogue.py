"""Areas, plans, gateway references and orders."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import isodate
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.billing.gateways import GATEWAY_NAMES
from einlass.billing.models import (
    PLAN_ONE_TIME,
    PLAN_SUBSCRIPTION,
    Area,
    GatewayReference,
    Order,
    Plan,
    PlanArea,
)
from einlass.billing.subscriptions.plans import SubscriptionTerms, apply_terms, check_dynamic_purchase
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.ids import new_id
from einlass.members.service import normalize_email
from einlass.tenants.models import Merchant
from einlass.tenants.service import check_slug

MAX_PERIOD = timedelta(days=36_525)


# The column's size: a product, tariff or price id at the gateway.
MAX_REFERENCE = 200


def parse_period(value: str | None) -> timedelta | None:
    """ISO 8601 duration (P30D, PT12H, P1M counted as 30 days); None is lifetime."""
    if value is None or value.lower() == "lifetime":
        return None
    try:
        duration = isodate.parse_duration(value)
        if isinstance(duration, isodate.Duration):
            # Months and years have no fixed length; a month counts as 30 days here.
            duration = timedelta(days=int(duration.years) * 365 + int(duration.months) * 30) + duration.tdelta
    except (isodate.ISO8601Error, ValueError, OverflowError):
        raise InvalidInput(
            f"access_period {value!r} is not an ISO 8601 duration such as P30D (at most 100 years)",
            param="access_period",
        ) from None
    if not isinstance(duration, timedelta) or duration <= timedelta(0):
        raise InvalidInput("access_period must be positive", param="access_period")
    if duration > MAX_PERIOD:
        raise InvalidInput(
            "access_period must be at most 100 years; omit it for lifetime access", param="access_period"
        )
    return duration


def grant_end(confirmed_at: datetime, access_period: str | None) -> datetime | None:
    period = parse_period(access_period)
    return None if period is None else confirmed_at + period


def check_currency(currency: str) -> str:
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput(f"currency {currency!r} must be an ISO 4217 code such as EUR", param="currency")
    return currency.upper()


async def create_area(session: AsyncSession, merchant: Merchant, slug: str, name: str, actor: Actor) -> Area:
    check_slug(slug)
    if await session.scalar(select(Area.id).where(Area.merchant_id == merchant.id, Area.slug == slug)):
        raise Conflict(f"an area {slug!r} exists already", code="area_exists")
    area = Area(id=new_id("area"), merchant_id=merchant.id, slug=slug, name=name, created_at=clock.now())
    session.add(area)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="area.created",
        entity_kind="area",
        entity_id=area.id,
        after={"slug": slug, "name": name},
    )
    return area


async def list_areas(session: AsyncSession, merchant_id: str) -> list[Area]:
    return list(
        await session.scalars(select(Area).where(Area.merchant_id == merchant_id).order_by(Area.slug))
    )


async def get_area(session: AsyncSession, merchant_id: str, id_or_slug: str) -> Area:
    area = await session.scalar(
        select(Area).where(
            Area.merchant_id == merchant_id, (Area.id == id_or_slug) | (Area.slug == id_or_slug)
        )
    )
    if area is None:
        raise NotFound(f"no area {id_or_slug!r}")
    return area


async def create_plan(
    session: AsyncSession,
    merchant: Merchant,
    *,
    slug: str,
    name: str,
    amount: int,
    currency: str,
    access_period: str | None,
    areas: list[str],
    gateway_refs: dict[str, list[str]] | None,
    actor: Actor,
    subscription: SubscriptionTerms | None = None,
) -> Plan:
    """A one-time plan, or with ``subscription`` terms a subscription plan (its interval replaces access_period)."""
    check_slug(slug)
    if subscription is None:
        parse_period(access_period)
    if amount < 0:
        raise InvalidInput("amount must be zero or more (minor units)", param="amount")
    if not areas:
        raise InvalidInput("a plan must open at least one area", param="areas")
    if await session.scalar(select(Plan.id).where(Plan.merchant_id == merchant.id, Plan.slug == slug)):
        raise Conflict(f"a plan {slug!r} exists already", code="plan_exists")
    now = clock.now()
    plan = Plan(
        id=new_id("plan"),
        merchant_id=merchant.id,
        slug=slug,
        name=name,
        kind=PLAN_ONE_TIME if subscription is None else PLAN_SUBSCRIPTION,
        amount=amount,
        currency=check_currency(currency),
        access_period=None if access_period in (None, "lifetime") else access_period,
        active=True,
        created_at=now,
        updated_at=now,
    )
    if subscription is not None:
        apply_terms(plan, subscription)
    session.add(plan)
    await session.flush()
    for area_ref in dict.fromkeys(areas):
        area = await get_area(session, merchant.id, area_ref)
        session.add(PlanArea(plan_id=plan.id, area_id=area.id, merchant_id=merchant.id))
    for gateway, external_ids in (gateway_refs or {}).items():
        for external_id in external_ids:
            await add_gateway_reference(session, merchant, plan, gateway, external_id, actor)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="plan.created",
        entity_kind="plan",
        entity_id=plan.id,
        after={
            "slug": slug,
            "amount": amount,
            "currency": plan.currency,
            "access_period": plan.access_period,
            "areas": areas,
            "kind": plan.kind,
        },
    )
    return plan


async def add_gateway_reference(
    session: AsyncSession, merchant: Merchant, plan: Plan, gateway: str, external_id: str, actor: Actor
) -> GatewayReference:
    if gateway not in GATEWAY_NAMES:
        raise InvalidInput(
            f"unknown gateway {gateway!r}; one of {', '.join(GATEWAY_NAMES)}", param="gateway_refs"
        )
    external_id = external_id.strip()
    if not external_id or len(external_id) > MAX_REFERENCE:
        raise InvalidInput(f"a gateway reference has 1 to {MAX_REFERENCE} characters", param="gateway_refs")
    taken = await session.scalar(
        select(GatewayReference.plan_id).where(
            GatewayReference.merchant_id == merchant.id,
            GatewayReference.gateway == gateway,
            GatewayReference.external_id == external_id,
        )
    )
    if taken:
        raise Conflict(
            f"{gateway} reference {external_id!r} belongs to plan {taken} already", code="reference_taken"
        )
    reference = GatewayReference(
        id=new_id("gref"), merchant_id=merchant.id, plan_id=plan.id, gateway=gateway, external_id=external_id
    )
    session.add(reference)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="plan.reference_added",
        entity_kind="plan",
        entity_id=plan.id,
        after={"gateway": gateway, "external_id": external_id},
    )
    return reference


async def list_plans(session: AsyncSession, merchant_id: str) -> list[Plan]:
    return list(
        await session.scalars(select(Plan).where(Plan.merchant_id == merchant_id).order_by(Plan.slug))
    )


async def get_plan(session: AsyncSession, merchant_id: str, id_or_slug: str) -> Plan:
    plan = await session.scalar(
        select(Plan).where(
            Plan.merchant_id == merchant_id, (Plan.id == id_or_slug) | (Plan.slug == id_or_slug)
        )
    )
    if plan is None:
        raise NotFound(f"no plan {id_or_slug!r}")
    return plan


async def plan_area_ids(session: AsyncSession, plan: Plan) -> list[str]:
    query = select(PlanArea.area_id).where(
        PlanArea.plan_id == plan.id, PlanArea.merchant_id == plan.merchant_id
    )
    return list(await session.scalars(query))


async def plan_details(session: AsyncSession, plan: Plan) -> dict[str, Any]:
    areas = await session.scalars(
        select(Area.slug)
        .join(PlanArea, PlanArea.area_id == Area.id)
        .where(PlanArea.plan_id == plan.id, PlanArea.merchant_id == plan.merchant_id)
    )
    references = await session.execute(
        select(GatewayReference.gateway, GatewayReference.external_id).where(
            GatewayReference.plan_id == plan.id, GatewayReference.merchant_id == plan.merchant_id
        )
    )
    refs: dict[str, list[str]] = {}
    for gateway, external_id in references:
        refs.setdefault(gateway, []).append(external_id)
    return {"areas": sorted(areas), "gateway_refs": refs}


async def plan_for_reference(
    session: AsyncSession, merchant_id: str, gateway: str, external_id: str
) -> Plan | None:
    return await session.scalar(
        select(Plan)
        .join(GatewayReference, GatewayReference.plan_id == Plan.id)
        .where(
            GatewayReference.merchant_id == merchant_id,
            GatewayReference.gateway == gateway,
            GatewayReference.external_id == external_id,
        )
    )


def new_order_no() -> str:
    return "ein-" + secrets.token_hex(6)


async def create_order(
    session: AsyncSession,
    merchant: Merchant,
    *,
    plan_ref: str,
    email: str | None,
    name: str | None,
    order_no: str | None,
    metadata: dict[str, Any] | None,
    actor: Actor,
    amount: int | None = None,
    interval: str | None = None,
) -> Order:
    """``amount`` and ``interval`` are for dynamic subscription plans, within the plan's bounds."""
    plan = await get_plan(session, merchant.id, plan_ref)
    if not plan.active:
        raise InvalidInput(f"plan {plan.slug!r} is not on sale", param="plan")
    if (amount is not None or interval is not None) and not plan.dynamic:
        raise InvalidInput(f"plan {plan.slug!r} has a fixed price and interval", param="amount")
    check_dynamic_purchase(plan, amount, interval)
    if interval is not None:
        metadata = {**(metadata or {}), "interval": interval}
    if email is not None:
        normalize_email(email)
    order_no = order_no or new_order_no()
    if len(order_no) > 64:
        raise InvalidInput("order_no must have at most 64 characters", param="order_no")
    if await session.scalar(
        select(Order.id).where(Order.merchant_id == merchant.id, Order.order_no == order_no)
    ):
        raise Conflict(f"an order {order_no!r} exists already", code="order_exists")
    now = clock.now()
    order = Order(
        id=new_id("ord"),
        merchant_id=merchant.id,
        order_no=order_no,
        plan_id=plan.id,
        customer_email=email,
        customer_name=name,
        amount=plan.first_amount
        if amount is None and plan.first_amount is not None
        else (amount if amount is not None else plan.amount),
        currency=plan.currency,
        status="pending",
        metadata_=metadata or {},
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="order.created",
        entity_kind="order",
        entity_id=order.id,
        after={"order_no": order_no, "plan": plan.slug},
    )
    return order


async def get_order(session: AsyncSession, merchant_id: str, id_or_no: str) -> Order:
    order = await session.scalar(
        select(Order).where(
            Order.merchant_id == merchant_id, (Order.id == id_or_no) | (Order.order_no == id_or_no)
        )
    )
    if order is None:
        raise NotFound(f"no order {id_or_no!r}")
    return order
