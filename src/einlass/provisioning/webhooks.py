"""Webhook targets: tell the merchant's own app who may enter, with signed POSTs.

A webhook receiver cannot be read back, so what it was last told is kept per
member in ``PushedMember`` (active, fingerprint of the details sent). A
reconciliation compares the entitled members with that record and sends one
event per member whose state differs:

* ``member.activated``: entitled, and the receiver was not told so;
* ``member.deactivated``: no longer entitled, and the receiver was told it was;
* ``member.updated``: entitled, told so, but the details (username, email,
  name, areas, access end) changed since.

Every event is first written to the delivery log (``WebhookDelivery``), then
POSTed outside any database transaction, signed per Standard Webhooks with the
delivery's id as ``webhook-id``. A 2xx marks the delivery delivered and updates
``PushedMember`` in one transaction. Anything else is recorded on the delivery
and, at the end, raised as ``TargetUnreachable``: the reconciler marks the
target, the outbox retries the job with backoff, and the next run sends only
what is still undelivered, reusing the pending delivery (and so its
``webhook-id`` and body) while the change it carries is still the one to send.

A delivery that was attempted but not confirmed may still have reached the
receiver (a timeout after the receiver acted, a 500 after it committed). Until
a later delivery for the member is confirmed, the receiver's state is
uncertain, and the member's current state is sent again even when the record
says nothing changed. So the receiver converges whatever happened to the
answers it gave.

Docs for receivers: docs/merchant-webhooks.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import __version__, clock, standard_webhooks
from einlass.billing.models import Area
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.members.access import GrantWindow, MemberStanding, may_enter
from einlass.members.models import Grant, Member, grant_covers
from einlass.provisioning.base import Drift, EntitledMember, TargetUnreachable
from einlass.provisioning.hashing import read_only_session
from einlass.provisioning.models import ProvisioningTarget, PushedMember, TargetArea, WebhookDelivery

log = structlog.get_logger(__name__)

EVENT_ACTIVATED = "member.activated"
EVENT_DEACTIVATED = "member.deactivated"
EVENT_UPDATED = "member.updated"
EVENT_TYPES = (EVENT_ACTIVATED, EVENT_DEACTIVATED, EVENT_UPDATED)

DELIVERY_PENDING = "pending"  # written, not attempted yet (or skipped in its run)
DELIVERY_FAILED = "failed"  # attempted, not confirmed; retried by the next run
DELIVERY_DELIVERED = "delivered"  # the receiver answered 2xx
DELIVERY_SUPERSEDED = "superseded"  # replaced by a newer change before it was delivered
DELIVERY_STATUSES = (DELIVERY_PENDING, DELIVERY_FAILED, DELIVERY_DELIVERED, DELIVERY_SUPERSEDED)
OUTSTANDING = (DELIVERY_PENDING, DELIVERY_FAILED)

DELIVERY_ID_PREFIX = "whd"
DEFAULT_TIMEOUT_S = 10.0
# Requests in flight per target at once.
CONCURRENCY = 4
# A run starts no new request after this long; the rest waits for the retry.
# It keeps a slow receiver from holding the worker for ever.
RUN_BUDGET_S = 120.0
# Kept of a failed response's body, for the delivery log.
RESPONSE_SNIPPET_BYTES = 300
USER_AGENT = f"einlass/{__version__} (+https://www.standardwebhooks.com/)"
_CHUNK = 500


# --- what to send: pure -----------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """A member the receiver should hold as active, with the details to send."""

    data: dict[str, Any]
    fingerprint: str
    label: str  # for the drift report: the username, or the member id


@dataclass(frozen=True)
class Told:
    """What the receiver confirmed last (``PushedMember``)."""

    active: bool
    fingerprint: str


@dataclass(frozen=True)
class Outstanding:
    """The newest delivery for a member that is not delivered (pending or failed)."""

    delivery_id: str
    event_type: str
    data: dict[str, Any]
    attempts: int
    payload: dict[str, Any]

    @property
    def attempted(self) -> bool:
        return self.attempts > 0


def member_data(
    member_id: str,
    username: str | None,
    email: str | None,
    name: str | None,
    areas: Iterable[str],
    until: datetime | None,
) -> dict[str, Any]:
    """The ``data`` of an event: JSON-ready, the same document for the same details."""
    return {
        "member_id": member_id,
        "username": username or None,
        "email": email,
        "name": name,
        "areas": sorted(set(areas)),
        "access_until": until.isoformat() if until is not None else None,
    }


def fingerprint(data: Mapping[str, Any]) -> str:
    """SHA-256 hex over the details a receiver sees (everything in ``data`` but the id)."""
    details = {key: value for key, value in data.items() if key != "member_id"}
    canonical = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def next_event(want: Wanted | None, told: Told | None, outstanding: Outstanding | None) -> str | None:
    """The event that brings the receiver to the wanted state, or None when it is there.

    ``want`` None: the member must not be active on the receiver. A delivery that
    was attempted without a 2xx leaves the receiver's state uncertain: then the
    current state is always sent.
    """
    told_active = told is not None and told.active
    uncertain = outstanding is not None and outstanding.attempted
    if want is None:
        return EVENT_DEACTIVATED if told_active or uncertain else None
    if uncertain:
        assert outstanding is not None
        # An outstanding update was planned only while the receiver surely held the member.
        return EVENT_UPDATED if told_active and outstanding.event_type == EVENT_UPDATED else EVENT_ACTIVATED
    if not told_active:
        return EVENT_ACTIVATED
    assert told is not None
    return EVENT_UPDATED if told.fingerprint != want.fingerprint else None


@dataclass
class Send:
    """One delivery to make in this run."""

    delivery_id: str
    member_id: str
    event_type: str
    payload: dict[str, Any]
    fingerprint: str
    attempts: int = 0


@dataclass
class Plan:
    drift: Drift = field(default_factory=Drift)
    create: list[Send] = field(default_factory=list)  # new deliveries to write first
    reuse: list[Send] = field(default_factory=list)  # outstanding deliveries sent again
    supersede: list[str] = field(default_factory=list)  # outstanding deliveries no longer wanted

    @property
    def sends(self) -> list[Send]:
        # Fresh deliveries first: one the receiver keeps refusing must not hold up the others.
        return sorted([*self.create, *self.reuse], key=lambda s: (s.attempts, s.member_id))


def plan(
    wanted: Mapping[str, Wanted],
    told: Mapping[str, Told],
    outstanding: Mapping[str, Sequence[Outstanding]],
    gone: Mapping[str, tuple[dict[str, Any], str]],
    now: datetime,
    new_delivery_id: Any = None,
) -> Plan:
    """Decide every member's event. Pure, but for the ids it makes.

    ``outstanding``: a member's undelivered deliveries, newest first.
    ``gone``: data and label to send in ``member.deactivated`` for members not wanted.
    """
    make_id = new_delivery_id or (lambda: new_id(DELIVERY_ID_PREFIX))
    result = Plan()
    for member_id in sorted({*wanted, *told, *outstanding}):
        want = wanted.get(member_id)
        deliveries = list(outstanding.get(member_id, ()))
        newest = deliveries[0] if deliveries else None
        event_type = next_event(want, told.get(member_id), newest)
        keep: str | None = None
        if event_type is not None:
            if want is not None:
                data, print_, label = want.data, want.fingerprint, want.label
            else:
                data, label = gone[member_id]
                print_ = fingerprint(data)
            if newest is not None and newest.event_type == event_type and newest.data == data:
                keep = newest.delivery_id
                result.reuse.append(
                    Send(keep, member_id, event_type, newest.payload, print_, attempts=newest.attempts)
                )
            else:
                payload = {"type": event_type, "timestamp": now.isoformat(), "data": data}
                result.create.append(Send(make_id(), member_id, event_type, payload, print_))
            {
                EVENT_ACTIVATED: result.drift.missing,
                EVENT_DEACTIVATED: result.drift.unexpected,
                EVENT_UPDATED: result.drift.changed,
            }[event_type].append(label)
        result.supersede.extend(d.delivery_id for d in deliveries if d.delivery_id != keep)
    for names in (result.drift.missing, result.drift.unexpected, result.drift.changed):
        names.sort()
    return result


# --- reading the state ------------------------------------------------------------------------


async def _open_areas(
    session: AsyncSession, merchant_id: str, target_id: str, member_ids: set[str], at: datetime
) -> dict[str, list[str]]:
    """The slugs of the target's areas each member may enter at ``at``: one query."""
    rows = await session.stream(
        select(Grant.member_id, Area.slug, Grant.area_id, Grant.starts_at, Grant.ends_at, Grant.revoked_at)
        .select_from(Grant)
        .join(
            TargetArea,
            and_(
                TargetArea.area_id == Grant.area_id,
                TargetArea.target_id == target_id,
                TargetArea.merchant_id == merchant_id,
            ),
        )
        .join(Area, and_(Area.id == Grant.area_id, Area.merchant_id == merchant_id))
        .where(
            Grant.merchant_id == merchant_id,
            grant_covers(at),
        )
        .execution_options(yield_per=5000)
    )
    standing = MemberStanding(locked=False, deleted=False)  # they are entitled: neither
    areas: dict[str, set[str]] = {}
    async for member_id, slug, area_id, starts_at, ends_at, revoked_at in rows:
        if member_id not in member_ids:
            continue
        window = GrantWindow(area_id=area_id, starts_at=starts_at, ends_at=ends_at, revoked_at=revoked_at)
        if may_enter(standing, [window], area_id, at):
            areas.setdefault(member_id, set()).add(slug)
    return {member_id: sorted(slugs) for member_id, slugs in areas.items()}


