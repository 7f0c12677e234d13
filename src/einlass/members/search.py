"""The admin's member list: search, filters and keyset pages that stay fast at a million members.

A page is one query on ``members``, newest first (``id < :starting_after``),
plus one for the page's current access; a search in names takes at most two
(see ``_text_page``). The search text is a member id (exact), the start of an
email address (text with "@", or with "." and no space), or else also words
that start words of the name: "müll" finds "Anna Müller", "anna sch" finds
"Anna Schmidt-Berg". The indexes are declared on ``Member`` (migration 0005):

- ``ix_members_merchant_newest`` (merchant_id, id): the list and its pages;
- ``ix_members_locked``, ``ix_members_deleted``: partial, for the status filter;
- ``ix_members_email_prefix`` (merchant_id, email_normalized varchar_pattern_ops):
  ``email_normalized LIKE 'prefix%'``;
- ``ix_members_name_words`` (PostgreSQL only: GIN on ``to_tsvector('simple', name)``).
  SQLite scans for name words, which is fine at the sizes SQLite serves.

Search patterns are rendered into the SQL text (``literal_execute``) so that
PostgreSQL plans with the pattern itself even for a prepared statement. The
area and plan filters probe the member_id indexes of grants, payments and
subscriptions per member: fast while an area or plan is common among the
merchant's members; a rare one walks many members (see bench/README.md).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from einlass import clock
from einlass.billing.models import Area, Payment
from einlass.billing.subscriptions.models import Subscription
from einlass.members.access import GrantWindow, MemberStanding, may_enter
from einlass.members.models import Grant, Member, grant_covers

PAGE_SIZE = 50
STATUS_ACTIVE = "active"
STATUS_LOCKED = "locked"
STATUS_DELETED = "deleted"
STATUSES = (STATUS_ACTIVE, STATUS_LOCKED, STATUS_DELETED)
MAX_QUERY = 200
# A text search looks at this many of the newest members before it turns to the indexes.
SEARCH_WINDOW = 10_000
MAX_WORDS = 6
# A resource id such as mem_01JH...: looked up exactly, never as a prefix.
ID_PATTERN = re.compile(r"[a-z]{2,8}_[0-9A-Za-z]{16,36}")
_WORD_SPLIT = re.compile(r"[\W_]+")
_TS_CONFIG: sa.ColumnClause[Any] = sa.literal_column("'simple'::regconfig")


@dataclass(frozen=True)
class MemberFilter:
    """What the list shows: ``status`` None means every member that is not deleted."""

    q: str = ""
    status: str | None = None
    area_id: str | None = None
    plan_id: str | None = None


@dataclass(frozen=True)
class MemberRow:
    member: Member
    status: str
    areas: tuple[str, ...]  # slugs of the areas the member may enter now


@dataclass(frozen=True)
class MemberPage:
    rows: list[MemberRow]
    next_after: str | None  # the ``starting_after`` of the next page; None on the last one


def member_status(member: Member) -> str:
    if member.deleted_at is not None:
        return STATUS_DELETED
    return STATUS_LOCKED if member.locked_at is not None else STATUS_ACTIVE


def name_words(query: str) -> list[str]:
    """The words of a name search, lower-cased, as the database's word split sees them."""
    return [word for word in _WORD_SPLIT.split(query.lower()) if word][:MAX_WORDS]


def _inline(value: str) -> sa.BindParameter[str]:
    return sa.bindparam(None, value, type_=sa.String(), literal_execute=True)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _email_prefix(m: type[Member], query: str) -> sa.ColumnElement[bool]:
    return m.email_normalized.like(_inline(_escape_like(query.lower()) + "%"), escape="\\")


