"""Writing jobs in the caller's transaction, and managing them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.db.util import insert_ignoring_conflict
from einlass.ids import new_id
from einlass.outbox.models import JOB_FAILED, JOB_PENDING, Job

DEFAULT_MAX_ATTEMPTS = 8


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    merchant_id: str | None,
    dedup_key: str | None = None,
    run_after: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> bool:
    """Add a job to the caller's transaction (invariant 3).

    With ``dedup_key``, a job that is still waiting with the same key absorbs
    this one, so a burst of changes makes one job. Returns False when absorbed.
    """
    now = clock.now()
    return await insert_ignoring_conflict(
        session,
        Job,
        {
            "id": new_id("job"),
            "merchant_id": merchant_id,
            "kind": kind,
            "payload": payload,
            "status": JOB_PENDING,
            "dedup_key": dedup_key,
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_after": run_after or now,
            "created_at": now,
            "updated_at": now,
        },
    )


def backoff(attempts: int) -> timedelta:
    """Exponential with jitter: about 2 s, 4 s, 8 s ... capped at one hour."""
    base = min(2.0**attempts, 3600.0)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


async def retry_job(session: AsyncSession, merchant_id: str, job_id: str, actor: Actor) -> Job | None:
    """Run a failed job again from its first attempt (audited); other jobs are left as they are."""
    job = await session.scalar(
        select(Job).where(Job.id == job_id, Job.merchant_id == merchant_id).with_for_update()
    )
    if job is None:
        return None
    if job.status == JOB_FAILED:
        before = {"status": job.status, "attempts": job.attempts, "last_error": job.last_error}
        job.status = JOB_PENDING
        job.attempts = 0
        job.run_after = clock.now()
        job.updated_at = clock.now()
        record(
            session,
            merchant_id=merchant_id,
            actor=actor,
            action="job.retried",
            entity_kind="job",
            entity_id=job.id,
            before=before,
            after={"status": job.status, "attempts": 0},
        )
    return job


async def queue_depth(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Job.status, func.count()).group_by(Job.status))
    return dict(rows.all())
