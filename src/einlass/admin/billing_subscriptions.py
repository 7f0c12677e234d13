"""Admin pages: the merchant's subscriptions, one subscription, and its actions.

The actions (pause, resume, cancel, change plan) go through
``billing.subscriptions.actions.request_action``, the service the REST API
calls. The form handling is reusable by any page that shows a subscription
(the member detail page):

* ``subscription_action_from_form(page, session, subscription, form)``: the
  action a posted form asks for, applied; raises ``EinlassError``.
* ``post_subscription_action(page, subscription_id, back, member_id=None)``: a
  whole POST handler (CSRF and role check, lock, action, redirect with a notice).
* ``change_plan_choices(plans, subscription)``: the plans to offer.
* the template macro ``action_forms`` in ``billing/_subscription_actions.html``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from fastapi import APIRouter, Request
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.admin.billing_common import (
    choice,
    keyset_page,
    label,
    member_name,
    members_by_id,
    options,
    pager_links,
    plans_by_id,
)
from einlass.admin.page import Page, merchant_page
from einlass.billing.models import PLAN_SUBSCRIPTION, Payment, Plan
from einlass.billing.subscriptions import actions
from einlass.billing.subscriptions.models import (
    ACTION_CANCEL,
    ACTION_CHANGE_PLAN,
    ACTION_KINDS,
    ACTION_PAUSE,
    Subscription,
    SubscriptionAction,
)
from einlass.billing.subscriptions.queries import find_subscription, status_history, subscriptions_query
from einlass.billing.subscriptions.rules import ENDED, Status
from einlass.errors import InvalidInput, NotFound
from einlass.tenants.models import StaffAccount

router = APIRouter()

SUBSCRIPTION_STATUSES = tuple(status.value for status in Status)
ENDED_STATUSES = frozenset(status.value for status in ENDED)
MAX_REASON = 500
PAYMENTS_SHOWN = 50


def _resume_at(page: Page, value: str) -> datetime | None:
    """The optional resume date of a pause form (``YYYY-MM-DD``), as midnight UTC."""
    value = value.strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidInput(page.t("billing_error_resume_on"), param="resume_on") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def subscription_action_from_form(
    page: Page, session: AsyncSession, subscription: Subscription, form: Mapping[str, str]
) -> SubscriptionAction:
    """Apply the action a subscription form asks for; the caller has locked ``subscription``.

    Fields: ``action`` (pause, resume, cancel, change_plan), ``resume_on`` (pause,
    optional date), ``when`` (cancel: ``period_end``, the default, or ``now``),
    ``plan`` (change_plan: a plan id or slug) and an optional ``reason``.
    Raises the service's ``EinlassError`` when the action is not possible.
    """
    assert page.merchant is not None
    kind = form.get("action", "")
    if kind not in ACTION_KINDS:
        raise InvalidInput(f"unknown action {kind!r}", param="action")
    reason = form.get("reason", "").strip()[:MAX_REASON] or None
    resume_at = _resume_at(page, form.get("resume_on", "")) if kind == ACTION_PAUSE else None
    at_period_end = not (kind == ACTION_CANCEL and form.get("when") == "now")
    plan = (form.get("plan", "").strip() or None) if kind == ACTION_CHANGE_PLAN else None
    return await actions.request_action(
        session,
        page.merchant,
        subscription,
        kind,
        actor=page.actor,
        resume_at=resume_at,
        at_period_end=at_period_end,
        plan=plan,
        reason=reason,
    )


async def post_subscription_action(
    page: Page, subscription_id: str, back: str, *, member_id: str | None = None
) -> Response:
    """A POST handler for a subscription's action form; redirects to ``back`` with the outcome.

    With ``member_id``, the subscription must belong to that member (else 404).
    """
    form = await page.form()

    async def work(session: AsyncSession) -> str:
        try:
            subscription = await actions.get_subscription(session, page.merchant_id, subscription_id)
        except NotFound:
            raise page.not_found() from None
        if member_id is not None and subscription.member_id != member_id:
            raise page.not_found()
        action = await subscription_action_from_form(page, session, subscription, form)
        return page.t("billing_action_requested", action=label(page, "kind", action.kind))

    return await page.act(back, work)


def change_plan_choices(plans: Iterable[Plan], subscription: Subscription) -> list[tuple[str, str]]:
    """The merchant's active subscription plans ``subscription`` can switch to, as (id, name) pairs by name."""
    return sorted(
        (
            (plan.id, plan.name)
            for plan in plans
            if plan.kind == PLAN_SUBSCRIPTION and plan.active and plan.id != subscription.plan_id
        ),
        key=lambda pair: pair[1],
    )