async def _told(session: AsyncSession, target: ProvisioningTarget) -> dict[str, Told]:
    rows = await session.execute(
        select(PushedMember.member_id, PushedMember.active, PushedMember.fingerprint).where(
            PushedMember.merchant_id == target.merchant_id, PushedMember.target_id == target.id
        )
    )
    return {member_id: Told(active, print_) for member_id, active, print_ in rows}


async def _outstanding(session: AsyncSession, target: ProvisioningTarget) -> dict[str, list[Outstanding]]:
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.merchant_id == target.merchant_id,
            WebhookDelivery.target_id == target.id,
            WebhookDelivery.status.in_(OUTSTANDING),
            WebhookDelivery.member_id.is_not(None),
        )
        .order_by(WebhookDelivery.id.desc())
    )
    found: dict[str, list[Outstanding]] = {}
    for row in rows:
        assert row.member_id is not None
        payload = dict(row.payload or {})
        found.setdefault(row.member_id, []).append(
            Outstanding(
                delivery_id=row.id,
                event_type=row.event_type,
                data=dict(payload.get("data") or {}),
                attempts=row.attempts,
                payload=payload,
            )
        )
    return found


async def _gone(
    session: AsyncSession, merchant_id: str, member_ids: list[str]
) -> dict[str, tuple[dict[str, Any], str]]:
    """What ``member.deactivated`` carries: the member's details as they are now (none once erased)."""
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for start in range(0, len(member_ids), _CHUNK):
        chunk = member_ids[start : start + _CHUNK]
        rows = await session.execute(
            select(Member.id, Member.username, Member.email, Member.name).where(
                Member.merchant_id == merchant_id, Member.id.in_(chunk)
            )
        )
        for member_id, username, email, name in rows:
            found[member_id] = (
                member_data(member_id, username, email, name, [], None),
                username or member_id,
            )
    for member_id in member_ids:  # a member row that is gone altogether
        found.setdefault(member_id, (member_data(member_id, None, None, None, [], None), member_id))
    return found


