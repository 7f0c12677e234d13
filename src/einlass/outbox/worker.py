"""The worker: claims due jobs, runs them at least once, retries with backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import and_, or_, select, update

from einlass import clock
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.metrics import JOBS_FAILED, JOBS_QUEUED, JOBS_RUN
from einlass.outbox.models import JOB_DONE, JOB_FAILED, JOB_PENDING, JOB_RUNNING, Job
from einlass.outbox.service import backoff, queue_depth

log = structlog.get_logger(__name__)


@dataclass
class JobContext:
    db: Database
    settings: Settings


Handler = Callable[[JobContext, Job], Awaitable[None]]


@dataclass
class Periodic:
    """A task the worker runs every ``interval_s`` (sweeps, schedules)."""

    name: str
    interval_s: float
    run: Callable[[JobContext], Awaitable[object]]
    last_run: float = field(default=float("-inf"))


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        handlers: dict[str, Handler],
        periodic: list[Periodic] | None = None,
        *,
        batch_size: int = 20,
        # Long enough for any one job (SMTP times out after 60 s); a job of a
        # worker that died runs again once its lease is over.
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self.context = JobContext(db=db, settings=settings)
        self.handlers = handlers
        self.periodic = periodic or []
        self.batch_size = batch_size
        self.lease = lease
        self.wake = asyncio.Event()

    async def claim(self) -> list[Job]:
        db = self.context.db
        now = clock.now()
        due = (
            select(Job.id)
            .where(
                or_(
                    and_(Job.status == JOB_PENDING, Job.run_after <= now),
                    # A worker that died mid-job leaves it running; its lease runs out.
                    and_(Job.status == JOB_RUNNING, Job.locked_until < now),
                )
            )
            .order_by(Job.run_after)
            .limit(self.batch_size)
        )
        if not db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        claim = (
            update(Job)
            .where(Job.id.in_(due.scalar_subquery()))
            .values(
                status=JOB_RUNNING,
                locked_until=now + self.lease,
                attempts=Job.attempts + 1,
                # Changes made from now on need a new job: this one may have read already.
                dedup_key=None,
                updated_at=now,
            )
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        async with db.transaction() as session:
            return list((await session.scalars(claim)).all())

    async def run_job(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            await handler(self.context, job)
        except Exception as error:
            await self._record_failure(job, error)
        else:
            await self._record_success(job)

    async def _record_success(self, job: Job) -> None:
        now = clock.now()
        async with self.context.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(status=JOB_DONE, finished_at=now, updated_at=now, locked_until=None)
            )
        JOBS_RUN.labels(job.kind, "done").inc()

    async def _record_failure(self, job: Job, error: Exception) -> None:
        now = clock.now()
        message = f"{type(error).__name__}: {error}"[:2000]
        gave_up = job.attempts >= job.max_attempts
        values: dict[str, object] = {"last_error": message, "updated_at": now, "locked_until": None}
        if gave_up:
            values.update(status=JOB_FAILED, finished_at=now)
            JOBS_FAILED.labels(job.kind).inc()
        else:
            values.update(status=JOB_PENDING, run_after=now + backoff(job.attempts))
        async with self.context.db.transaction() as session:
            await session.execute(update(Job).where(Job.id == job.id).values(**values))
        JOBS_RUN.labels(job.kind, "failed" if gave_up else "retry").inc()
        log.warning(
            "job failed", job_id=job.id, kind=job.kind, attempts=job.attempts, gave_up=gave_up, error=message
        )

    async def run_periodic(self) -> None:
        loop_time = asyncio.get_running_loop().time()
        for task in self.periodic:
            if loop_time - task.last_run >= task.interval_s:
                task.last_run = loop_time
                try:
                    await task.run(self.context)
                except Exception:
                    log.exception("periodic task failed", task=task.name)

    async def run_once(self) -> int:
        """Run what is due now; the number of jobs run."""
        await self.run_periodic()
        jobs = await self.claim()
        if jobs:
            await asyncio.gather(*(self.run_job(job) for job in jobs))
        return len(jobs)

    async def drain(self, max_rounds: int = 100) -> int:
        """Run until nothing is due; for tests and the CLI."""
        total = 0
        for _ in range(max_rounds):
            ran = await self.run_once()
            total += ran
            if ran == 0:
                break
        return total

    async def update_gauges(self) -> None:
        async with self.context.db.transaction() as session:
            depth = await queue_depth(session)
        for status in (JOB_PENDING, JOB_RUNNING, JOB_FAILED):
            JOBS_QUEUED.labels(status).set(depth.get(status, 0))

    async def run_forever(self, stop: asyncio.Event) -> None:
        interval = self.context.settings.worker_poll_interval_s
        gauges_due = 0.0
        while not stop.is_set():
            try:
                ran = await self.run_once()
                loop_time = asyncio.get_running_loop().time()
                if loop_time >= gauges_due:
                    await self.update_gauges()
                    gauges_due = loop_time + 5
            except Exception:
                log.exception("worker round failed")
                ran = 0
            if ran:
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
