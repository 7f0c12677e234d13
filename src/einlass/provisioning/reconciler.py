"""Make each push target hold exactly the members who may enter its areas (invariant 4).

For one target: read the desired state from the database (one set-based query),
read what the target holds, compute the difference, write when there is one,
and record what was found on the target row and, when something changed, in the
audit log. No database transaction stays open while a remote server is talked
to, and a payment's transaction only enqueues the job that gets here.

Reconciliations of one target never overlap: a PostgreSQL advisory lock (an
in-process lock on SQLite) serialises them, and each one reads the database
after taking it. So the last write is always made from the newest state, and
every change, which enqueues a job after it commits, is followed by a
reconciliation that sees it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Select, and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.config import Settings
from einlass.crypto import decrypt_json
from einlass.db.engine import Database
from einlass.members.access import GrantWindow, MemberStanding, access_until, may_enter
from einlass.members.models import Grant, Member
from einlass.provisioning import htpasswd
from einlass.provisioning.base import Drift, EntitledMember, TargetUnreachable
from einlass.provisioning.hashing import read_only_session, target_scheme_key
from einlass.provisioning.models import (
    HTPASSWD_KINDS,
    TARGET_WEBHOOK,
    MemberPushHash,
    ProvisioningTarget,
    TargetArea,
)
from einlass.provisioning.transports import transport_for

log = structlog.get_logger(__name__)

STATUS_PENDING = "pending"
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_UNREACHABLE = "unreachable"
STATUS_NOT_BUILT = "not_built"
FAILED_STATUSES = (STATUS_ERROR, STATUS_UNREACHABLE)
WEBHOOKS_NOT_BUILT = "webhook targets are not built yet: nothing was sent"


@dataclass
class ReconcileResult:
    target_id: str
    name: str
    kind: str
    status: str
    drift: Drift = field(default_factory=Drift)
    written: bool = False  # the target was written (it differed)
    members: int = 0  # members the target lists after this run
    problems: list[str] = field(default_factory=list)  # unreadable lines, unwritable usernames
    error: str | None = None
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def drift_document(self) -> dict[str, Any]:
        return {**self.drift.as_dict(), "problems": self.problems}

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": "reconciliation",
            "target": self.target_id,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "written": self.written,
            "members": self.members,
            "drift": self.drift_document(),
            "error": self.error,
            "duration_ms": round(self.duration_s * 1000, 1),
        }


class ReconcileFailed(Exception):
    """Some targets failed; raised by the job so that the outbox retries with backoff."""

    def __init__(self, results: list[ReconcileResult]) -> None:
        self.results = results
        super().__init__(
            "; ".join(f"target {r.name!r} ({r.target_id}) {r.status}: {r.error}" for r in results)
        )


# --- the desired state ------------------------------------------------------------------------


def _entitled_query(
    merchant_id: str, target_id: str, at: datetime, scheme: str | None, with_contact: bool
) -> Select[Any]:
    """The one set-based query: grants of the target's areas not over at ``at``, members neither
    locked nor deleted, their push hash in ``scheme``; one row per grant, in member-id order."""
    columns: list[Any] = [
        Member.id,
        Member.username,
        Member.email if with_contact else literal(None),
        Member.name if with_contact else literal(None),
        MemberPushHash.hash if scheme else literal(None),
        Grant.area_id,
        Grant.starts_at,
        Grant.ends_at,
        Grant.revoked_at,
    ]
    query = (
        select(*columns)
        .select_from(Grant)
        .join(
            TargetArea,
            and_(
                TargetArea.area_id == Grant.area_id,
                TargetArea.target_id == target_id,
                TargetArea.merchant_id == merchant_id,
            ),
        )
        .join(Member, and_(Member.id == Grant.member_id, Member.merchant_id == merchant_id))
        .where(
            Grant.merchant_id == merchant_id,
            Member.locked_at.is_(None),
            Member.deleted_at.is_(None),
            # Grants that start later too: access_until chains an extension onto the current grant.
            or_(Grant.ends_at.is_(None), Grant.ends_at > at),
            or_(Grant.revoked_at.is_(None), Grant.revoked_at > at),
        )
        .order_by(Member.id)
    )
    if scheme:
        query = query.outerjoin(
            MemberPushHash,
            and_(
                MemberPushHash.member_id == Member.id,
                MemberPushHash.merchant_id == merchant_id,
                MemberPushHash.scheme == scheme,
            ),
        )
    return query


# (member_id, username, email, name, push_hash), and the member's covering grants.
_Group = tuple[Sequence[Any], list[GrantWindow]]


# Rows handed on at a time (fetched from the server ``batch`` at a time). Fewer than the
# garbage collector's first threshold (700 new objects): rows that die before a
# collection runs cost none, a million rows promoted to the older generations cost
# full collections over the whole heap.
_PARTITION = 500


class _Grouper:
    """Groups rows (one per grant, in member order) by member, across fetched batches."""

    def __init__(self) -> None:
        self.head: Sequence[Any] | None = None
        self.windows: list[GrantWindow] = []

    def feed(self, rows: Sequence[Sequence[Any]]) -> Iterator[_Group]:
        """The members completed by ``rows``; the last one may go on in the next batch."""
        for row in rows:
            if self.head is None or self.head[0] != row[0]:
                if self.head is not None:
                    yield self.head, self.windows
                self.head, self.windows = row, []
            self.windows.append(GrantWindow(row[5], row[6], row[7], row[8]))

    def rest(self) -> Iterator[_Group]:
        if self.head is not None:
            yield self.head, self.windows
        self.head, self.windows = None, []


async def _member_groups(
    session: AsyncSession, query: Select[Any], batch: int
) -> AsyncIterator[Iterator[_Group]]:
    """The query's rows grouped by member: one iterator per fetched batch, to be consumed
    before the next.

    Executed as a Core statement on the session's connection (no ORM row
    processing) and streamed with a server-side cursor. Each member is handed
    on as soon as its rows are read and dropped before the next, and rows come
    in small partitions, so what is made per row dies young (see _PARTITION).
    """
    connection = await session.connection()
    result = await connection.stream(query.execution_options(yield_per=batch))
    grouper = _Grouper()
    async for partition in result.partitions(_PARTITION):
        yield grouper.feed(partition)
    yield grouper.rest()


_STANDING = MemberStanding(locked=False, deleted=False)  # the query left out the others


def _open_areas(windows: list[GrantWindow], at: datetime) -> list[str]:
    """The areas the access rule lets the member enter at ``at`` (members/access.py decides)."""
    if len(windows) == 1:  # the common case: one grant
        area = windows[0].area_id
        return [area] if may_enter(_STANDING, windows, area, at) else []
    return [
        area for area in {window.area_id for window in windows} if may_enter(_STANDING, windows, area, at)
    ]


async def iter_entitled(
    session: AsyncSession,
    merchant_id: str,
    target_id: str,
    at: datetime,
    *,
    scheme: str | None = None,
    with_contact: bool = False,
    batch: int = 5000,
) -> AsyncIterator[EntitledMember]:
    """Members who may enter one of the target's areas at ``at``, in member-id order, streamed.

    One query joins the target's areas, the grants that cover ``at``, the members
    that are neither locked nor deleted, and the members' push hashes in
    ``scheme``. The SQL only narrows; the access rule itself (members/access.py)
    decides on the rows it returns.
    """
    query = _entitled_query(merchant_id, target_id, at, scheme, with_contact)
    async for groups in _member_groups(session, query, batch):
        for head, windows in groups:
            open_areas = _open_areas(windows, at)
            if not open_areas:
                continue
            ends = [access_until(windows, area, at) for area in open_areas]
            until = None if any(end is None for end in ends) else max(end for end in ends if end is not None)
            member_id, username, email, name, push_hash = head[:5]
            yield EntitledMember(
                member_id=member_id,
                username=username or "",
                email=email,
                name=name,
                push_hashes={scheme: push_hash} if scheme and push_hash else {},
                until=until,
            )


async def entitled_members(
    session: AsyncSession,
    merchant_id: str,
    target_id: str,
    at: datetime | None = None,
    *,
    scheme: str | None = None,
    with_contact: bool = True,
) -> list[EntitledMember]:
    return [
        member
        async for member in iter_entitled(
            session, merchant_id, target_id, at or clock.now(), scheme=scheme, with_contact=with_contact
        )
    ]


# --- the difference ---------------------------------------------------------------------------


@dataclass
class HtpasswdPlan:
    drift: Drift
    content: bytes
    members: int
    problems: list[str]


def plan_htpasswd(desired: Mapping[str, str], without_hash: list[str], actual: bytes | None) -> HtpasswdPlan:
    """Compare what the file holds with what it should hold. Pure.

    The entries are sorted once (the file's order, and the order of the drift
    lists). The file is rendered first: when it already holds exactly those
    bytes, it holds the entries to keep and nothing else, and needs no parsing.
    """
    ordered = {name: desired[name] for name in sorted(desired)}
    rendered = htpasswd.render(ordered)  # sorts again, a linear pass over sorted keys
    rejected_problems = [
        f"username {name!r} cannot be written: {htpasswd.username_problem(name) or 'bad hash'}"
        for name in rendered.rejected
    ]
    without = sorted(without_hash)
    if actual is not None and actual == rendered.content:
        return HtpasswdPlan(
            drift=Drift(without_hash=without),
            content=rendered.content,
            members=rendered.written,
            problems=rejected_problems,
        )
    parsed = htpasswd.parse(actual)
    problems = list(parsed.problems)
    problems += [f"duplicate username {name!r}" for name in parsed.duplicates]
    problems += rejected_problems
    rejected = set(rendered.rejected)
    keep = {name: value for name, value in ordered.items() if name not in rejected} if rejected else ordered
    entries = parsed.entries
    ignored = set(without_hash)  # entitled, known to be missing for want of a hash
    drift = Drift(
        unexpected=sorted(name for name in entries if name not in keep and name not in ignored),
        missing=[name for name in keep if name not in entries],  # keep is sorted
        changed=[name for name, value in keep.items() if name in entries and entries[name] != value],
        without_hash=without,
    )
    return HtpasswdPlan(drift=drift, content=rendered.content, members=rendered.written, problems=problems)


# --- one target -------------------------------------------------------------------------------


_local_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def target_lock(db: Database, target_id: str) -> AsyncIterator[None]:
    """Only one reconciliation of a target at a time, across processes on PostgreSQL."""
    locks = _local_locks.setdefault(asyncio.get_running_loop(), {})
    async with locks.setdefault(target_id, asyncio.Lock()):
        if db.is_sqlite:
            yield
            return
        key = int.from_bytes(
            hashlib.sha256(f"einlass/target/{target_id}".encode()).digest()[:8], "big", signed=True
        )
        # A transaction-level lock: released by commit or rollback, whatever happens in between.
        async with db.engine.connect() as connection, connection.begin():
            await connection.execute(select(func.pg_advisory_xact_lock(key)))
            yield


@dataclass
class _Loaded:
    target: ProvisioningTarget
    secrets: dict[str, Any]


async def _load_target(
    session: AsyncSession, settings: Settings, merchant_id: str, target_id: str
) -> _Loaded | None:
    target = await session.scalar(
        select(ProvisioningTarget).where(
            ProvisioningTarget.id == target_id, ProvisioningTarget.merchant_id == merchant_id
        )
    )
    if target is None:
        return None
    secrets = decrypt_json(settings.secret_key, target.encrypted_secrets) if target.encrypted_secrets else {}
    return _Loaded(target, secrets)


async def reconcile_target(
    db: Database, settings: Settings, merchant_id: str, target_id: str, actor: Actor
) -> ReconcileResult | None:
    """Reconcile one target now; None when it does not exist (any more). Never raises for
    the target's own failures: they are in the result and on the target row."""
    started = time.perf_counter()
    async with target_lock(db, target_id):
        at = clock.now()
        desired: _Desired | None = None
        try:
            async with read_only_session(db) as session:
                loaded = await _load_target(session, settings, merchant_id, target_id)
                if loaded is None:
                    return None
                target = loaded.target
                result = ReconcileResult(target.id, target.name, target.kind, STATUS_OK)
                if target.kind in HTPASSWD_KINDS:
                    desired = await _htpasswd_desired(session, merchant_id, target, at)
        except Exception as error:
            return await _failed_before_start(db, merchant_id, target_id, error, started)
        try:
            if desired is not None:
                await _push_htpasswd(result, transport_for(target, loaded.secrets), desired)
            elif target.kind == TARGET_WEBHOOK:
                await _push_webhook(db, settings, result, loaded, at)
            else:
                raise ValueError(f"unknown target kind {target.kind!r}")
        except TargetUnreachable as error:
            result.status, result.error = STATUS_UNREACHABLE, str(error)
        except Exception as error:
            log.exception("reconciliation failed", target_id=target.id, merchant_id=merchant_id)
            result.status, result.error = STATUS_ERROR, f"{type(error).__name__}: {error}"
        result.duration_s = time.perf_counter() - started
        await _record(db, merchant_id, result, at, actor)
    log.info(
        "target reconciled",
        target_id=result.target_id,
        status=result.status,
        written=result.written,
        members=result.members,
        duration_ms=round(result.duration_s * 1000, 1),
        **{key: len(value) for key, value in result.drift.as_dict().items()},
    )
    return result


