"""The worker's part: move subscriptions along their schedules as time passes.

The fold already projected every status change that time alone makes
(renewal due, grace over, pause over, cancellation effective) into each
subscription's stored schedule, and access needs no worker at all (grants
end by themselves). Batches of rows due by now are locked (``SKIP LOCKED`` on
PostgreSQL, so several workers share the queue). The common case, a renewal
falling due (active to past_due), only moves the status: it reads one row, not
its facts, and is written back with bulk statements. Anything more (a pause
over, an end, a plan switching at period end) folds that subscription again.
Idempotent: a row is only due while its stored state is behind its schedule;
a worker that was down finds the current position at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.access.models import AccessChange
from einlass.audit.service import Actor
from einlass.billing.subscriptions.models import Subscription, SubscriptionStatusChange
from einlass.billing.subscriptions.rules import Status
from einlass.billing.subscriptions.service import position, refresh
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.members.service import JOB_PROVISION
from einlass.outbox.service import enqueue
from einlass.tenants.models import Merchant

log = structlog.get_logger(__name__)

BATCH_SIZE = 1000
TIME = Actor("system", "schedule")
_RUNNING = frozenset({Status.ACTIVE.value, Status.TRIALING.value})


async def run_due_transitions(
    db: Database, *, batch_size: int = BATCH_SIZE, max_batches: int | None = None
) -> int:
    """Process every subscription due by now, batch by batch; returns how many moved."""
    moved = batches = 0
    while max_batches is None or batches < max_batches:
        async with db.transaction() as session:
            count = await transition_batch(session, clock.now(), batch_size, skip_locked=not db.is_sqlite)
        moved += count
        batches += 1
        if count < batch_size:
            break
    return moved


async def transition_batch(
    session: AsyncSession, now: datetime, batch_size: int, *, skip_locked: bool
) -> int:
    due = (
        select(
            Subscription.id,
            Subscription.merchant_id,
            Subscription.member_id,
            Subscription.status,
            Subscription.access_until,
            Subscription.schedule,
        )
        .where(Subscription.next_change_at <= now)
        .order_by(Subscription.next_change_at)
        .limit(batch_size)
    )
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    rows = (await session.execute(due)).all()
    if not rows:
        return 0
    updates: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    access: list[dict[str, Any]] = []
    involved: list[tuple[str, str | None, datetime | None]] = []
    for row in rows:
        where = position(row.schedule or [], now)
        if not (row.status in _RUNNING and where.status == Status.PAST_DUE.value):
            # Resumed, ended, or a plan switched: more than the status moves, so
            # the subscription is folded again (rare next to renewals falling due).
            involved.append((row.id, row.member_id, row.access_until))
            continue
        updates.append(
            {
                "id": row.id,
                "status": where.status,
                "access_until": where.access_until,
                "next_change_at": where.upcoming,
                "updated_at": now,
            }
        )
        changes.append(
            {
                "id": new_id("ssc"),
                "merchant_id": row.merchant_id,
                "subscription_id": row.id,
                "from_status": row.status,
                "to_status": where.status,
                "at": where.last_change_at or now,
                "recorded_at": now,
                "cause": "time",
            }
        )
        if where.access_until != row.access_until and row.member_id is not None:
            access.append(_access_change(row.merchant_id, row.member_id, row.id, now))
    if updates:
        await session.execute(update(Subscription), updates)
    if changes:
        await session.execute(insert(SubscriptionStatusChange), changes)
    for subscription_id, member_id, access_until in involved:
        subscription = await session.get_one(Subscription, subscription_id)
        merchant = await session.get_one(Merchant, subscription.merchant_id)
        await refresh(session, merchant, subscription, TIME, cause="time")
        if subscription.access_until != access_until and member_id is not None:
            access.append(_access_change(subscription.merchant_id, member_id, subscription_id, now))
    if access:
        # Grants ended or began by themselves; caches and push targets hear of it now.
        await session.execute(insert(AccessChange), access)
        for merchant_id in sorted({item["merchant_id"] for item in access}):
            await enqueue(
                session,
                JOB_PROVISION,
                {"reason": "subscription access changed"},
                merchant_id=merchant_id,
                dedup_key=f"{JOB_PROVISION}:{merchant_id}",
            )
    log.debug("subscription transitions", moved=len(rows), refolded=len(involved))
    return len(rows)


def _access_change(merchant_id: str, member_id: str, subscription_id: str, now: datetime) -> dict[str, Any]:
    return {
        "merchant_id": merchant_id,
        "member_id": member_id,
        "reason": f"subscription {subscription_id}",
        "at": now,
    }
