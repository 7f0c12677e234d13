"""Pause, resume, cancel and change plan: asked for here, applied here, sent to the gateway.

An action becomes a fact of the subscription at once (access follows the
merchant's or member's word without waiting), and a job in the same
transaction sends it to the gateway (invariant 3). When the gateway refuses,
the fact is retracted, the subscription folds back to what the gateway bills,
and the action stays visible as ``refused`` with the gateway's message; when
the gateway cannot be reached after every retry it is ``failed`` and retracted
the same way. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.billing.catalogue import get_plan
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.models import PLAN_SUBSCRIPTION, GatewayReference, Plan
from einlass.billing.subscriptions.models import (
    ACTION_CANCEL,
    ACTION_CHANGE_PLAN,
    ACTION_FAILED,
    ACTION_PAUSE,
    ACTION_PENDING,
    ACTION_REFUSED,
    ACTION_RESUME,
    ACTION_SUCCEEDED,
    Subscription,
    SubscriptionAction,
    SubscriptionFact,
)
from einlass.billing.subscriptions.plans import MAX_DAYS
from einlass.billing.subscriptions.rules import ENDED, Status, is_upgrade
from einlass.billing.subscriptions.service import CAUSE_WITHDRAWN, add_fact, fact_data, refresh, terms_of
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.ids import new_id
from einlass.outbox.models import Job
from einlass.outbox.service import enqueue
from einlass.outbox.worker import JobContext
from einlass.tenants.models import Merchant
from einlass.tenants.service import gateway_secrets

log = structlog.get_logger(__name__)

JOB_SUBSCRIPTION_ACTION = "subscription.action"


# -- what a gateway client gets and answers --------------------------------


@dataclass(frozen=True)
class ActionRequest:
    action_id: str  # also the idempotency key at the gateway
    kind: str  # pause, resume, cancel, change_plan
    subscription_ref: str  # the gateway's subscription id
    merchant_slug: str
    at_period_end: bool = True  # cancel; change_plan (a downgrade)
    resume_at: datetime | None = None  # pause
    product_ref: str | None = None  # change_plan: the new plan's id at this gateway
    amount: int | None = None  # change_plan: the new plan's amount (minor units)
    currency: str | None = None
    interval: str | None = None
    reason: str | None = None
    gateway_data: dict[str, Any] = field(default_factory=dict)
    requested_at: datetime | None = None


@dataclass(frozen=True)
class ActionResult:
    """The gateway accepted the action; ``response`` is what it said, kept for the merchant."""

    response: dict[str, Any]
    # Updates to Subscription.gateway_data (e.g. Stripe's subscription item id).
    gateway_data: dict[str, Any] = field(default_factory=dict)


class ActionRefused(Exception):
    """The gateway answered and said no (a 4xx, a non-success status): not retried."""

    def __init__(self, message: str, response: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.response = response or {}


class GatewayUnavailable(Exception):
    """No usable answer (network error, timeout, 5xx, 429): retried with backoff."""


# -- asking for an action -----------------------------------------------------


async def get_subscription(session: AsyncSession, merchant_id: str, subscription_id: str) -> Subscription:
    subscription = await session.scalar(
        select(Subscription)
        .where(Subscription.merchant_id == merchant_id, Subscription.id == subscription_id)
        .with_for_update()
    )
    if subscription is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return subscription


async def request_action(
    session: AsyncSession,
    merchant: Merchant,
    subscription: Subscription,
    kind: str,
    *,
    actor: Actor,
    resume_at: datetime | None = None,
    at_period_end: bool = True,
    plan: str | None = None,
    reason: str | None = None,
) -> SubscriptionAction:
    """Apply the action here and queue it for the gateway. ``actor.kind == "member"`` checks the plan's permissions."""
    now = clock.now()
    status = Status(subscription.status)
    current_plan = await session.get_one(Plan, subscription.plan_id)
    if status in ENDED:
        raise Conflict(f"the subscription is {status.value}", code="subscription_ended")
    by_member = actor.kind == "member"
    params: dict[str, Any] = {}
    data: dict[str, Any]
    if kind == ACTION_PAUSE:
        if status is Status.PAUSED:
            raise Conflict("the subscription is paused already", code="subscription_paused")
        if by_member and not current_plan.member_can_pause:
            raise Conflict("this plan cannot be paused by members", code="action_not_allowed")
        if resume_at is not None and resume_at <= now:
            raise InvalidInput("resume_at must be in the future", param="resume_at")
        if resume_at is not None and resume_at > now + timedelta(days=MAX_DAYS):
            raise InvalidInput("resume_at must be within 100 years", param="resume_at")
        fact_kind, data = Kind.PAUSED, fact_data(resume_at=resume_at)
        params["resume_at"] = resume_at.isoformat() if resume_at else None
    elif kind == ACTION_RESUME:
        if status is not Status.PAUSED:
            raise Conflict("the subscription is not paused", code="subscription_not_paused")
        if by_member and not current_plan.member_can_pause:
            raise Conflict("this plan cannot be resumed by members", code="action_not_allowed")
        fact_kind, data = Kind.RESUMED, {}
    elif kind == ACTION_CANCEL:
        if by_member and not current_plan.member_can_cancel:
            raise Conflict("this plan cannot be cancelled by members", code="action_not_allowed")
        if by_member and not at_period_end:
            raise InvalidInput("members cancel at the end of the period", param="at_period_end")
        fact_kind, data = Kind.CANCELLED, fact_data(at_period_end=at_period_end)
        params["at_period_end"] = at_period_end
    elif kind == ACTION_CHANGE_PLAN:
        if by_member:
            raise Conflict("members cannot change the plan here", code="action_not_allowed")
        if not plan:
            raise InvalidInput("plan is required", param="plan")
        target = await get_plan(session, merchant.id, plan)
        if target.kind != PLAN_SUBSCRIPTION or not target.active:
            raise InvalidInput(f"plan {plan!r} is not an active subscription plan", param="plan")
        if target.id == subscription.plan_id:
            raise Conflict("the subscription is on this plan already", code="same_plan")
        if (
            await _reference(session, target, subscription.gateway) is None
            and subscription.gateway != "generic"
        ):
            raise InvalidInput(
                f"plan {target.slug!r} has no {subscription.gateway} reference to switch to", param="plan"
            )
        upgrade = is_upgrade(
            terms_of(current_plan),
            subscription.amount or current_plan.amount,
            terms_of(target),
            target.amount,
        )
        fact_kind = Kind.PLAN_CHANGED
        data = fact_data(
            plan_id=target.id, at_period_end=not upgrade, amount=target.amount, currency=target.currency
        )
        params.update(plan_id=target.id, plan=target.slug, upgrade=upgrade)
    else:
        raise InvalidInput(f"unknown action {kind!r}", param="action")
    if reason:
        params["reason"] = reason[:500]
    action = SubscriptionAction(
        id=new_id("sac"),
        merchant_id=merchant.id,
        subscription_id=subscription.id,
        kind=kind,
        params=params,
        requested_by=f"{actor.kind}:{actor.id or ''}"[:80],
        status=ACTION_PENDING,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(action)
    await add_fact(
        session,
        subscription,
        key=f"action:{action.id}",
        kind=fact_kind,
        at=now,
        data=data,
        action_id=action.id,
    )
    await refresh(session, merchant, subscription, actor, cause="action")
    await enqueue(session, JOB_SUBSCRIPTION_ACTION, {"action_id": action.id}, merchant_id=merchant.id)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action=f"subscription.{kind}_requested",
        entity_kind="subscription",
        entity_id=subscription.id,
        member_id=subscription.member_id,
        after=params,
    )
    return action


