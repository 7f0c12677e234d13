"""The provisioning hook: push targets converge here (filled in by the targets feature)."""

from __future__ import annotations

import structlog

from einlass.outbox.models import Job
from einlass.outbox.worker import JobContext

log = structlog.get_logger(__name__)


async def sync_targets(context: JobContext, job: Job) -> None:
    """Reconcile every push target of the job's merchant; none exist yet."""
    log.info("provisioning requested", merchant_id=job.merchant_id, reason=job.payload.get("reason"))
