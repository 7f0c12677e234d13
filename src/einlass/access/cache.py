"""The per-process cache behind the forward-auth endpoint (the hot path).

Decisions are computed from cached members and grants with the pure access
rule; nothing here touches the ORM. A cache entry goes when the access change
log names its member: every process polls the log every ``poll_interval_s``,
so a revocation reaches every process within that interval plus one query
(the staleness bound, measured by bench/access_check.py). Entries also expire
after ``ttl_s`` as a safety net. Times that end a grant need no invalidation:
the rule is evaluated against the clock on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select

from einlass import clock
from einlass.access.models import AccessChange, MemberSession
from einlass.billing.models import Area, Payment, Plan
from einlass.billing.subscriptions.models import Subscription
from einlass.crypto import verify_password
from einlass.db.engine import Database
from einlass.members.access import GrantWindow
from einlass.members.models import GRANT_SOURCE_PAYMENT, GRANT_SOURCE_SUBSCRIPTION, Grant, Member
from einlass.tenants.models import Merchant

log = structlog.get_logger(__name__)

# How far back each poll reads the change log: a transaction that commits this
# long after writing its change row is still seen (later ones by the ttl).
CHANGE_LOG_OVERLAP = timedelta(seconds=3)


@dataclass(frozen=True)
class PlanGrant(GrantWindow):
    plan: str


@dataclass(frozen=True)
class MemberEntry:
    id: str
    merchant_id: str
    username: str | None
    password_hash: str | None
    locked: bool
    deleted: bool
    grants: tuple[PlanGrant, ...]
    loaded_at: float


@dataclass(frozen=True)
class MerchantEntry:
    id: str
    slug: str
    name: str
    areas: dict[str, str]  # slug -> id
    loaded_at: float


@dataclass(frozen=True)
class SessionEntry:
    member_id: str
    merchant_id: str
    expires_at: datetime


@dataclass
class AccessCache:
    db: Database
    secret_key: str
    ttl_s: float = 30.0
    poll_interval_s: float = 0.25
    # Basic credentials that failed stay refused this long without a new hash check.
    rejected_ttl_s: float = 1.0
    merchants: dict[str, MerchantEntry] = field(default_factory=dict)
    members: dict[str, MemberEntry] = field(default_factory=dict)
    # keyed digest -> (member id, the stored hash the password was checked against)
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    rejected: dict[str, float] = field(default_factory=dict)  # keyed digest -> until (monotonic)
    sessions: dict[str, SessionEntry] = field(default_factory=dict)
    _by_member: dict[str, set[str]] = field(default_factory=dict)  # member id -> credential/session keys
    _seen_changes: dict[int, int] = field(default_factory=dict)  # change id -> poll that saw it
    _polls: int = 0
    # When each member was last invalidated (monotonic): a load that started
    # before then may have read the old state and is not kept.
    _invalidated_at: dict[str, float] = field(default_factory=dict)
    _polled_since: datetime | None = None

    # -- keys -------------------------------------------------------------------------------

    def credential_key(self, merchant_id: str, username: str, password: str) -> str:
        """A keyed digest: the cache never holds the password, and the key cannot be reversed."""
        message = f"{merchant_id}\0{username}\0{password}".encode()
        return hmac.new(self.secret_key.encode(), message, hashlib.sha256).hexdigest()

    @staticmethod
    def session_key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    # -- lookups ------------------------------------------------------------------------------

    async def merchant(self, slug: str, area_slug: str | None = None) -> MerchantEntry | None:
        entry = self.merchants.get(slug)
        stale = entry is None or time.monotonic() - entry.loaded_at > self.ttl_s
        if stale or (area_slug is not None and entry is not None and area_slug not in entry.areas):
            entry = await self._load_merchant(slug)
        return entry

    async def member(self, member_id: str) -> MemberEntry | None:
        entry = self.members.get(member_id)
        if entry is None or time.monotonic() - entry.loaded_at > self._member_ttl(member_id):
            entry = await self._load_member(member_id)
        return entry

    def _member_ttl(self, member_id: str) -> float:
        """Between 0.75 and 1.25 ttl_s, fixed per member: members loaded together
        (after a restart) do not all reload in the same instant."""
        spread = zlib.crc32(member_id.encode()) % 1000 / 2000
        return self.ttl_s * (0.75 + spread)

    async def by_basic(self, merchant: MerchantEntry, username: str, password: str) -> MemberEntry | None:
        """The member these credentials belong to, or None; each pair is hashed once."""
        key = self.credential_key(merchant.id, username, password)
        known = self.credentials.get(key)
        if known is not None:
            member = await self.member(known[0])
            # Even if an invalidation were missed, a reloaded member with another
            # hash (after ttl_s at most) sends the pair back to a real check.
            if member is not None and member.password_hash == known[1]:
                return member
            self.credentials.pop(key, None)
        refused_until = self.rejected.get(key)
        if refused_until is not None and refused_until > time.monotonic():
            return None
        started = time.monotonic()
        member = await self._member_by_username(merchant.id, username)
        if member is None or member.password_hash is None or member.deleted:
            self._refuse(key)
            return None
        if not await asyncio.to_thread(verify_password, password, member.password_hash):
            self._refuse(key)
            return None
        # A password changed while this check was hashing must not be remembered as valid.
        if self._invalidated_at.get(member.id, float("-inf")) < started:
            self.credentials[key] = (member.id, member.password_hash)
            self._by_member.setdefault(member.id, set()).add(key)
        return member

    async def by_session(self, merchant: MerchantEntry, token: str) -> MemberEntry | None:
        key = self.session_key(token)
        entry = self.sessions.get(key)
        if entry is None:
            entry = await self._load_session(key)
            if entry is None:
                return None
        if entry.merchant_id != merchant.id or entry.expires_at <= clock.now():
            return None
        return await self.member(entry.member_id)

    def _refuse(self, key: str) -> None:
        if len(self.rejected) > 100_000:
            self.rejected.clear()
        self.rejected[key] = time.monotonic() + self.rejected_ttl_s

    # -- invalidation -------------------------------------------------------------------------

    def invalidate_member(self, member_id: str) -> None:
        self._invalidated_at[member_id] = time.monotonic()
        self.members.pop(member_id, None)
        for key in self._by_member.pop(member_id, ()):
            self.credentials.pop(key, None)
            self.sessions.pop(key, None)

    def invalidate_merchant(self, merchant_id: str) -> None:
        for slug, entry in list(self.merchants.items()):
            if entry.id == merchant_id:
                del self.merchants[slug]
        for member_id, member in list(self.members.items()):
            if member.merchant_id == merchant_id:
                self.invalidate_member(member_id)

    async def poll_changes(self) -> int:
        """Drop what the change log names; returns how many new changes were seen."""
        now = clock.now()
        # Overlap the window: a change committed late with an earlier timestamp is still seen.
        since = (self._polled_since or now) - CHANGE_LOG_OVERLAP
        query = select(AccessChange.id, AccessChange.merchant_id, AccessChange.member_id).where(
            AccessChange.at >= since
        )
        async with self.db.reader.connect() as connection:
            rows = (await connection.execute(query)).all()
        self._polls += 1
        fresh = 0
        for change_id, merchant_id, member_id in rows:
            if change_id in self._seen_changes:
                continue
            self._seen_changes[change_id] = self._polls
            fresh += 1
            if member_id is None:
                self.invalidate_merchant(merchant_id)
            else:
                self.invalidate_member(member_id)
        self._polled_since = now
        if self._polls % 64 == 0:
            # Ids seen long enough ago have left the window for good.
            horizon = self._polls - 1000
            self._seen_changes = {key: poll for key, poll in self._seen_changes.items() if poll > horizon}
            oldest = time.monotonic() - self.ttl_s
            self._invalidated_at = {key: at for key, at in self._invalidated_at.items() if at >= oldest}
        return fresh

    async def run_poller(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_changes()
            except Exception:
                log.exception("access change poll failed; cached entries still expire after ttl")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_interval_s)

    # -- loading ------------------------------------------------------------------------------

    async def _load_merchant(self, slug: str) -> MerchantEntry | None:
        async with self.db.reader.connect() as connection:
            row = (
                await connection.execute(select(Merchant.id, Merchant.name).where(Merchant.slug == slug))
            ).first()
            if row is None:
                self.merchants.pop(slug, None)
                return None
            areas = await connection.execute(select(Area.slug, Area.id).where(Area.merchant_id == row.id))
            entry = MerchantEntry(row.id, slug, row.name, dict(areas.all()), time.monotonic())
        self.merchants[slug] = entry
        return entry

    async def _member_by_username(self, merchant_id: str, username: str) -> MemberEntry | None:
        async with self.db.reader.connect() as connection:
            member_id = (
                await connection.execute(
                    select(Member.id).where(
                        Member.merchant_id == merchant_id, Member.username == username.strip().lower()
                    )
                )
            ).scalar()
        return None if member_id is None else await self.member(member_id)

    async def _load_member(self, member_id: str) -> MemberEntry | None:
        loaded_at = time.monotonic()
        async with self.db.reader.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        Member.merchant_id,
                        Member.username,
                        Member.password_hash,
                        Member.locked_at,
                        Member.deleted_at,
                    ).where(Member.id == member_id)
                )
            ).first()
            if row is None:
                self.members.pop(member_id, None)
                return None
            grants = await connection.execute(
                select(
                    Grant.area_id,
                    Grant.starts_at,
                    Grant.ends_at,
                    Grant.revoked_at,
                    Grant.source_kind,
                    Plan.slug,
                )
                .outerjoin(
                    Payment,
                    (Grant.source_kind == GRANT_SOURCE_PAYMENT) & (Payment.id == Grant.source_id),
                )
                .outerjoin(
                    Subscription,
                    (Grant.source_kind == GRANT_SOURCE_SUBSCRIPTION) & (Subscription.id == Grant.source_id),
                )
                .outerjoin(Plan, Plan.id == func.coalesce(Payment.plan_id, Subscription.plan_id))
                .where(Grant.merchant_id == row.merchant_id, Grant.member_id == member_id)
            )
            windows = tuple(
                PlanGrant(area_id, starts_at, ends_at, revoked_at, plan or source_kind)
                for area_id, starts_at, ends_at, revoked_at, source_kind, plan in grants
            )
        entry = MemberEntry(
            id=member_id,
            merchant_id=row.merchant_id,
            username=row.username,
            password_hash=row.password_hash,
            locked=row.locked_at is not None,
            deleted=row.deleted_at is not None,
            grants=windows,
            loaded_at=loaded_at,
        )
        if self._invalidated_at.get(member_id, float("-inf")) < loaded_at:
            self.members[member_id] = entry
        return entry

    async def _load_session(self, key: str) -> SessionEntry | None:
        async with self.db.reader.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        MemberSession.member_id, MemberSession.merchant_id, MemberSession.expires_at
                    ).where(MemberSession.token_digest == key, MemberSession.revoked_at.is_(None))
                )
            ).first()
        if row is None:
            return None
        entry = SessionEntry(row.member_id, row.merchant_id, row.expires_at)
        self.sessions[key] = entry
        self._by_member.setdefault(row.member_id, set()).add(key)
        return entry
