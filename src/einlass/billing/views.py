"""REST: areas, plans, orders, payments and received webhook events; the webhook endpoint."""

from __future__ import annotations

import base64
from dataclasses import fields
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.audit.service import Actor
from einlass.billing import catalogue, inbox
from einlass.billing.models import (
    PLAN_ONE_TIME,
    PLAN_SUBSCRIPTION,
    Area,
    InboxEvent,
    Order,
    Payment,
    PaymentStatusChange,
    Plan,
)
from einlass.billing.service import reprocess
from einlass.billing.subscriptions.plans import SubscriptionTerms, render_terms
from einlass.db.util import newest_first
from einlass.errors import InvalidInput, NotFound
from einlass.rest.common import ApiContext, api_context, database, iso, list_response, page_limit, settings_of
from einlass.tenants.models import Merchant

router = APIRouter(tags=["billing"])
webhooks = APIRouter()


@webhooks.post("/webhooks/{merchant}/{gateway}", include_in_schema=False)
async def receive_webhook(merchant: str, gateway: str, request: Request) -> JSONResponse:
    body = await request.body()
    receipt = await inbox.receive(
        database(request), settings_of(request), merchant, gateway, body, dict(request.headers)
    )
    if receipt.status_code >= 400:
        code = {401: "authentication_error", 404: "invalid_request_error"}.get(
            receipt.status_code, "invalid_request_error"
        )
        return JSONResponse(
            {"error": {"type": code, "code": receipt.outcome, "message": receipt.message}},
            status_code=receipt.status_code,
        )
    return JSONResponse({"status": receipt.outcome, "id": receipt.event_id})


def render_area(area: Area) -> dict[str, Any]:
    return {
        "id": area.id,
        "object": "area",
        "slug": area.slug,
        "name": area.name,
        "created_at": iso(area.created_at),
    }


def render_plan(plan: Plan, details: dict[str, Any]) -> dict[str, Any]:
    subscription = plan.kind == PLAN_SUBSCRIPTION
    return {
        "id": plan.id,
        "object": "plan",
        "slug": plan.slug,
        "name": plan.name,
        "kind": plan.kind,
        "amount": plan.amount,
        "currency": plan.currency,
        # A subscription's access follows its billing interval (none for a dynamic plan), never lifetime.
        "access_period": plan.access_period if subscription else plan.access_period or "lifetime",
        "subscription": render_terms(plan) if subscription else None,
        "active": plan.active,
        **details,
        "created_at": iso(plan.created_at),
    }


def render_order(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "object": "order",
        "order_no": order.order_no,
        "plan": order.plan_id,
        "customer_email": order.customer_email,
        "customer_name": order.customer_name,
        "amount": order.amount,
        "currency": order.currency,
        "status": order.status,
        "payment": order.payment_id,
        "metadata": order.metadata_,
        "created_at": iso(order.created_at),
    }


def render_payment(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "object": "payment",
        "gateway": payment.gateway,
        "external_id": payment.external_id,
        "status": payment.status,
        "amount": payment.amount,
        "currency": payment.currency,
        "amount_paid": payment.amount_paid,
        "amount_refunded": payment.amount_refunded,
        "charged_back": payment.charged_back,
        "screening_outcome": payment.screening_outcome,
        "member": payment.member_id,
        "plan": payment.plan_id,
        "order": payment.order_id,
        "customer_email": payment.customer_email,
        "confirmed_at": iso(payment.confirmed_at),
        "created_at": iso(payment.created_at),
    }


def render_event(event: InboxEvent, *, with_body: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": event.id,
        "object": "webhook_event",
        "gateway": event.gateway,
        "type": event.event_type,
        "event_key": event.event_key,
        "status": event.status,
        "parked_on": event.parked_on,
        "error": event.error,
        "attempts": event.attempts,
        "received_at": iso(event.received_at),
        "applied_at": iso(event.applied_at),
    }
    if with_body:
        try:
            document["body"] = event.body.decode()
        except UnicodeDecodeError:
            document["body_base64"] = base64.b64encode(event.body).decode()
        document["headers"] = event.headers
    return document


