"""The dashboard's read queries: a handful of aggregates per merchant, each over a time window.

Every query filters by ``merchant_id`` and aggregates in SQL; series are
grouped by a UTC day (or month) string computed per dialect, so the rows that
come back are bounded by the window (30 days, 12 months), never by the
number of members. The per-day series read only their window through an
index: grants by ``ends_at``/``revoked_at``; members and screening decisions,
which have no index on the time, by their ids (sortable by creation time, see
``einlass.ids``): a row created at *t* has an id no lower than
:func:`id_floor` of *t*. The headline counts, a year of revenue and the
subscription figures read every row they count; for a large merchant
:func:`current_figures` keeps the result for a minute, until the next change.

Definitions (also shown on the page):

- active member: not locked, not deleted, and some grant covers now
  (``einlass.members.access``);
- join: a member created that day;
- loss: a member whose last access ended that day: a grant ended or was
  revoked, and no grant of that member (any area) covers the moment after;
- revenue: payments confirmed in the month, less what was refunded or
  charged back on them, per currency, in minor units;
- subscriptions by state: ``billing.subscriptions.figures`` for the current
  month (the API's ``/subscription_figures``);
- screening rejection: a screening decision with outcome ``reject``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Exists, and_, case, exists, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from einlass.audit.models import AuditEntry
from einlass.billing.models import Payment
from einlass.billing.subscriptions.figures import Figures, month_figures, month_of
from einlass.db.engine import Database
from einlass.members.models import Grant, Member, grant_covers
from einlass.screening.models import OUTCOME_REJECT, ScreeningDecision

T = TypeVar("T")
DAYS = 30
MONTHS = 12
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, as einlass.ids


@dataclass(frozen=True)
class MemberCounts:
    total: int  # not deleted
    locked: int  # not deleted
    active: int


@dataclass(frozen=True)
class MonthRevenue:
    month: date  # the first day
    confirmed: int  # minor units
    reversed: int  # refunded or charged back, minor units

    @property
    def net(self) -> int:
        return self.confirmed - self.reversed


@dataclass(frozen=True)
class DashboardFigures:
    now: datetime
    members: MemberCounts
    days: list[date]  # the last DAYS days, oldest first, today last
    joins: list[int]  # per day in ``days``
    losses: list[int]
    rejections: list[int]
    months: list[date]  # the last MONTHS months (first days), oldest first
    revenue: dict[str, list[MonthRevenue]]  # currency -> per month in ``months``
    subscriptions: Figures


def id_floor(prefix: str, moment: datetime) -> str:
    """The lowest id ``einlass.ids.new_id(prefix)`` can give at or after ``moment``."""
    millis = max(0, int(moment.timestamp() * 1000))
    chars = []
    for _ in range(10):
        chars.append(_ALPHABET[millis & 31])
        millis >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def day_window(now: datetime, days: int = DAYS) -> list[date]:
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def month_window(now: datetime, months: int = MONTHS) -> list[date]:
    index = now.year * 12 + now.month - 1
    return [date((i // 12), i % 12 + 1, 1) for i in range(index - months + 1, index + 1)]


def _start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _bucket(session: AsyncSession, column: Any, month: bool = False) -> ColumnElement[str]:
    """The UTC day (``YYYY-MM-DD``) or month (``YYYY-MM``) of a time column, as a string."""
    # Literal formats, not bound parameters: PostgreSQL must see the same expression in GROUP BY.
    if session.get_bind().dialect.name == "postgresql":
        pattern: ColumnElement[str] = literal_column("'YYYY-MM'" if month else "'YYYY-MM-DD'")
        return func.to_char(func.timezone(literal_column("'UTC'"), column), pattern)
    # SQLite stores UTC without a zone (db.base.UTCDateTime).
    return func.strftime(literal_column("'%Y-%m'" if month else "'%Y-%m-%d'"), column)


def _per_day(rows: Any, days: list[date]) -> list[int]:
    counts = {str(key): int(count) for key, count in rows}
    return [counts.get(day.isoformat(), 0) for day in days]


def _grant_covering(grant: Any, member_id: Any, merchant_id: str, moment: Any) -> Exists:
    """The member has a grant (``grant``: Grant or an alias) covering ``moment``: begun, not ended, not revoked."""
    return exists().where(
        grant.member_id == member_id,
        grant.merchant_id == merchant_id,
        grant_covers(moment, grant),
    )


async def member_counts(session: AsyncSession, merchant_id: str, now: datetime) -> MemberCounts:
    total, locked = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((Member.locked_at.is_not(None), 1), else_=0)), 0),
            ).where(Member.merchant_id == merchant_id, Member.deleted_at.is_(None))
        )
    ).one()
    covering = _grant_covering(Grant, Member.id, merchant_id, now)
    active = await session.scalar(
        select(func.count()).where(
            Member.merchant_id == merchant_id,
            Member.locked_at.is_(None),
            Member.deleted_at.is_(None),
            covering,
        )
    )
    return MemberCounts(total=int(total), locked=int(locked), active=int(active or 0))


async def _created_per_day(
    session: AsyncSession, model: Any, prefix: str, merchant_id: str, days: list[date], *where: Any
) -> list[int]:
    """Rows of ``model`` (ids starting with ``prefix``) created per day, with the ``where`` conditions."""
    start = _start_of(days[0])
    day = _bucket(session, model.created_at)
    rows = await session.execute(
        select(day, func.count())
        .where(
            model.merchant_id == merchant_id,
            model.id >= id_floor(prefix, start),
            model.created_at >= start,
            *where,
        )
        .group_by(day)
    )
    return _per_day(rows, days)


async def joins_per_day(session: AsyncSession, merchant_id: str, days: list[date]) -> list[int]:
    return await _created_per_day(session, Member, "mem", merchant_id, days)


async def losses_per_day(
    session: AsyncSession, merchant_id: str, days: list[date], now: datetime
) -> list[int]:
    """Members per day whose access ended then, with no grant covering the moment after."""
    start = _start_of(days[0])
    # When a grant stopped covering: revoked before its end, or its end.
    ended = case(
        (
            and_(
                Grant.revoked_at.is_not(None), or_(Grant.ends_at.is_(None), Grant.revoked_at < Grant.ends_at)
            ),
            Grant.revoked_at,
        ),
        else_=Grant.ends_at,
    )
    other = aliased(Grant)
    still_covered = _grant_covering(other, Grant.member_id, merchant_id, ended)
    day = _bucket(session, ended)
    rows = await session.execute(
        select(day, func.count(func.distinct(Grant.member_id)))
        .where(
            Grant.merchant_id == merchant_id,
            or_(
                and_(Grant.ends_at >= start, Grant.ends_at <= now),
                and_(Grant.revoked_at >= start, Grant.revoked_at <= now),
            ),
            ended >= start,
            ended <= now,
            ended > Grant.starts_at,  # a grant cut before it began gave no access to lose
            ~still_covered,
        )
        .group_by(day)
    )
    return _per_day(rows, days)


async def rejections_per_day(session: AsyncSession, merchant_id: str, days: list[date]) -> list[int]:
    rejected = ScreeningDecision.outcome == OUTCOME_REJECT
    return await _created_per_day(session, ScreeningDecision, "scr", merchant_id, days, rejected)


async def revenue_per_month(
    session: AsyncSession, merchant_id: str, months: list[date]
) -> dict[str, list[MonthRevenue]]:
    """Per currency: confirmed in the month, and what was refunded or charged back of it since."""
    start = _start_of(months[0])
    month = _bucket(session, Payment.confirmed_at, month=True)
    reversed_amount = case(
        (Payment.charged_back.is_(True), Payment.amount_paid),
        (Payment.amount_refunded > Payment.amount_paid, Payment.amount_paid),
        else_=Payment.amount_refunded,
    )
    rows = await session.execute(
        select(month, Payment.currency, func.sum(Payment.amount_paid), func.sum(reversed_amount))
        .where(
            Payment.merchant_id == merchant_id,
            Payment.confirmed_at.is_not(None),
            Payment.confirmed_at >= start,
        )
        .group_by(month, Payment.currency)
    )
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for key, currency, confirmed, reversed_ in rows:
        by_month = found.setdefault(str(currency).upper(), {})
        before = by_month.get(str(key), (0, 0))
        by_month[str(key)] = (before[0] + int(confirmed or 0), before[1] + int(reversed_ or 0))
    return {
        currency: [MonthRevenue(first, *by_month.get(first.isoformat()[:7], (0, 0))) for first in months]
        for currency, by_month in sorted(found.items())
    }


async def _read(db: Database, query: Callable[[AsyncSession], Awaitable[T]]) -> T:
    # A read-only session: on SQLite it does not take the write lock (db.transaction does).
    async with db.read_sessionmaker() as session:
        return await query(session)


async def dashboard_figures(session: AsyncSession, merchant_id: str, now: datetime) -> DashboardFigures:
    """All figures, one query after the other in one read transaction (one connection, one snapshot)."""
    days = day_window(now)
    months = month_window(now)
    return DashboardFigures(
        now=now,
        members=await member_counts(session, merchant_id, now),
        days=days,
        joins=await joins_per_day(session, merchant_id, days),
        losses=await losses_per_day(session, merchant_id, days, now),
        rejections=await rejections_per_day(session, merchant_id, days),
        months=months,
        revenue=await revenue_per_month(session, merchant_id, months),
        subscriptions=await month_figures(session, merchant_id, month_of(None, now)),
    )


# --- a short-lived cache for merchants whose figures take long ----------------------------------

SLOW_SECONDS = 1.0  # figures that took longer to compute are kept ...
KEEP_FOR = timedelta(minutes=1)  # ... this long by the clock, unless something was changed (audited) since
_CACHE_SIZE = 256
_cache: dict[tuple[str, str], tuple[str | None, DashboardFigures]] = {}


async def latest_change(db: Database, merchant_id: str) -> str | None:
    """The merchant's newest audit entry (every change is audited; ids sort by time): one index lookup."""
    return await _read(
        db,
        lambda session: session.scalar(
            select(func.max(AuditEntry.id)).where(AuditEntry.merchant_id == merchant_id)
        ),
    )


async def current_figures(db: Database, merchant_id: str, now: datetime) -> tuple[DashboardFigures, bool]:
    """The figures, and whether they come from the cache.

    A large merchant's figures (a second or more to compute) are kept for a
    minute in this process, and only as long as nothing of the merchant was
    changed: a new audit entry computes them afresh. What only time changes
    (an access period running out) shows up within the minute.
    """
    key = (db.url, merchant_id)
    version = await latest_change(db, merchant_id)
    kept = _cache.get(key)
    if kept is not None and kept[0] == version and timedelta(0) <= now - kept[1].now < KEEP_FOR:
        return kept[1], True
    started = time.monotonic()
    figures = await _read(db, lambda session: dashboard_figures(session, merchant_id, now))
    if time.monotonic() - started >= SLOW_SECONDS:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = (version, figures)
    else:
        _cache.pop(key, None)
    return figures, False