@dataclass
class _Desired:
    hashes: dict[str, str]  # username -> hash
    without_hash: list[str]


async def _htpasswd_desired(
    session: AsyncSession, merchant_id: str, target: ProvisioningTarget, at: datetime
) -> _Desired:
    """Username -> hash of the members the target lists; the rows of ``iter_entitled``, without
    building an ``EntitledMember`` per member (a file needs no contact data nor end dates)."""
    scheme = target_scheme_key(target.config or {})
    desired = _Desired({}, [])
    hashes, without_hash = desired.hashes, desired.without_hash
    query = _entitled_query(merchant_id, target.id, at, scheme, with_contact=False)
    async for groups in _member_groups(session, query, 5000):
        for (member_id, username, _email, _name, push_hash, *_grant), windows in groups:
            if not _open_areas(windows, at):
                continue
            if push_hash:
                hashes[username or ""] = push_hash
            else:
                without_hash.append(username or member_id)
    return desired


async def _push_htpasswd(result: ReconcileResult, transport: Any, desired: _Desired) -> None:
    actual = await transport.read()
    plan = plan_htpasswd(desired.hashes, desired.without_hash, actual)
    result.drift, result.members, result.problems = plan.drift, plan.members, plan.problems
    if actual != plan.content:
        await transport.write_atomic(plan.content)
        result.written = True