# --- sending ----------------------------------------------------------------------------------


def body_of(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed) for a payload; the same payload gives the same bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        standard_webhooks.HEADER_ID: delivery_id,
        standard_webhooks.HEADER_TIMESTAMP: str(timestamp),
        standard_webhooks.HEADER_SIGNATURE: standard_webhooks.sign(secret, delivery_id, timestamp, body),
    }


@dataclass
class Outcome:
    delivered: bool
    response_status: int | None = None
    error: str | None = None
    # The receiver seems down (no answer, 5xx, 429): start no more requests this run.
    receiver_down: bool = False


def _clean(text: str, hidden: Sequence[str]) -> str:
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    text = "".join(char if char.isprintable() else " " for char in text)
    return text.strip()[:500]


async def _post(
    client: httpx.AsyncClient, url: str, secret: str, send: Send, hidden: Sequence[str]
) -> Outcome:
    body = body_of(send.payload)
    headers = signed_headers(secret, send.delivery_id, int(clock.now().timestamp()), body)
    try:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
            if 200 <= status < 300:
                return Outcome(delivered=True, response_status=status)
            snippet = b""
            async for chunk in response.aiter_bytes():
                snippet += chunk
                if len(snippet) >= RESPONSE_SNIPPET_BYTES:
                    break
    except httpx.TimeoutException as error:
        return Outcome(False, error=f"timed out ({type(error).__name__})", receiver_down=True)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
        message = _clean(f"{type(error).__name__}: {error}", hidden)
        return Outcome(False, error=message, receiver_down=True)
    text = snippet[:RESPONSE_SNIPPET_BYTES].decode("utf-8", "replace")
    detail = _clean(text, hidden)
    message = f"HTTP {status}" + (f": {detail}" if detail else "")
    if 300 <= status < 400:
        message += " (redirects are not followed; configure the final URL)"
    return Outcome(
        False, response_status=status, error=message, receiver_down=status >= 500 or status in (408, 429)
    )


