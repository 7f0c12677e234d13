"""REST: jobs in the outbox; failed ones can be retried."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from einlass.db.util import newest_first
from einlass.errors import NotFound
from einlass.outbox.models import Job
from einlass.outbox.service import retry_job
from einlass.rest.common import ApiContext, api_context, iso, list_response, page_limit

router = APIRouter(tags=["jobs"])


def render_job(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "job",
        "kind": job.kind,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "payload": job.payload,
        "run_after": iso(job.run_after),
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
    }


@router.get("/jobs")
async def list_jobs(
    ctx: ApiContext = Depends(api_context),
    status: str | None = None,
    limit: int = 20,
    starting_after: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    query = select(Job).where(Job.merchant_id == ctx.merchant_id)
    if status:
        query = query.where(Job.status == status)
    async with ctx.transaction() as session:
        rows = await newest_first(session, query, Job.id, starting_after=starting_after, limit=limit + 1)
        return list_response("/api/v1/jobs", rows, limit, render_job)


@router.post("/jobs/{job_id}/retry")
async def retry(job_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        job = await retry_job(session, ctx.merchant_id, job_id, ctx.actor)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return render_job(job)