def _name_match(m: type[Member], words: list[str], postgresql: bool) -> sa.ColumnElement[bool]:
    name = sa.func.lower(m.name)
    if not postgresql:
        # SQLite: the same word starts, found by scanning (word boundaries: space, hyphen, apostrophe).
        spaced = " " + sa.func.replace(sa.func.replace(name, "-", " "), "'", " ")
        return sa.and_(*(spaced.like(_inline(f"% {word}%")) for word in words))
    # First a cheap test per row, every word is in the name; only then the words of the name.
    tests: list[sa.ColumnElement[bool]] = [sa.func.strpos(name, _inline(word)) != 0 for word in words]
    # The index's test: each word starts a word of the name ('anna':* & 'mü':*); a word holds
    # letters and digits only (name_words), so quoting it is enough.
    tsquery = " & ".join(f"'{word}':*" for word in words)
    document = sa.func.to_tsvector(_TS_CONFIG, m.name)
    tests.append(document.op("@@")(sa.func.to_tsquery(_TS_CONFIG, _inline(tsquery))))
    return sa.and_(*tests)


def _searches_names(query: str) -> bool:
    """Whether the search looks at names: text that is neither a member id nor an email address."""
    query = query.strip()[:MAX_QUERY]
    if not query or ID_PATTERN.fullmatch(query):
        return False
    return not ("@" in query or ("." in query and " " not in query)) and bool(name_words(query))


def _search(m: type[Member], query: str, postgresql: bool) -> sa.ColumnElement[bool] | None:
    query = query.strip()[:MAX_QUERY]
    if not query:
        return None
    if ID_PATTERN.fullmatch(query):
        return m.id == query
    if not _searches_names(query):
        return _email_prefix(m, query)  # anna.m, max@: the start of an email address
    return sa.or_(_email_prefix(m, query), _name_match(m, name_words(query), postgresql))


def _status(m: type[Member], status: str | None) -> sa.ColumnElement[bool]:
    if status == STATUS_DELETED:
        return m.deleted_at.is_not(None)
    if status == STATUS_LOCKED:
        return sa.and_(m.deleted_at.is_(None), m.locked_at.is_not(None))
    if status == STATUS_ACTIVE:
        return sa.and_(m.deleted_at.is_(None), m.locked_at.is_(None))
    return m.deleted_at.is_(None)


def _narrowing(
    m: type[Member],
    merchant_id: str,
    filters: MemberFilter,
    *,
    postgresql: bool,
    at: datetime,
    probe: bool = False,
) -> list[sa.ColumnElement[bool]]:
    """The search and the area and plan filters, on ``m`` (Member or an alias of it).

    ``probe``: the area test looks up each member's grants through their index (a
    subquery with LIMIT 1, which the planner cannot turn into a join), for the few
    members a text search leaves; otherwise the planner may join all of the area's
    grants, which is right when it walks many members for a rare area.
    """
    conditions = []
    search = _search(m, filters.q, postgresql)
    if search is not None:
        conditions.append(search)
    if filters.area_id:
        grant = sa.select(sa.literal(1)).where(
            Grant.member_id == m.id,
            Grant.merchant_id == merchant_id,
            Grant.area_id == filters.area_id,
            grant_covers(at),
        )
        conditions.append(grant.limit(1).scalar_subquery().is_not(None) if probe else sa.exists(grant))
    if filters.plan_id:
        # One correlated EXISTS over both tables: probed per member through their member_id
        # indexes, so a page of a plan that many members have needs a few hundred probes.
        paid = sa.select(sa.literal(1)).where(
            Payment.member_id == m.id,
            Payment.merchant_id == merchant_id,
            Payment.plan_id == filters.plan_id,
        )
        subscribed = sa.select(sa.literal(1)).where(
            Subscription.member_id == m.id,
            Subscription.merchant_id == merchant_id,
            Subscription.plan_id == filters.plan_id,
        )
        conditions.append(sa.exists(sa.union_all(paid, subscribed)))
    return conditions


def member_query(
    merchant_id: str, filters: MemberFilter, *, postgresql: bool, at: datetime
) -> sa.Select[Member]:
    """The members that match, of one merchant, in no particular order, as one statement."""
    return sa.select(Member).where(
        Member.merchant_id == merchant_id,
        _status(Member, filters.status),
        *_narrowing(Member, merchant_id, filters, postgresql=postgresql, at=at),
    )