WebhookHook = Callable[..., Any]


def _webhook_hook() -> WebhookHook | None:
    """``einlass.provisioning.webhooks.reconcile_webhook_target``, once it is built.

    Its contract: ``async def reconcile_webhook_target(db, settings, target, secrets,
    desired: list[EntitledMember]) -> Drift``; it raises TargetUnreachable when the
    receiver cannot be reached. Status, audit and last_drift are kept here.
    """
    try:
        module = importlib.import_module("einlass.provisioning.webhooks")
    except ImportError:
        return None
    hook: WebhookHook | None = getattr(module, "reconcile_webhook_target", None)
    return hook


async def _push_webhook(
    db: Database, settings: Settings, result: ReconcileResult, loaded: _Loaded, at: datetime
) -> None:
    hook = _webhook_hook()
    if hook is None:
        result.status, result.error = STATUS_NOT_BUILT, WEBHOOKS_NOT_BUILT
        return
    async with read_only_session(db) as session:
        desired = await entitled_members(session, loaded.target.merchant_id, loaded.target.id, at)
    drift: Drift = await hook(db, settings, loaded.target, loaded.secrets, desired)
    result.drift, result.members, result.written = drift, len(desired), drift.any


async def _failed_before_start(
    db: Database, merchant_id: str, target_id: str, error: Exception, started: float
) -> ReconcileResult:
    """The target's config or secrets could not be read: a setup error, recorded on the row."""
    log.exception("reconciliation could not start", target_id=target_id, merchant_id=merchant_id)
    async with db.transaction() as session:
        target = await session.scalar(
            select(ProvisioningTarget).where(
                ProvisioningTarget.id == target_id, ProvisioningTarget.merchant_id == merchant_id
            )
        )
        name, kind = (target.name, target.kind) if target else ("?", "?")
    result = ReconcileResult(
        target_id,
        name,
        kind,
        STATUS_ERROR,
        error=f"{type(error).__name__}: {error}",
        duration_s=time.perf_counter() - started,
    )
    await _record(db, merchant_id, result, clock.now())
    return result


