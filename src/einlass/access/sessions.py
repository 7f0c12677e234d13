"""Member sessions, login throttling and the login CSRF token: the service behind the member pages.

A session is a ``MemberSession`` row; the member's browser holds a random token
in the ``einlass_session`` cookie and the table holds only its sha256, which is
what the forward-auth cache looks up. Ending a session sets ``revoked_at`` and
writes an access change in the same transaction, so every process drops the
session from its cache within the poll interval.

Failed logins are ``LoginFailure`` rows under two keys, one per username and
one per client address. An attempt writes its rows *before* the password is
checked and counts afterwards, so concurrent guesses cannot slip past the
limit; a successful attempt removes its rows again (and the username's
failures), a refused one too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from einlass import clock
from einlass.access.models import LoginFailure, MemberSession
from einlass.audit.service import Actor, record
from einlass.crypto import hash_password, verify_password
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.members.models import Member
from einlass.members.service import access_changed
from einlass.tenants.models import DEFAULT_MERCHANT_SETTINGS, Merchant
from einlass.tenants.service import member_page_setting_problem

REASON_REVOKED = "session.revoked"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
# Sessions that ended this long ago are deleted when the member logs in again.
_KEEP_ENDED = timedelta(days=1)
# last_seen_at is written at most this often per session.
_TOUCH_EVERY = timedelta(minutes=1)


def member_actor(member_id: str) -> Actor:
    return Actor("member", member_id)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PageSettings:
    """The merchant's member page settings; a stored value that is broken reads as the default."""

    session_lifetime: timedelta
    cookie_path: str
    cookie_domain: str | None
    allowed_hosts: frozenset[str]
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    failures_per_username: int
    failures_per_address: int
    failure_window: timedelta
    locale: str


def _setting(merchant: Merchant, key: str) -> Any:
    value = merchant.setting(key)
    return DEFAULT_MERCHANT_SETTINGS[key] if member_page_setting_problem(key, value) else value


def page_settings(merchant: Merchant) -> PageSettings:
    locale = merchant.setting("locale")
    return PageSettings(
        session_lifetime=timedelta(days=_setting(merchant, "session_lifetime_days")),
        cookie_path=_setting(merchant, "cookie_path"),
        cookie_domain=_setting(merchant, "cookie_domain") or None,
        allowed_hosts=frozenset(_setting(merchant, "allowed_hosts")),
        trusted_proxies=tuple(
            ipaddress.ip_network(value, strict=False) for value in _setting(merchant, "trusted_proxies")
        ),
        failures_per_username=_setting(merchant, "login_failures_per_username"),
        failures_per_address=_setting(merchant, "login_failures_per_address"),
        failure_window=timedelta(minutes=_setting(merchant, "login_failure_window_minutes")),
        locale=locale if locale in ("en", "de") else "en",
    )


# --------------------------------------------------------------------------- sessions


def token_digest(token: str) -> str:
    """What the table stores and the forward-auth cache looks up (``AccessCache.session_key``)."""
    return hashlib.sha256(token.encode()).hexdigest()


def plausible_token(token: str | None) -> bool:
    return token is not None and _TOKEN.fullmatch(token) is not None


@dataclass(frozen=True)
class IssuedSession:
    row: MemberSession
    token: str  # for the cookie; never stored


async def start_session(
    session: AsyncSession,
    merchant: Merchant,
    member: Member,
    *,
    lifetime: timedelta,
    user_agent: str | None,
) -> IssuedSession:
    now = clock.now()
    # The member's long-ended sessions go; nothing reads them any more.
    await session.execute(
        delete(MemberSession).where(
            MemberSession.merchant_id == merchant.id,
            MemberSession.member_id == member.id,
            or_(
                MemberSession.expires_at <= now - _KEEP_ENDED,
                MemberSession.revoked_at <= now - _KEEP_ENDED,
            ),
        )
    )
    token = secrets.token_urlsafe(32)
    row = MemberSession(
        id=new_id("ses"),
        merchant_id=merchant.id,
        member_id=member.id,
        token_digest=token_digest(token),
        csrf_token=secrets.token_urlsafe(32),
        user_agent=clean_text(user_agent, 300),
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
        revoked_at=None,
    )
    session.add(row)
    record(
        session,
        merchant_id=merchant.id,
        actor=member_actor(member.id),
        action="session.created",
        entity_kind="session",
        entity_id=row.id,
        member_id=member.id,
        after={"expires_at": row.expires_at.isoformat()},
    )
    return IssuedSession(row, token)