class AreaCreate(BaseModel):
    slug: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)


class PlanCreate(BaseModel):
    slug: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    amount: int = Field(ge=0, description="Minor units (cents)")
    currency: str = Field(min_length=3, max_length=3)
    access_period: str | None = Field(
        default=None, description="ISO 8601 duration such as P30D; omit for lifetime"
    )
    areas: list[str] = Field(min_length=1, description="Area ids or slugs")
    gateway_refs: dict[str, list[str]] = Field(
        default_factory=dict, description="Gateway product, tariff or price ids per gateway"
    )
    kind: Literal["one_time", "subscription"] = Field(
        default="one_time", description="subscription: the fields below apply, access_period does not"
    )
    interval: str | None = Field(default=None, description="Billing interval (ISO 8601, e.g. P1M)")
    trial_period: str | None = Field(default=None, description="Free time before the first charge, e.g. P14D")
    first_amount: int | None = Field(default=None, description="The first period's price, when it differs")
    grace_period: str | None = Field(
        default=None, description="Access kept after a missed renewal (default P3D)"
    )
    min_term: str | None = Field(default=None, description="A cancellation takes effect after it at earliest")
    max_cycles: int | None = Field(default=None, description="Paid periods, then the subscription expires")
    dynamic: bool = Field(default=False, description="Amount and interval come with each purchase")
    min_amount: int | None = None
    max_amount: int | None = None
    min_interval: str | None = None
    max_interval: str | None = None
    member_can_pause: bool = Field(default=False, description="Members may pause on their account page")
    member_can_cancel: bool = Field(default=True, description="Members may cancel on their account page")

    def subscription_terms(self) -> SubscriptionTerms | None:
        """The terms for a subscription plan; a one-time plan must not carry any."""
        names = [field.name for field in fields(SubscriptionTerms) if field.name in self.model_fields_set]
        if self.kind == PLAN_ONE_TIME:
            if names:
                raise InvalidInput(
                    f"{names[0]} applies to subscription plans; set kind to subscription", param=names[0]
                )
            return None
        if "access_period" in self.model_fields_set:
            raise InvalidInput("a subscription plan takes interval, not access_period", param="access_period")
        return SubscriptionTerms(**{name: getattr(self, name) for name in names})


async def create_plan_from_body(
    session: AsyncSession, merchant: Merchant, body: PlanCreate, actor: Actor
) -> Plan:
    """The service call for a PlanCreate body: the API and the admin's form both create through it."""
    return await catalogue.create_plan(
        session,
        merchant,
        slug=body.slug,
        name=body.name,
        amount=body.amount,
        currency=body.currency,
        access_period=body.access_period,
        areas=body.areas,
        gateway_refs=body.gateway_refs,
        actor=actor,
        subscription=body.subscription_terms(),
    )


class OrderCreate(BaseModel):
    plan: str = Field(description="Plan id or slug")
    customer_email: str | None = None
    customer_name: str | None = Field(default=None, max_length=200)
    order_no: str | None = Field(default=None, max_length=64, description="Omit to let einlass choose one")
    metadata: dict[str, Any] = Field(default_factory=dict)
    amount: int | None = Field(
        default=None, description="Dynamic plans: minor units, within the plan's bounds"
    )
    interval: str | None = Field(
        default=None, description="Dynamic plans: ISO 8601 duration, within the plan's bounds"
    )


