"""The provisioning job and the worker's provisioning schedules.

Every change of a merchant's access enqueues one ``provisioning.sync`` job
(coalesced: a waiting job absorbs the next requests). Two periodic tasks add
what no event announces: grants that end (or start) by the passing of time,
and a full reconciliation of every merchant on a schedule, which also repairs
hand edits on the targets and retries targets that stayed unreachable.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, ScalarSelect, and_, or_, select

from einlass import clock
from einlass.audit.service import Actor
from einlass.config import Settings
from einlass.members.models import Grant
from einlass.outbox.models import Job
from einlass.outbox.worker import JobContext, Periodic
from einlass.provisioning.models import ProvisioningTarget
from einlass.provisioning.reconciler import ReconcileFailed, reconcile_merchant
from einlass.provisioning.service import request_sync

log = structlog.get_logger(__name__)

# How often grants that ended are looked for: a pass that runs out closes the
# push targets within this (plus the job's run time), without any event.
GRANT_BOUNDARY_INTERVAL_S = 15.0
DEFAULT_FULL_RECONCILE_MINUTES = 15.0


async def sync_targets(context: JobContext, job: Job) -> None:
    """Reconcile every enabled push target of the job's merchant.

    Each target on its own: an unreachable one does not stop the others. If any
    failed, the job fails at the end, so the outbox retries it with backoff.
    """
    if job.merchant_id is None:
        return
    results = await reconcile_merchant(context.db, context.settings, job.merchant_id, Actor("job", job.id))
    failed = [result for result in results if result.failed]
    if failed:
        raise ReconcileFailed(failed)


def _merchants_with_targets() -> ScalarSelect[str]:
    return (
        select(ProvisioningTarget.merchant_id)
        .where(ProvisioningTarget.enabled.is_(True))
        .distinct()
        .scalar_subquery()
    )


class GrantBoundaryWatch:
    """Enqueue a sync for merchants with a grant that ended, started or was cut since the last look.

    The watermark lives in the worker process; the first look reaches back one
    full-reconcile interval, so grants that ended while no worker ran are caught
    too. Several workers doing the same only coalesce into the same jobs.
    """

    def __init__(self, lookback: timedelta) -> None:
        self.lookback = lookback
        self.since: datetime | None = None

    async def run(self, context: JobContext) -> int:
        now = clock.now()
        since = self.since if self.since is not None else now - self.lookback
        self.since = now
        if now <= since:
            return 0

        def crossed(column: Any) -> ColumnElement[bool]:
            return and_(column > since, column <= now)

        async with context.db.transaction() as session:
            merchant_ids = list(
                await session.scalars(
                    select(Grant.merchant_id)
                    .where(
                        or_(crossed(Grant.ends_at), crossed(Grant.starts_at), crossed(Grant.revoked_at)),
                        Grant.merchant_id.in_(_merchants_with_targets()),
                    )
                    .distinct()
                )
            )
            for merchant_id in merchant_ids:
                await request_sync(session, merchant_id, "grant period boundary")
        if merchant_ids:
            log.info("grants crossed a boundary", merchants=len(merchant_ids))
        return len(merchant_ids)


async def schedule_full_reconcile(context: JobContext) -> int:
    """Enqueue a sync for every merchant that has an enabled target."""
    async with context.db.transaction() as session:
        merchant_ids = list(
            await session.scalars(
                select(ProvisioningTarget.merchant_id).where(ProvisioningTarget.enabled.is_(True)).distinct()
            )
        )
        for merchant_id in merchant_ids:
            await request_sync(session, merchant_id, "scheduled reconciliation")
    return len(merchant_ids)


def full_reconcile_interval(settings: Settings) -> timedelta:
    """``EINLASS_PROVISIONING_RECONCILE_MINUTES`` (default 15)."""
    minutes = settings.provisioning_reconcile_minutes
    return timedelta(minutes=float(minutes))


def provisioning_periodic(settings: Settings) -> list[Periodic]:
    interval = full_reconcile_interval(settings)
    return [
        Periodic(
            "provisioning-grant-boundaries", GRANT_BOUNDARY_INTERVAL_S, GrantBoundaryWatch(interval).run
        ),
        Periodic("provisioning-full-reconcile", interval.total_seconds(), schedule_full_reconcile),
    ]