async def current_session(
    session: AsyncSession, merchant_id: str, token: str | None
) -> tuple[MemberSession, Member] | None:
    """The live session this cookie token belongs to, with its member; None for anything else.

    A session of a locked or deleted member counts as none: the pages treat
    such a member as logged out, as the forward-auth check refuses them.
    """
    if token is None or not plausible_token(token):
        return None
    row = (
        await session.execute(
            select(MemberSession, Member)
            .join(Member, Member.id == MemberSession.member_id)
            .where(
                MemberSession.token_digest == token_digest(token),
                MemberSession.merchant_id == merchant_id,
                Member.merchant_id == merchant_id,
                MemberSession.revoked_at.is_(None),
                MemberSession.expires_at > clock.now(),
            )
        )
    ).first()
    if row is None:
        return None
    member_session, member = row
    if member.locked_at is not None or member.deleted_at is not None:
        return None
    return member_session, member


def touch(member_session: MemberSession) -> None:
    """Note that the session was used (at most once a minute, to keep page views from writing)."""
    now = clock.now()
    if now - member_session.last_seen_at >= _TOUCH_EVERY:
        member_session.last_seen_at = now


async def end_session(session: AsyncSession, member_session: MemberSession, actor: Actor) -> None:
    if member_session.revoked_at is not None:
        return
    member_session.revoked_at = clock.now()
    record(
        session,
        merchant_id=member_session.merchant_id,
        actor=actor,
        action=REASON_REVOKED,
        entity_kind="session",
        entity_id=member_session.id,
        member_id=member_session.member_id,
    )
    await access_changed(session, member_session.merchant_id, member_session.member_id, REASON_REVOKED)


