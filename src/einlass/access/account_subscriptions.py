"""The member's subscriptions on the account page: what they see and what they may do.

The member acts through ``billing.subscriptions.actions.request_action`` as
``Actor("member", id)``, which checks the plan's ``member_can_pause`` and
``member_can_cancel``; the page only offers what that check allows. A member
cancels at the end of the paid period, never at once (a paused subscription
has no paid period left, so there it ends now, as the rules say).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.access.i18n import format_moment, translator
from einlass.access.sessions import member_actor
from einlass.billing.models import Plan
from einlass.billing.subscriptions.actions import request_action
from einlass.billing.subscriptions.models import (
    ACTION_CANCEL,
    ACTION_FAILED,
    ACTION_PAUSE,
    ACTION_REFUSED,
    ACTION_RESUME,
    Subscription,
    SubscriptionAction,
)
from einlass.billing.subscriptions.plans import MAX_DAYS
from einlass.billing.subscriptions.rules import ENDED, Status
from einlass.errors import Conflict, EinlassError, InvalidInput, NotFound
from einlass.members.models import Member
from einlass.tenants.models import Merchant

MEMBER_ACTIONS = (ACTION_PAUSE, ACTION_RESUME, ACTION_CANCEL)
# Conflict codes of request_action, as the member reads them.
_CONFLICTS = {
    "subscription_paused": "error_already_paused",
    "subscription_not_paused": "error_not_paused",
    "subscription_ended": "error_subscription_ended",
    "action_not_allowed": "error_action_not_allowed",
}


@dataclass(frozen=True)
class SubscriptionRow:
    id: str
    plan: str
    status: str
    paid_through: str | None
    access_until: str | None
    notices: list[str]
    problem: str | None  # the last action, when the gateway refused it or could not be reached
    can_pause: bool
    can_resume: bool
    can_cancel: bool
    paused: bool


def _moment(value: datetime | None, lang: str) -> str | None:
    return format_moment(value, lang) if value is not None else None


def _problem(action: SubscriptionAction | None, lang: str) -> str | None:
    if action is None or action.status not in (ACTION_REFUSED, ACTION_FAILED):
        return None
    t = translator(lang)
    request = t(f"request_{action.kind}")
    if action.status == ACTION_REFUSED:
        return t("action_refused", request=request, reason=action.error or "\u2013")
    return t("action_failed", request=request)


def _notices(subscription: Subscription, lang: str) -> list[str]:
    t = translator(lang)
    status = Status(subscription.status)
    if status in ENDED:
        return (
            [t("ended_on", date=format_moment(subscription.ended_at, lang))] if subscription.ended_at else []
        )
    notices = []
    if status is Status.PAUSED:
        if subscription.paused_at is not None:
            notices.append(t("paused_since", date=format_moment(subscription.paused_at, lang)))
        resume_at = subscription.resume_at
        notices.append(
            t("resumes_on", date=format_moment(resume_at, lang)) if resume_at else t("resumes_when_asked")
        )
    if subscription.cancel_at is not None:
        notices.append(t("cancel_pending", date=format_moment(subscription.cancel_at, lang)))
    return notices


async def subscription_rows(session: AsyncSession, member: Member, lang: str) -> list[SubscriptionRow]:
    """The member's subscriptions, newest first, with what the member may do with each."""
    rows = (
        await session.execute(
            select(Subscription, Plan)
            .join(Plan, Plan.id == Subscription.plan_id)
            .where(Subscription.merchant_id == member.merchant_id, Subscription.member_id == member.id)
            .order_by(Subscription.id.desc())
        )
    ).all()
    last_actions: dict[str, SubscriptionAction] = {}
    if rows:
        recent = await session.scalars(
            select(SubscriptionAction)
            .where(
                SubscriptionAction.merchant_id == member.merchant_id,
                SubscriptionAction.subscription_id.in_([subscription.id for subscription, _ in rows]),
            )
            .order_by(SubscriptionAction.created_at.desc(), SubscriptionAction.id.desc())
        )
        for action in recent:
            last_actions.setdefault(action.subscription_id, action)
    t = translator(lang)
    result = []
    for subscription, plan in rows:
        status = Status(subscription.status)
        live = status not in ENDED and status is not Status.PENDING
        result.append(
            SubscriptionRow(
                id=subscription.id,
                plan=plan.name,
                status=t(f"sub_status_{status.value}"),
                # While paused the paid time stands still; the notices say when it runs again.
                paid_through=_moment(subscription.paid_through, lang)
                if live and status is not Status.PAUSED
                else None,
                access_until=_moment(subscription.access_until, lang),
                notices=_notices(subscription, lang),
                problem=_problem(last_actions.get(subscription.id), lang),
                can_pause=live and status is not Status.PAUSED and plan.member_can_pause,
                can_resume=status is Status.PAUSED and plan.member_can_pause,
                can_cancel=live and subscription.cancel_at is None and plan.member_can_cancel,
                paused=status is Status.PAUSED,
            )
        )
    return result


def _resume_at(value: str, now: datetime) -> datetime | None:
    """The date field as the start of that day (UTC); empty for "until I resume it"."""
    if not value.strip():
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("resume date is not a date", param="resume_at") from None
    moment = datetime.combine(day, time(0), tzinfo=UTC)
    if moment <= now or moment > now + timedelta(days=MAX_DAYS):
        raise InvalidInput("resume date out of range", param="resume_at")
    return moment


async def act(
    session: AsyncSession, merchant: Merchant, member: Member, form: dict[str, str], now: datetime, lang: str
) -> str:
    """Carry out the member's pause, resume or cancel; the notice to show, or an EinlassError."""
    kind = form.get("subscription_action", "")
    if kind not in MEMBER_ACTIONS:
        raise InvalidInput("unknown action", param="subscription_action")
    subscription = await session.scalar(
        select(Subscription)
        .where(
            Subscription.merchant_id == merchant.id,
            Subscription.member_id == member.id,
            Subscription.id == form.get("subscription", ""),
        )
        .with_for_update()
    )
    if subscription is None:
        raise NotFound("no such subscription of this member")
    resume_at = _resume_at(form.get("resume_on", ""), now) if kind == ACTION_PAUSE else None
    if kind == ACTION_CANCEL and form.get("confirm") != "yes":
        raise InvalidInput("cancellation not confirmed", param="confirm")
    await request_action(
        session, merchant, subscription, kind, actor=member_actor(member.id), resume_at=resume_at
    )
    t = translator(lang)
    if kind == ACTION_PAUSE:
        return (
            t("notice_paused_until", date=format_moment(resume_at, lang)) if resume_at else t("notice_paused")
        )
    if kind == ACTION_RESUME:
        return t("notice_resumed")
    if Status(subscription.status) in ENDED or subscription.cancel_at is None:
        return t("notice_ended")
    return t("notice_cancelled", date=format_moment(subscription.cancel_at, lang))


def problem_of(error: EinlassError) -> tuple[int, str]:
    """The HTTP status and message key for an action the page could not carry out."""
    if isinstance(error, NotFound):
        return 404, "error_subscription_missing"
    if isinstance(error, Conflict):
        return 409, _CONFLICTS.get(error.code, "error_action")
    if error.param == "resume_at":
        return 400, "error_resume_date"
    if error.param == "confirm":
        return 400, "error_confirm_cancel"
    return 400, "error_action"