async def search_members(
    session: AsyncSession,
    merchant_id: str,
    filters: MemberFilter,
    *,
    starting_after: str | None = None,
    limit: int = PAGE_SIZE,
    at: datetime | None = None,
) -> MemberPage:
    """One page of the merchant's members, newest first, with each one's current access."""
    at = at or clock.now()
    postgresql = session.get_bind().dialect.name == "postgresql"
    if _searches_names(filters.q):
        members = await _text_page(session, merchant_id, filters, starting_after, limit + 1, postgresql, at)
    else:
        query = member_query(merchant_id, filters, postgresql=postgresql, at=at)
        if starting_after:
            query = query.where(Member.id < starting_after)
        members = list(await session.scalars(query.order_by(Member.id.desc()).limit(limit + 1)))
    more = len(members) > limit
    members = members[:limit]
    areas = await _current_areas(session, merchant_id, members, at)
    rows = [MemberRow(m, member_status(m), areas.get(m.id, ())) for m in members]
    return MemberPage(rows, members[-1].id if more else None)


async def _text_page(
    session: AsyncSession,
    merchant_id: str,
    filters: MemberFilter,
    starting_after: str | None,
    count: int,
    postgresql: bool,
    at: datetime,
) -> list[Member]:
    """The newest ``count`` members a text search finds, in at most two bounded steps.

    A planner that misjudges how rare a word is either walks every member in id
    order for a word nobody has, or fetches a hundred thousand matches of a
    common one to sort them. So first the newest SEARCH_WINDOW members are
    searched in id order: when they hold a page of matches, that is the page.
    When they do not, the words are rare, and all members are searched through
    the indexes alone (OFFSET 0 keeps the planner from walking the id order).
    """
    base = [Member.merchant_id == merchant_id, _status(Member, filters.status)]
    if starting_after:
        base.append(Member.id < starting_after)
    window = sa.select(Member).where(*base).order_by(Member.id.desc()).limit(SEARCH_WINDOW).subquery()
    recent = aliased(Member, window)
    narrowing = _narrowing(recent, merchant_id, filters, postgresql=postgresql, at=at, probe=True)
    found = list(
        await session.scalars(sa.select(recent).where(*narrowing).order_by(recent.id.desc()).limit(count))
    )
    if len(found) == count:
        return found
    narrowing = _narrowing(Member, merchant_id, filters, postgresql=postgresql, at=at, probe=True)
    matches = sa.select(Member).where(*base, *narrowing).offset(0).subquery()
    every = aliased(Member, matches)
    return list(await session.scalars(sa.select(every).order_by(every.id.desc()).limit(count)))


async def _current_areas(
    session: AsyncSession, merchant_id: str, members: list[Member], at: datetime
) -> dict[str, tuple[str, ...]]:
    """Per member, the slugs of the areas the access rule lets them enter at ``at``."""
    if not members:
        return {}
    result = await session.execute(
        sa.select(Grant.member_id, Grant.area_id, Grant.starts_at, Grant.ends_at, Grant.revoked_at, Area.slug)
        .join(Area, Area.id == Grant.area_id)
        .where(
            Grant.merchant_id == merchant_id,
            Grant.member_id.in_([m.id for m in members]),
            grant_covers(at),
        )
    )
    windows: dict[str, list[GrantWindow]] = defaultdict(list)
    slugs: dict[str, str] = {}
    for member_id, area_id, starts_at, ends_at, revoked_at, slug in result:
        windows[member_id].append(GrantWindow(area_id, starts_at, ends_at, revoked_at))
        slugs[area_id] = slug
    found: dict[str, tuple[str, ...]] = {}
    for member in members:
        standing = MemberStanding(locked=member.locked_at is not None, deleted=member.deleted_at is not None)
        own = windows.get(member.id, [])
        entered = {slugs[w.area_id] for w in own if may_enter(standing, own, w.area_id, at)}
        found[member.id] = tuple(sorted(entered))
    return found