async def end_other_sessions(
    session: AsyncSession, merchant_id: str, member_id: str, keep_id: str | None, actor: Actor
) -> int:
    """End every live session of the member except ``keep_id``; returns how many ended."""
    now = clock.now()
    query = select(MemberSession.id).where(
        MemberSession.merchant_id == merchant_id,
        MemberSession.member_id == member_id,
        MemberSession.revoked_at.is_(None),
        MemberSession.expires_at > now,
    )
    if keep_id is not None:
        query = query.where(MemberSession.id != keep_id)
    ended = list(await session.scalars(query.with_for_update()))
    if ended:
        await session.execute(
            update(MemberSession)
            .where(MemberSession.merchant_id == merchant_id, MemberSession.id.in_(ended))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        record(
            session,
            merchant_id=merchant_id,
            actor=actor,
            action="session.revoked_others",
            entity_kind="member",
            entity_id=member_id,
            member_id=member_id,
            after={"sessions": sorted(ended)},
        )
        await access_changed(session, merchant_id, member_id, REASON_REVOKED)
    return len(ended)


def clean_text(value: str | None, limit: int) -> str | None:
    """Printable characters only (no NUL, which PostgreSQL refuses), cut to ``limit``."""
    if value is None:
        return None
    cleaned = "".join(char for char in value[: limit * 2] if char.isprintable())[:limit]
    return cleaned or None


# --------------------------------------------------------------------------- passwords

_dummy_hash: str | None = None


async def _dummy() -> str:
    """An argon2 hash of nothing anyone knows, made once with the hasher's current parameters."""
    global _dummy_hash
    if _dummy_hash is None:
        # Two first logins at once may both make one; either will do.
        _dummy_hash = await asyncio.to_thread(hash_password, secrets.token_urlsafe(32))
    return _dummy_hash


async def password_matches(member: Member | None, password: str) -> bool:
    """Whether ``member`` may log in with ``password``, always at the cost of one argon2 check.

    No member, no password set, locked or deleted: the check runs against a
    dummy hash all the same, so the answer takes as long as for a member.
    """
    stored = member.password_hash if member is not None else None
    valid = await asyncio.to_thread(verify_password, password, stored or await _dummy())
    return (
        valid
        and member is not None
        and stored is not None
        and member.locked_at is None
        and member.deleted_at is None
    )


async def member_by_username(session: AsyncSession, merchant_id: str, username: str) -> Member | None:
    normalized = username.strip().lower()
    if not normalized or len(normalized) > 320 or clean_text(normalized, 320) != normalized:
        return None
    return await session.scalar(
        select(Member).where(Member.merchant_id == merchant_id, Member.username == normalized)
    )


# --------------------------------------------------------------------------- login throttling


def _failure_key(secret_key: str, kind: str, value: str) -> str:
    # Keyed, so that the table does not reveal which usernames or addresses failed.
    key = hmac.new(secret_key.encode(), b"einlass/login-failures", hashlib.sha256).digest()
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()


def username_key(secret_key: str, username: str) -> str:
    return _failure_key(secret_key, "username", username.strip().lower())


def address_key(secret_key: str, address: str) -> str:
    """IPv6 clients are counted per /64, the block one subscriber usually gets."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return _failure_key(secret_key, "address", address[:100])
    value = str(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        value = str(mapped) if mapped is not None else str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return _failure_key(secret_key, "address", value)


@dataclass(frozen=True)
class Attempt:
    merchant_id: str
    username_key: str
    address_key: str
    row_ids: tuple[str, ...]


async def begin_attempt(db: Database, merchant_id: str, user_key: str, addr_key: str) -> Attempt:
    """Count this attempt as a failure until it succeeds (committed before the password check)."""
    now = clock.now()
    ids = (new_id("lgf"), new_id("lgf"))
    async with db.transaction() as session:
        session.add_all(
            [
                LoginFailure(id=ids[0], merchant_id=merchant_id, key=user_key, at=now),
                LoginFailure(id=ids[1], merchant_id=merchant_id, key=addr_key, at=now),
            ]
        )
    return Attempt(merchant_id, user_key, addr_key, ids)


async def retry_after(db: Database, attempt: Attempt, limits: PageSettings) -> int | None:
    """Seconds until the attempt could go ahead when a limit is reached, else None.

    Counts every failure in the window, this attempt's included: with a limit
    of 5, five failures are allowed and the sixth attempt is refused.
    """
    now = clock.now()
    since = now - limits.failure_window
    async with db.reader.connect() as connection:
        rows = (
            await connection.execute(
                select(LoginFailure.key, LoginFailure.at).where(
                    LoginFailure.merchant_id == attempt.merchant_id,
                    LoginFailure.key.in_((attempt.username_key, attempt.address_key)),
                    LoginFailure.at > since,
                )
            )
        ).all()
    waits = [
        _wait([clock.as_utc(at) for key, at in rows if key == failure_key], limit, limits.failure_window, now)
        for failure_key, limit in (
            (attempt.username_key, limits.failures_per_username),
            (attempt.address_key, limits.failures_per_address),
        )
    ]
    longest = max((wait for wait in waits if wait is not None), default=None)
    return longest


def _wait(moments: Sequence[datetime], limit: int, window: timedelta, now: datetime) -> int | None:
    if len(moments) <= limit:
        return None
    # Once this many of the oldest have left the window, the count is back within the limit.
    leaving = len(moments) - limit
    free_at = sorted(moments)[leaving - 1] + window
    return max(1, math.ceil((free_at - now).total_seconds()))


async def forget_attempt(db: Database, attempt: Attempt) -> None:
    """The attempt was refused unchecked: it is no failure."""
    async with db.transaction() as session:
        await forget_in(session, attempt, username_failures=False)


async def forget_in(session: AsyncSession, attempt: Attempt, *, username_failures: bool) -> None:
    """Remove the attempt's rows; with ``username_failures`` (a success) the username's failures too."""
    condition: ColumnElement[bool] = LoginFailure.id.in_(attempt.row_ids)
    if username_failures:
        condition = or_(condition, LoginFailure.key == attempt.username_key)
    await session.execute(
        delete(LoginFailure).where(LoginFailure.merchant_id == attempt.merchant_id, condition)
    )


async def prune_failures(db: Database, merchant_id: str, window: timedelta) -> None:
    """Failures older than the window count for nothing any more."""
    async with db.transaction() as session:
        await session.execute(
            delete(LoginFailure).where(
                LoginFailure.merchant_id == merchant_id, LoginFailure.at <= clock.now() - window
            )
        )


# --------------------------------------------------------------------------- login form CSRF

CSRF_LIFETIME = timedelta(hours=12)


def _csrf_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"einlass/login-csrf", hashlib.sha256).digest()


def new_login_csrf(secret_key: str) -> str:
    """``timestamp.nonce.signature``: the value of both the login CSRF cookie and the form field."""
    payload = f"{int(clock.now().timestamp())}.{secrets.token_urlsafe(18)}"
    signature = hmac.new(_csrf_key(secret_key), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{signature}"


def login_csrf_valid(secret_key: str, token: str | None) -> bool:
    """A token this instance signed, not older than ``CSRF_LIFETIME``."""
    if not token or len(token) > 200:
        return False
    payload, _, signature = token.rpartition(".")
    timestamp, _, nonce = payload.partition(".")
    if not timestamp.isdigit() or not nonce or len(timestamp) > 12:
        return False
    expected = hmac.new(_csrf_key(secret_key), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return False
    age = clock.now().timestamp() - int(timestamp)
    return -300 <= age <= CSRF_LIFETIME.total_seconds()


def double_submit_valid(secret_key: str, cookie: str | None, field: str | None) -> bool:
    """The login form's check: the field repeats the cookie, and the cookie is one we signed."""
    if not cookie or not field:
        return False
    same = hmac.compare_digest(cookie.encode("utf-8", "replace"), field.encode("utf-8", "replace"))
    return same and login_csrf_valid(secret_key, cookie)


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