async def _record_outcome(db: Database, target: ProvisioningTarget, send: Send, outcome: Outcome) -> None:
    now = clock.now()
    async with db.transaction() as session:
        values: dict[str, Any] = {
            "attempts": WebhookDelivery.attempts + 1,
            "response_status": outcome.response_status,
        }
        if outcome.delivered:
            values.update(status=DELIVERY_DELIVERED, delivered_at=now, error=None)
        else:
            values.update(status=DELIVERY_FAILED, error=outcome.error)
        changed = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == send.delivery_id,
                WebhookDelivery.merchant_id == target.merchant_id,
                WebhookDelivery.target_id == target.id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not outcome.delivered or getattr(changed, "rowcount", 1) == 0:
            return  # the target was deleted meanwhile
        told = await session.scalar(
            select(PushedMember)
            .where(
                PushedMember.merchant_id == target.merchant_id,
                PushedMember.target_id == target.id,
                PushedMember.member_id == send.member_id,
            )
            .with_for_update()
        )
        active = send.event_type != EVENT_DEACTIVATED
        if told is None:
            session.add(
                PushedMember(
                    target_id=target.id,
                    member_id=send.member_id,
                    merchant_id=target.merchant_id,
                    active=active,
                    fingerprint=send.fingerprint,
                    updated_at=now,
                )
            )
        else:
            told.active, told.fingerprint, told.updated_at = active, send.fingerprint, now


@dataclass
class _Run:
    failed: list[tuple[Send, Outcome]] = field(default_factory=list)
    delivered: int = 0
    skipped: int = 0
    stop: str | None = None


async def _send_all(
    db: Database, target: ProvisioningTarget, url: str, secret: str, sends: list[Send], timeout_s: float
) -> _Run:
    run = _Run()
    if not sends:
        return run
    hidden = [secret, url] + ([pw] if (pw := urlsplit(url).password) else [])
    started = time.monotonic()
    queue = iter(sends)

    async def lane(client: httpx.AsyncClient) -> None:
        for send in queue:  # shared: each delivery goes to exactly one lane
            if run.stop is None and time.monotonic() - started > RUN_BUDGET_S:
                run.stop = f"the run took longer than {RUN_BUDGET_S:.0f} s"
            if run.stop is not None:
                run.skipped += 1
                continue
            outcome = await _post(client, url, secret, send, hidden)
            await _record_outcome(db, target, send, outcome)
            if outcome.delivered:
                run.delivered += 1
            else:
                run.failed.append((send, outcome))
                if outcome.receiver_down and run.stop is None:
                    run.stop = "the receiver did not answer or answered with a server error"

    lanes = min(CONCURRENCY, len(sends))
    try:
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(timeout_s),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=lanes, max_keepalive_connections=lanes),
            ) as client,
            asyncio.TaskGroup() as group,
        ):
            for _ in range(lanes):
                group.create_task(lane(client))
    except* Exception as group_error:
        # A lane failed outside HTTP (the database): the others were cancelled. The
        # reconciler records the first cause, not "unhandled errors in a TaskGroup".
        raise group_error.exceptions[0] from None
    return run


