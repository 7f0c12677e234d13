"""Subscription figures for one calendar month: live subscriptions, MRR per currency, churn.

Figures are read from the status history, so a month long past gives the same
answer today as on its last day. A month is the half-open interval
[first day 00:00 UTC, next month's first day 00:00 UTC): "at the month's
start" and "at its end" both mean *just before* a boundary, so a change at
exactly midnight belongs to the month it opens and every subscription is
counted in exactly one month's churn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Subquery, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.billing.subscriptions.models import Subscription, SubscriptionStatusChange
from einlass.billing.subscriptions.rules import ENDED, LIVE, Status, monthly_amount
from einlass.errors import InvalidInput

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_LIVE = sorted(status.value for status in LIVE)
_ENDED = sorted(status.value for status in ENDED)
# Paying subscriptions: a trial has not paid yet, a pause pays nothing.
_RECURRING = (Status.ACTIVE.value, Status.PAST_DUE.value)


@dataclass(frozen=True)
class Month:
    label: str  # "2027-05"
    start: datetime
    end: datetime  # the next month's start


def month_of(value: str | None, now: datetime) -> Month:
    """``YYYY-MM``, or the month ``now`` falls in."""
    if value is None:
        year, number = now.year, now.month
    else:
        match = _MONTH.fullmatch(value.strip())
        if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
            raise InvalidInput(f"month {value!r} is not a month such as 2027-05", param="month")
        year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return Month(f"{year:04d}-{number:02d}", start, end)


@dataclass(frozen=True)
class Figures:
    month: Month
    live_by_status: dict[str, int]
    mrr: dict[str, int]  # currency -> minor units per month
    at_start: int
    lost: int

    @property
    def live(self) -> int:
        return sum(self.live_by_status.values())

    @property
    def churn_rate(self) -> float | None:
        """Lost over live at the start; None when nothing was live to be lost."""
        return round(self.lost / self.at_start, 4) if self.at_start else None


def status_before(merchant_id: str, moment: datetime, name: str) -> Subquery:
    """Each subscription's status just before ``moment``: ``(subscription_id, status)``.

    Of the changes dated before ``moment``, the one recorded last wins, not the
    one dated last: when a refused action is taken back, the correction is
    recorded later but dated at the older change it returns to, and it is the
    newer knowledge.
    """
    change = SubscriptionStatusChange
    newest = func.row_number().over(
        partition_by=change.subscription_id, order_by=(change.recorded_at.desc(), change.id.desc())
    )
    ranked = (
        select(change.subscription_id, change.to_status.label("status"), newest.label("newest"))
        .where(change.merchant_id == merchant_id, change.at < moment)
        .subquery()
    )
    return select(ranked.c.subscription_id, ranked.c.status).where(ranked.c.newest == 1).subquery(name)


async def month_figures(session: AsyncSession, merchant_id: str, month: Month) -> Figures:
    """Two queries, whatever the number of subscriptions: live at the end (with MRR), and churn."""
    at_end = status_before(merchant_id, month.end, "at_end")
    live_rows = await session.execute(
        select(
            at_end.c.status,
            Subscription.currency,
            Subscription.interval,
            func.count(),
            func.coalesce(func.sum(Subscription.amount), 0),
        )
        .select_from(at_end)
        .join(Subscription, Subscription.id == at_end.c.subscription_id)
        .where(Subscription.merchant_id == merchant_id, at_end.c.status.in_(_LIVE))
        .group_by(at_end.c.status, Subscription.currency, Subscription.interval)
    )
    live_by_status = dict.fromkeys(_LIVE, 0)
    monthly: dict[str, float] = {}
    for status, currency, interval, count, amount in live_rows:
        live_by_status[status] += count
        if status in _RECURRING and currency:
            monthly[currency] = monthly.get(currency, 0.0) + monthly_amount(int(amount), interval)

    at_start = status_before(merchant_id, month.start, "at_start")
    at_month_end = status_before(merchant_id, month.end, "at_month_end")
    churn = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((at_month_end.c.status.in_(_ENDED), 1), else_=0)), 0),
            )
            .select_from(at_start)
            .join(at_month_end, at_month_end.c.subscription_id == at_start.c.subscription_id)
            .where(at_start.c.status.in_(_LIVE))
        )
    ).one()
    return Figures(
        month=month,
        live_by_status=live_by_status,
        mrr={currency: round(total) for currency, total in sorted(monthly.items())},
        at_start=int(churn[0]),
        lost=int(churn[1]),
    )