@router.get("/areas")
async def list_areas(ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        areas = await catalogue.list_areas(session, ctx.merchant_id)
        return {
            "object": "list",
            "url": "/api/v1/areas",
            "data": [render_area(a) for a in areas],
            "has_more": False,
        }


@router.post("/areas", status_code=201)
async def create_area(body: AreaCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        return render_area(
            await catalogue.create_area(session, ctx.merchant, body.slug, body.name, ctx.actor)
        )


@router.get("/areas/{area}")
async def get_area(area: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        return render_area(await catalogue.get_area(session, ctx.merchant_id, area))


@router.get("/plans")
async def list_plans(ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        plans = await catalogue.list_plans(session, ctx.merchant_id)
        data = [render_plan(p, await catalogue.plan_details(session, p)) for p in plans]
        return {"object": "list", "url": "/api/v1/plans", "data": data, "has_more": False}


@router.post("/plans", status_code=201)
async def create_plan(body: PlanCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        plan = await create_plan_from_body(session, ctx.merchant, body, ctx.actor)
        await session.flush()
        return render_plan(plan, await catalogue.plan_details(session, plan))


@router.get("/plans/{plan}")
async def get_plan(plan: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        found = await catalogue.get_plan(session, ctx.merchant_id, plan)
        return render_plan(found, await catalogue.plan_details(session, found))


@router.post("/orders", status_code=201)
async def create_order(body: OrderCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        order = await catalogue.create_order(
            session,
            ctx.merchant,
            plan_ref=body.plan,
            email=body.customer_email,
            name=body.customer_name,
            order_no=body.order_no,
            metadata=body.metadata,
            actor=ctx.actor,
            amount=body.amount,
            interval=body.interval,
        )
        return render_order(order)


@router.get("/orders")
async def list_orders(
    ctx: ApiContext = Depends(api_context), limit: int = 20, starting_after: str | None = None
) -> dict[str, Any]:
    limit = page_limit(limit)
    query = select(Order).where(Order.merchant_id == ctx.merchant_id)
    async with ctx.transaction() as session:
        rows = await newest_first(session, query, Order.id, starting_after=starting_after, limit=limit + 1)
        return list_response("/api/v1/orders", rows, limit, render_order)


@router.get("/orders/{order}")
async def get_order(order: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        return render_order(await catalogue.get_order(session, ctx.merchant_id, order))


@router.get("/payments")
async def list_payments(
    ctx: ApiContext = Depends(api_context),
    limit: int = 20,
    starting_after: str | None = None,
    member: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    query = select(Payment).where(Payment.merchant_id == ctx.merchant_id)
    if member:
        query = query.where(Payment.member_id == member)
    async with ctx.transaction() as session:
        rows = await newest_first(session, query, Payment.id, starting_after=starting_after, limit=limit + 1)
        return list_response("/api/v1/payments", rows, limit, render_payment)


@router.get("/payments/{payment_id}")
async def get_payment(payment_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        payment = await session.scalar(
            select(Payment).where(Payment.id == payment_id, Payment.merchant_id == ctx.merchant_id)
        )
        if payment is None:
            raise NotFound(f"no payment {payment_id!r}")
        history = await session.scalars(
            select(PaymentStatusChange)
            .where(
                PaymentStatusChange.payment_id == payment.id,
                PaymentStatusChange.merchant_id == ctx.merchant_id,
            )
            .order_by(PaymentStatusChange.id)
        )
        return {
            **render_payment(payment),
            "status_history": [
                {
                    "from": change.from_status,
                    "to": change.to_status,
                    "at": iso(change.at),
                    "webhook_event": change.inbox_event_id,
                }
                for change in history
            ],
        }


@router.get("/webhook_events")
async def list_webhook_events(
    ctx: ApiContext = Depends(api_context),
    limit: int = 20,
    starting_after: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    query = select(InboxEvent).where(InboxEvent.merchant_id == ctx.merchant_id)
    if status:
        query = query.where(InboxEvent.status == status)
    async with ctx.transaction() as session:
        rows = await newest_first(
            session, query, InboxEvent.id, starting_after=starting_after, limit=limit + 1
        )
        return list_response("/api/v1/webhook_events", rows, limit, render_event)


@router.get("/webhook_events/{event_id}")
async def get_webhook_event(event_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        event = await session.scalar(
            select(InboxEvent).where(InboxEvent.id == event_id, InboxEvent.merchant_id == ctx.merchant_id)
        )
        if event is None:
            raise NotFound(f"no webhook event {event_id!r}")
        return render_event(event, with_body=True)


@router.post("/webhook_events/{event_id}/reprocess")
async def reprocess_webhook_event(event_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        await reprocess(session, ctx.settings, ctx.merchant_id, event_id, ctx.actor)
        event = await session.get_one(InboxEvent, event_id)
        return render_event(event)