# --- the hook the reconciler calls ------------------------------------------------------------


def _signing_secret(secrets: Mapping[str, Any]) -> str:
    secret = secrets.get("signing_secret")
    if not isinstance(secret, str) or not secret:
        raise ValueError("the webhook target has no secrets.signing_secret: nothing is sent unsigned")
    standard_webhooks.decode_secret(secret)  # raises ValueError, without the secret in the message
    return secret


def _timeout(config: Mapping[str, Any]) -> float:
    value = config.get("timeout")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_TIMEOUT_S


async def reconcile_webhook_target(
    db: Database,
    settings: Settings,
    target: ProvisioningTarget,
    secrets: Mapping[str, Any],
    desired: list[EntitledMember],
) -> Drift:
    """Send the events that bring the target's receiver to ``desired``; the drift found.

    Called by the reconciler under the target's lock. Raises TargetUnreachable
    when some delivery did not get a 2xx (after recording every attempt), and
    ValueError for a target that cannot be used (no or bad signing secret, no URL).
    """
    del settings  # the target carries everything needed
    config = dict(target.config or {})
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("the webhook target has no config.url")
    secret = _signing_secret(secrets)
    merchant_id, now = target.merchant_id, clock.now()

    async with read_only_session(db) as session:
        entitled = {member.member_id: member for member in desired}
        areas = await _open_areas(session, merchant_id, target.id, set(entitled), now)
        wanted: dict[str, Wanted] = {}
        for member_id, member in entitled.items():
            if member_id not in areas:
                continue  # its last grant ended since ``desired`` was read: not entitled any more
            data = member_data(
                member_id, member.username, member.email, member.name, areas[member_id], member.until
            )
            wanted[member_id] = Wanted(data, fingerprint(data), member.username or member_id)
        told = await _told(session, target)
        outstanding = await _outstanding(session, target)
        unwanted = sorted(member_id for member_id in {*told, *outstanding} if member_id not in wanted)
        gone = await _gone(session, merchant_id, unwanted)
    decided = plan(wanted, told, outstanding, gone, now)

    if decided.create or decided.supersede:
        async with db.transaction() as session:
            if decided.supersede:
                for start in range(0, len(decided.supersede), _CHUNK):
                    await session.execute(
                        update(WebhookDelivery)
                        .where(
                            WebhookDelivery.merchant_id == merchant_id,
                            WebhookDelivery.target_id == target.id,
                            WebhookDelivery.id.in_(decided.supersede[start : start + _CHUNK]),
                            WebhookDelivery.status.in_(OUTSTANDING),
                        )
                        .values(status=DELIVERY_SUPERSEDED)
                        .execution_options(synchronize_session=False)
                    )
            for send in decided.create:
                session.add(
                    WebhookDelivery(
                        id=send.delivery_id,
                        merchant_id=merchant_id,
                        target_id=target.id,
                        event_type=send.event_type,
                        member_id=send.member_id,
                        payload=send.payload,
                        status=DELIVERY_PENDING,
                        attempts=0,
                        created_at=now,
                    )
                )

    run = await _send_all(db, target, url, secret, decided.sends, _timeout(config))
    log.info(
        "webhook target reconciled",
        target_id=target.id,
        merchant_id=merchant_id,
        sent=len(decided.sends) - run.skipped,
        delivered=run.delivered,
        failed=len(run.failed),
        skipped=run.skipped,
    )
    if run.failed or run.skipped:
        raise TargetUnreachable(_failure_message(len(decided.sends), run))
    return decided.drift


def _failure_message(total: int, run: _Run) -> str:
    parts = []
    if run.failed:
        send, outcome = run.failed[0]
        parts.append(f"{len(run.failed)} of {total} deliveries failed")
        parts.append(f"first: {send.event_type} {send.delivery_id}: {outcome.error}")
    if run.skipped:
        parts.append(f"{run.skipped} of {total} deliveries left for the retry: {run.stop}")
    return "; ".join(parts)