# Gateways that pause without a resume date: einlass tells them when the date comes.
RESUME_SENT_BY_EINLASS = frozenset({"novalnet"})


async def queue_scheduled_resume(session: AsyncSession, merchant_id: str, subscription_id: str) -> None:
    """A pause with a resume date ended (the fold already resumed it here): tell the gateway."""
    now = clock.now()
    action_id = new_id("sac")
    session.add(
        SubscriptionAction(
            id=action_id,
            merchant_id=merchant_id,
            subscription_id=subscription_id,
            kind=ACTION_RESUME,
            params={"scheduled": True},
            requested_by="system:schedule",
            status=ACTION_PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
    )
    await enqueue(session, JOB_SUBSCRIPTION_ACTION, {"action_id": action_id}, merchant_id=merchant_id)


async def _reference(session: AsyncSession, plan: Plan, gateway: str) -> str | None:
    return await session.scalar(
        select(GatewayReference.external_id)
        .where(GatewayReference.plan_id == plan.id, GatewayReference.gateway == gateway)
        .order_by(GatewayReference.external_id)
        .limit(1)
    )


async def list_actions(
    session: AsyncSession, merchant_id: str, subscription_id: str
) -> list[SubscriptionAction]:
    rows = await session.scalars(
        select(SubscriptionAction)
        .where(
            SubscriptionAction.merchant_id == merchant_id,
            SubscriptionAction.subscription_id == subscription_id,
        )
        .order_by(SubscriptionAction.created_at.desc(), SubscriptionAction.id.desc())
    )
    return list(rows)


# -- sending it (the outbox job) -------------------------------------------------


async def perform_action(context: JobContext, job: Job) -> None:
    """Send one action to its gateway; the outcome is written back to the action."""
    from einlass.billing.subscriptions.gateway_api import client_for

    async with context.db.transaction() as session:
        action = await session.get(SubscriptionAction, job.payload["action_id"])
        if action is None or action.status != ACTION_PENDING:
            return
        subscription = await session.get_one(Subscription, action.subscription_id)
        merchant = await session.get_one(Merchant, action.merchant_id)
        secrets = await gateway_secrets(
            session, context.settings.secret_key, merchant.id, subscription.gateway
        )
        request = await _request_for(session, merchant, subscription, action)
    try:
        if secrets is None:
            raise ActionRefused(f"the {subscription.gateway} gateway is not configured for this merchant")
        client = client_for(subscription.gateway)
        result = await client.perform(request, secrets, context.settings)
    except ActionRefused as refused:
        await _settle(context, action.id, ACTION_REFUSED, str(refused), refused.response, {})
        return
    except GatewayUnavailable as error:
        if job.attempts >= job.max_attempts:
            await _settle(context, action.id, ACTION_FAILED, f"gateway unreachable: {error}", None, {})
            return
        await _note_attempt(context, action.id, str(error))
        raise
    await _settle(context, action.id, ACTION_SUCCEEDED, None, result.response, result.gateway_data)


async def _request_for(
    session: AsyncSession, merchant: Merchant, subscription: Subscription, action: SubscriptionAction
) -> ActionRequest:
    params = action.params or {}
    product_ref = amount = currency = interval = None
    if action.kind == ACTION_CHANGE_PLAN:
        target = await session.get_one(Plan, params["plan_id"])
        product_ref = await _reference(session, target, subscription.gateway) or target.slug
        amount, currency, interval = target.amount, target.currency, target.access_period
    resume_at = params.get("resume_at")
    return ActionRequest(
        action_id=action.id,
        kind=action.kind,
        subscription_ref=subscription.external_id,
        merchant_slug=merchant.slug,
        at_period_end=bool(params.get("at_period_end", not params.get("upgrade", False))),
        resume_at=datetime.fromisoformat(resume_at) if resume_at else None,
        product_ref=product_ref,
        amount=amount,
        currency=currency,
        interval=interval,
        reason=params.get("reason"),
        gateway_data=dict(subscription.gateway_data or {}),
        requested_at=action.created_at,
    )


async def _note_attempt(context: JobContext, action_id: str, error: str) -> None:
    async with context.db.transaction() as session:
        action = await session.get(SubscriptionAction, action_id)
        if action is not None:
            action.attempts += 1
            action.error = error[:2000]
            action.updated_at = clock.now()


async def _settle(
    context: JobContext,
    action_id: str,
    outcome: str,
    error: str | None,
    response: dict[str, Any] | None,
    gateway_data: dict[str, Any],
) -> None:
    async with context.db.transaction() as session:
        action = await session.scalar(
            select(SubscriptionAction).where(SubscriptionAction.id == action_id).with_for_update()
        )
        if action is None or action.status != ACTION_PENDING:
            return
        subscription = await session.scalar(
            select(Subscription).where(Subscription.id == action.subscription_id).with_for_update()
        )
        assert subscription is not None
        merchant = await session.get_one(Merchant, action.merchant_id)
        now = clock.now()
        action.status, action.error, action.response = outcome, error, response
        action.attempts += 1
        action.updated_at = now
        actor = Actor("job", action.id)
        if gateway_data:
            subscription.gateway_data = {**(subscription.gateway_data or {}), **gateway_data}
        if outcome != ACTION_SUCCEEDED:
            fact = await session.scalar(
                select(SubscriptionFact).where(SubscriptionFact.action_id == action.id)
            )
            if fact is not None and fact.retracted_at is None:
                fact.retracted_at = now
                # The fold must read the retraction.
                await session.flush()
            await refresh(session, merchant, subscription, actor, cause=CAUSE_WITHDRAWN)
            log.warning("subscription action not done", action_id=action.id, outcome=outcome, error=error)
        record(
            session,
            merchant_id=merchant.id,
            actor=actor,
            action=f"subscription.action_{outcome}",
            entity_kind="subscription",
            entity_id=subscription.id,
            member_id=subscription.member_id,
            after={"action_id": action.id, "kind": action.kind, "error": error},
        )
