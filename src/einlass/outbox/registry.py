"""The worker with every feature's job handlers and periodic tasks."""

from __future__ import annotations

from datetime import timedelta

import structlog

from einlass.billing.inbox import apply_with_retries
from einlass.billing.service import pending_inbox_event_ids
from einlass.billing.subscriptions.actions import JOB_SUBSCRIPTION_ACTION, perform_action
from einlass.billing.subscriptions.transitions import run_due_transitions
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.members.service import JOB_CREDENTIALS_EMAIL, JOB_PROVISION
from einlass.notify.jobs import send_credentials_email
from einlass.outbox.worker import Handler, JobContext, Periodic, Worker
from einlass.provisioning.jobs import provisioning_periodic, sync_targets
from einlass.screening.decisions import JOB_PAYMENT_REJECTED
from einlass.screening.public import purge_unconfirmed
from einlass.screening.rejections import notify_payment_rejected
from einlass.screening.service import expire_entries

log = structlog.get_logger(__name__)

HANDLERS: dict[str, Handler] = {
    JOB_CREDENTIALS_EMAIL: send_credentials_email,
    JOB_PROVISION: sync_targets,
    JOB_SUBSCRIPTION_ACTION: perform_action,
    JOB_PAYMENT_REJECTED: notify_payment_rejected,
}


async def recover_inbox(context: JobContext) -> int:
    """Apply deliveries that were stored but never applied, and parked ones whose payment came."""
    async with context.db.transaction() as session:
        ids = await pending_inbox_event_ids(
            session, timedelta(seconds=context.settings.inbox_recovery_after_s)
        )
    for event_id in ids:
        try:
            await apply_with_retries(context.db, context.settings, event_id)
        except Exception:
            log.exception("inbox event still does not apply", event_id=event_id)
    return len(ids)


async def transitions(context: JobContext) -> int:
    return await run_due_transitions(context.db)


async def purge_unconfirmed_reports(context: JobContext) -> int:
    """End-customer reports whose email link was never followed."""
    async with context.db.transaction() as session:
        return await purge_unconfirmed(session, context.settings)


def build_worker(db: Database, settings: Settings) -> Worker:
    return Worker(
        db,
        settings,
        dict(HANDLERS),
        [
            Periodic("inbox-recovery", 2.0, recover_inbox),
            Periodic("subscription-transitions", settings.subscription_transition_interval_s, transitions),
            *provisioning_periodic(settings),
            Periodic("blacklist-retention", 3600.0, lambda context: expire_entries(context.db)),
            Periodic("unconfirmed-reports", 3600.0, purge_unconfirmed_reports),
        ],
    )
