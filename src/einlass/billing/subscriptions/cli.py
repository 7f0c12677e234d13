"""``einlass subscription ...``: list, show, pause, resume, cancel, change plan, figures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import CLI
from einlass.billing.subscriptions import actions
from einlass.billing.subscriptions.figures import month_figures, month_of
from einlass.billing.subscriptions.models import (
    ACTION_CANCEL,
    ACTION_CHANGE_PLAN,
    ACTION_PAUSE,
    ACTION_RESUME,
    Subscription,
)
from einlass.billing.subscriptions.plans import MAX_DAYS
from einlass.billing.subscriptions.queries import find_subscription, subscriptions_query
from einlass.billing.subscriptions.views import (
    render_action,
    render_figures,
    render_subscription,
    subscription_detail,
)
from einlass.config import Settings
from einlass.tenants.models import Merchant
from einlass.tenants.service import get_merchant_by_slug

subscription_app = typer.Typer(
    help="Subscriptions: list, show, pause, resume, cancel, change plan, monthly figures.",
    no_args_is_help=True,
)

MerchantOption = Annotated[str, typer.Option("--merchant", help="The merchant's slug")]
SubscriptionId = Annotated[str, typer.Argument(help="The subscription id (sub_...)")]
Reason = Annotated[str | None, typer.Option(help="A note kept with the action")]


def _run(work: Callable[[AsyncSession, Settings], Awaitable[Any]]) -> None:
    # The main CLI's runner (settings, logging, errors as "error: ..." and exit code 1);
    # imported here because einlass.cli imports this module to register it.
    from einlass.cli import _in_transaction, _print

    _print(_in_transaction(work))


def parse_moment(value: str | None, option: str) -> datetime | None:
    """RFC 3339 / ISO 8601; a time without offset is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time such as 2027-07-25T10:00:00Z", param_hint=option
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@subscription_app.command("list")
def subscription_list(
    merchant: MerchantOption,
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. active or paused")] = None,
    member: Annotated[str | None, typer.Option(help="Only this member's (mem_...)")] = None,
    plan: Annotated[str | None, typer.Option(help="Only this plan's (id or slug)")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
) -> None:
    async def work(session: AsyncSession, _settings: Settings) -> list[dict[str, Any]]:
        found = await get_merchant_by_slug(session, merchant)
        query = subscriptions_query(found.id, status=status, member=member, plan=plan)
        rows = await session.scalars(query.order_by(Subscription.id.desc()).limit(max(1, limit)))
        return [render_subscription(row) for row in rows]

    _run(work)


@subscription_app.command("show")
def subscription_show(merchant: MerchantOption, subscription: SubscriptionId) -> None:
    """The subscription with its status history and actions (a refused action shows the gateway's reason)."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        found = await get_merchant_by_slug(session, merchant)
        return await subscription_detail(session, await find_subscription(session, found.id, subscription))

    _run(work)


def _act(merchant: str, subscription: str, kind: str, reason: str | None, **params: Any) -> None:
    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        found: Merchant = await get_merchant_by_slug(session, merchant)
        row = await actions.get_subscription(session, found.id, subscription)
        action = await actions.request_action(session, found, row, kind, actor=CLI, reason=reason, **params)
        return {**render_subscription(row), "action": render_action(action)}

    _run(work)


@subscription_app.command("pause")
def subscription_pause(
    merchant: MerchantOption,
    subscription: SubscriptionId,
    resume_at: Annotated[
        str | None, typer.Option(help="When it resumes by itself, e.g. 2027-07-25T10:00:00Z")
    ] = None,
    reason: Reason = None,
) -> None:
    """Pause now: access closes at once, the unused paid time is kept for the resume."""
    moment = parse_moment(resume_at, "--resume-at")
    if moment is not None and moment > clock.now() + timedelta(days=MAX_DAYS):
        raise typer.BadParameter("at most 100 years ahead", param_hint="--resume-at")
    _act(merchant, subscription, ACTION_PAUSE, reason, resume_at=moment)


@subscription_app.command("resume")
def subscription_resume(
    merchant: MerchantOption, subscription: SubscriptionId, reason: Reason = None
) -> None:
    _act(merchant, subscription, ACTION_RESUME, reason)


@subscription_app.command("cancel")
def subscription_cancel(
    merchant: MerchantOption,
    subscription: SubscriptionId,
    at_period_end: Annotated[
        bool, typer.Option("--at-period-end/--now", help="End with the paid period, or now")
    ] = True,
    reason: Reason = None,
) -> None:
    _act(merchant, subscription, ACTION_CANCEL, reason, at_period_end=at_period_end)


@subscription_app.command("change-plan")
def subscription_change_plan(
    merchant: MerchantOption,
    subscription: SubscriptionId,
    plan: Annotated[str, typer.Argument(help="The new plan (id or slug)")],
    reason: Reason = None,
) -> None:
    """An upgrade applies now, a downgrade at the end of the paid period."""
    _act(merchant, subscription, ACTION_CHANGE_PLAN, reason, plan=plan)


@subscription_app.command("figures")
def subscription_figures(
    merchant: MerchantOption,
    month: Annotated[str | None, typer.Option(help="YYYY-MM; default the current month")] = None,
) -> None:
    """Live subscriptions at the month's end by status, MRR per currency, churn."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        found = await get_merchant_by_slug(session, merchant)
        return render_figures(await month_figures(session, found.id, month_of(month, clock.now())))

    _run(work)
