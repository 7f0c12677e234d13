"""REST: subscriptions, their actions (pause, resume, cancel, change plan) and monthly figures."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.billing.subscriptions import actions
from einlass.billing.subscriptions.figures import Figures, month_figures, month_of
from einlass.billing.subscriptions.models import (
    ACTION_CANCEL,
    ACTION_CHANGE_PLAN,
    ACTION_PAUSE,
    ACTION_RESUME,
    Subscription,
    SubscriptionAction,
)
from einlass.billing.subscriptions.plans import MAX_DAYS
from einlass.billing.subscriptions.queries import find_subscription, status_history, subscriptions_query
from einlass.db.util import newest_first
from einlass.errors import InvalidInput
from einlass.rest.common import ApiContext, api_context, iso, list_response, page_limit

router = APIRouter(tags=["subscriptions"])


def render_subscription(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "object": "subscription",
        "status": subscription.status,
        "plan": subscription.plan_id,
        "pending_plan": subscription.pending_plan_id,
        "initial_plan": subscription.initial_plan_id,
        "amount": subscription.amount,
        "currency": subscription.currency,
        "interval": subscription.interval,
        "started_at": iso(subscription.started_at),
        "paid_through": iso(subscription.paid_through),
        "access_until": iso(subscription.access_until),
        "paused_at": iso(subscription.paused_at),
        "resume_at": iso(subscription.resume_at),
        "cancel_at": iso(subscription.cancel_at),
        "ended_at": iso(subscription.ended_at),
        "cycles_paid": subscription.cycles_paid,
        "member": subscription.member_id,
        "customer_email": subscription.customer_email,
        "order": subscription.order_id,
        "gateway": subscription.gateway,
        "external_id": subscription.external_id,
        "next_change_at": iso(subscription.next_change_at),
        "created_at": iso(subscription.created_at),
        "updated_at": iso(subscription.updated_at),
    }


def render_action(action: SubscriptionAction) -> dict[str, Any]:
    return {
        "id": action.id,
        "object": "subscription_action",
        "subscription": action.subscription_id,
        "kind": action.kind,
        "params": action.params,
        "status": action.status,
        "requested_by": action.requested_by,
        "error": action.error,
        "response": action.response,
        "attempts": action.attempts,
        "created_at": iso(action.created_at),
        "updated_at": iso(action.updated_at),
    }


def render_figures(figures: Figures) -> dict[str, Any]:
    return {
        "object": "subscription_figures",
        "month": figures.month.label,
        "period": {"start": iso(figures.month.start), "end": iso(figures.month.end)},
        "active": {"total": figures.live, "by_status": figures.live_by_status},
        "mrr": figures.mrr,
        "churn": {"rate": figures.churn_rate, "lost": figures.lost, "at_start": figures.at_start},
    }


def check_resume_at(resume_at: datetime | None, now: datetime) -> datetime | None:
    """A resume date at most a hundred years ahead (the fold cannot count past the year 9999)."""
    if resume_at is not None and resume_at > now + timedelta(days=MAX_DAYS):
        raise InvalidInput("resume_at must be within 100 years", param="resume_at")
    return resume_at


async def subscription_detail(session: AsyncSession, subscription: Subscription) -> dict[str, Any]:
    """The subscription with its status history (oldest first) and its actions (newest first)."""
    history = await status_history(session, subscription)
    done = await actions.list_actions(session, subscription.merchant_id, subscription.id)
    return {
        **render_subscription(subscription),
        "status_history": [
            {
                "from": change.from_status,
                "to": change.to_status,
                "at": iso(change.at),
                "recorded_at": iso(change.recorded_at),
                "cause": change.cause,
            }
            for change in history
        ],
        "actions": [render_action(action) for action in done],
    }


class ActionNote(BaseModel):
    reason: str | None = Field(default=None, max_length=500, description="Kept with the action")


class PauseRequest(ActionNote):
    resume_at: AwareDatetime | None = Field(default=None, description="RFC 3339; omit to pause until resumed")


class CancelRequest(ActionNote):
    at_period_end: bool = Field(default=True, description="false ends the subscription and access now")


class ChangePlanRequest(ActionNote):
    plan: str = Field(description="Plan id or slug; an upgrade applies now, a downgrade at period end")


@router.get("/subscriptions")
async def list_subscriptions(
    ctx: ApiContext = Depends(api_context),
    limit: int = 20,
    starting_after: str | None = None,
    status: str | None = None,
    member: str | None = None,
    plan: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    query = subscriptions_query(ctx.merchant_id, status=status, member=member, plan=plan)
    async with ctx.transaction() as session:
        rows = await newest_first(
            session, query, Subscription.id, starting_after=starting_after, limit=limit + 1
        )
        return list_response("/api/v1/subscriptions", rows, limit, render_subscription)


@router.get("/subscriptions/{subscription_id}")
async def get_subscription(subscription_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        subscription = await find_subscription(session, ctx.merchant_id, subscription_id)
        return await subscription_detail(session, subscription)


@router.get("/subscriptions/{subscription_id}/actions")
async def list_subscription_actions(
    subscription_id: str,
    ctx: ApiContext = Depends(api_context),
    limit: int = 20,
    starting_after: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.transaction() as session:
        await find_subscription(session, ctx.merchant_id, subscription_id)
        query = select(SubscriptionAction).where(
            SubscriptionAction.merchant_id == ctx.merchant_id,
            SubscriptionAction.subscription_id == subscription_id,
        )
        rows = await newest_first(
            session, query, SubscriptionAction.id, starting_after=starting_after, limit=limit + 1
        )
        return list_response(f"/api/v1/subscriptions/{subscription_id}/actions", rows, limit, render_action)


async def _act(
    ctx: ApiContext, subscription_id: str, kind: str, note: ActionNote | None, **params: Any
) -> dict[str, Any]:
    """Apply the action here at once and queue it for the gateway; answer with both."""
    async with ctx.transaction() as session:
        subscription = await actions.get_subscription(session, ctx.merchant_id, subscription_id)
        action = await actions.request_action(
            session,
            ctx.merchant,
            subscription,
            kind,
            actor=ctx.actor,
            reason=note.reason if note else None,
            **params,
        )
        return {**render_subscription(subscription), "action": render_action(action)}


@router.post("/subscriptions/{subscription_id}/pause")
async def pause_subscription(
    subscription_id: str, body: PauseRequest | None = None, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    resume_at = check_resume_at(body.resume_at if body else None, clock.now())
    return await _act(ctx, subscription_id, ACTION_PAUSE, body, resume_at=resume_at)


@router.post("/subscriptions/{subscription_id}/resume")
async def resume_subscription(
    subscription_id: str, body: ActionNote | None = None, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    return await _act(ctx, subscription_id, ACTION_RESUME, body)


@router.post("/subscriptions/{subscription_id}/cancel")
async def cancel_subscription(
    subscription_id: str, body: CancelRequest | None = None, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    at_period_end = body.at_period_end if body else True
    return await _act(ctx, subscription_id, ACTION_CANCEL, body, at_period_end=at_period_end)


@router.post("/subscriptions/{subscription_id}/change_plan")
async def change_plan(
    subscription_id: str, body: ChangePlanRequest, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    return await _act(ctx, subscription_id, ACTION_CHANGE_PLAN, body, plan=body.plan)


@router.get("/subscription_figures")
async def subscription_figures(
    ctx: ApiContext = Depends(api_context), month: str | None = None
) -> dict[str, Any]:
    """Live subscriptions at the month's end, MRR per currency and churn; month is YYYY-MM (default: now)."""
    period = month_of(month, clock.now())
    async with ctx.transaction() as session:
        return render_figures(await month_figures(session, ctx.merchant_id, period))