async def _record(
    db: Database, merchant_id: str, result: ReconcileResult, at: datetime, actor: Actor | None = None
) -> None:
    values: dict[str, Any] = {"status": result.status, "last_attempt_at": at, "updated_at": at}
    changed = result.written or result.drift.any
    if result.failed:
        values.update(
            last_error=(result.error or "")[:2000],
            consecutive_failures=ProvisioningTarget.consecutive_failures + 1,
        )
    else:
        values.update(last_error=result.error, consecutive_failures=0)
        if result.status == STATUS_OK:
            values["last_reconciled_at"] = at
        if changed:
            values["last_drift"] = {"at": at.isoformat(), **result.drift_document()}
    async with db.transaction() as session:
        await session.execute(
            update(ProvisioningTarget)
            .where(ProvisioningTarget.id == result.target_id, ProvisioningTarget.merchant_id == merchant_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if changed and not result.failed and actor is not None:
            record(
                session,
                merchant_id=merchant_id,
                actor=actor,
                action="target.drift",
                entity_kind="target",
                entity_id=result.target_id,
                after={**result.drift_document(), "written": result.written, "members": result.members},
            )


# --- all targets of a merchant ----------------------------------------------------------------


async def enabled_target_ids(session: AsyncSession, merchant_id: str) -> list[str]:
    rows = await session.scalars(
        select(ProvisioningTarget.id)
        .where(ProvisioningTarget.merchant_id == merchant_id, ProvisioningTarget.enabled.is_(True))
        .order_by(ProvisioningTarget.name)
    )
    return list(rows)


async def reconcile_merchant(
    db: Database,
    settings: Settings,
    merchant_id: str,
    actor: Actor,
    *,
    on_result: Callable[[ReconcileResult], None] | None = None,
) -> list[ReconcileResult]:
    """Reconcile every enabled target of the merchant, each on its own: one failing target
    does not keep the others from converging."""
    async with read_only_session(db) as session:
        target_ids = await enabled_target_ids(session, merchant_id)
    results = []
    for target_id in target_ids:
        result = await reconcile_target(db, settings, merchant_id, target_id, actor)
        if result is not None:
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
