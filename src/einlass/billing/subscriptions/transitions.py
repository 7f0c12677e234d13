"""The worker's part: move subscriptions along their schedules as time passes.

The fold already projected every status change that time alone makes
(renewal due, grace over, pause over, cancellation effective) into each
subscription's stored schedule, and access needs no worker at all (grants
end by themselves). So a transition reads one row, not its facts: batches of
rows due by now are locked (``SKIP LOCKED`` on PostgreSQL, so several workers
share the queue), moved to where their schedule stands now, and written back
with bulk statements. Idempotent: a row is only due while its stored state is
behind its schedule; a worker that was down finds the current position at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.access.models import AccessChange
from einlass.billing.subscriptions.actions import RESUME_SENT_BY_EINLASS, queue_scheduled_resume
from einlass.billing.subscriptions.models import Subscription, SubscriptionStatusChange
from einlass.billing.subscriptions.service import position
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.members.service import JOB_PROVISION
from einlass.outbox.service import enqueue

log = structlog.get_logger(__name__)

BATCH_SIZE = 1000


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
            Subscription.gateway,
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
    resumed: list[tuple[str, str]] = []
    for row in rows:
        where = position(row.schedule or [], now)
        updates.append(
            {
                "id": row.id,
                "status": where.status,
                "access_until": where.access_until,
                "next_change_at": where.upcoming,
                "updated_at": now,
            }
        )
        if where.status != row.status:
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
            if row.status == "paused" and row.gateway in RESUME_SENT_BY_EINLASS:
                resumed.append((row.merchant_id, row.id))
        if where.access_until != row.access_until and row.member_id is not None:
            access.append(
                {
                    "merchant_id": row.merchant_id,
                    "member_id": row.member_id,
                    "reason": f"subscription {row.id}",
                    "at": now,
                }
            )
    await session.execute(update(Subscription), updates)
    if changes:
        await session.execute(insert(SubscriptionStatusChange), changes)
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
    for merchant_id, subscription_id in resumed:
        await queue_scheduled_resume(session, merchant_id, subscription_id)
    log.debug("subscription transitions", moved=len(rows), status_changes=len(changes))
    return len(rows)