async def requesters(
    session: AsyncSession, merchant_id: str, done: list[SubscriptionAction]
) -> dict[str, str]:
    """Who asked for each action, for people: staff by email; members, jobs and keys as stored."""
    staff_ids = {
        action.requested_by.split(":", 1)[1]
        for action in done
        if action.requested_by.split(":", 1)[0] in ("admin", "operator")
    }
    names = {action.requested_by: action.requested_by for action in done}
    if staff_ids:
        rows = await session.execute(
            select(StaffAccount.id, StaffAccount.email).where(
                StaffAccount.id.in_(sorted(staff_ids)),
                or_(StaffAccount.merchant_id == merchant_id, StaffAccount.merchant_id.is_(None)),
            )
        )
        emails = {str(row[0]): str(row[1]) for row in rows}
        for requested_by in names:
            kind, _, staff_id = requested_by.partition(":")
            if kind in ("admin", "operator") and staff_id in emails:
                names[requested_by] = emails[staff_id]
    return names


@router.get("/m/{slug}/subscriptions")
async def subscriptions(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    params = request.query_params
    status = choice(params.get("status"), SUBSCRIPTION_STATUSES)
    async with page.db.transaction() as session:
        plans = await plans_by_id(session, page.merchant_id)
        subscription_plans = [plan for plan in plans.values() if plan.kind == PLAN_SUBSCRIPTION]
        plan = choice(params.get("plan"), [p.id for p in subscription_plans])
        query = subscriptions_query(page.merchant_id, status=status or None, plan=plan or None)
        found = await keyset_page(session, query, Subscription.id, params.get("after"))
        members = await members_by_id(session, page.merchant_id, (s.member_id for s in found.rows))
    return page.render(
        "billing/subscriptions.html",
        title=page.t("nav_subscriptions"),
        subscriptions=found.rows,
        members=members,
        plans=plans,
        member_name=member_name,
        selected_status=status,
        selected_plan=plan,
        status_options=options(page, SUBSCRIPTION_STATUSES, "sub"),
        plan_options=[("", page.t("billing_all"))] + [(p.id, p.name) for p in subscription_plans],
        **pager_links(page, "subscriptions", found, status=status, plan=plan),
        label=lambda group, value: label(page, group, value),
    )


@router.get("/m/{slug}/subscriptions/{subscription_id}")
async def subscription_detail(request: Request, slug: str, subscription_id: str) -> Response:
    page = await merchant_page(request, slug)
    async with page.db.transaction() as session:
        try:
            subscription = await find_subscription(session, page.merchant_id, subscription_id)
        except NotFound:
            raise page.not_found() from None
        history = await status_history(session, subscription)
        done = await actions.list_actions(session, page.merchant_id, subscription.id)
        requested_by = await requesters(session, page.merchant_id, done)
        payments = list(
            await session.scalars(
                select(Payment)
                .where(Payment.merchant_id == page.merchant_id, Payment.subscription_id == subscription.id)
                .order_by(Payment.id.desc())
                .limit(PAYMENTS_SHOWN)
            )
        )
        members = await members_by_id(session, page.merchant_id, [subscription.member_id])
        plans = await plans_by_id(session, page.merchant_id)
    return page.render(
        "billing/subscription.html",
        title=page.t("billing_title_subscription", id=subscription.id),
        subscription=subscription,
        history=history,
        actions=done,
        requested_by=requested_by,
        payments=payments,
        member=members.get(subscription.member_id or ""),
        plans=plans,
        plan_choices=change_plan_choices(plans.values(), subscription),
        action_url=page.url(f"subscriptions/{subscription.id}/action"),
        member_name=member_name,
        label=lambda group, value: label(page, group, value),
    )


@router.post("/m/{slug}/subscriptions/{subscription_id}/action")
async def subscription_action(request: Request, slug: str, subscription_id: str) -> Response:
    page = await merchant_page(request, slug)
    return await post_subscription_action(page, subscription_id, page.url(f"subscriptions/{subscription_id}"))
