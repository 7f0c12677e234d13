"""Admin pages: the merchant's audit log and outbox jobs (failed first, with retry).

The API keys and staff accounts pages live in ``operations_access`` and are
mounted through this module's router.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.admin import operations_access
from einlass.admin.i18n import NO_VALUE, register
from einlass.admin.page import Page, merchant_page
from einlass.audit.models import AuditEntry
from einlass.db.util import newest_first
from einlass.outbox.models import JOB_DONE, JOB_FAILED, JOB_PENDING, JOB_RUNNING, Job
from einlass.outbox.service import retry_job
from einlass.tenants.models import ApiKey, StaffAccount

router = APIRouter()
router.include_router(operations_access.router)

PAGE_SIZE = 50
MAX_PARAM = 64
MAX_VALUE_SHOWN = 300
ACTOR_KINDS = (
    "admin",
    "operator",
    "api_key",
    "gateway_event",
    "job",
    "member",
    "end_customer",
    "cli",
    "system",
)
STAFF_ACTOR_KINDS = ("admin", "operator")
JOB_STATUSES = (JOB_FAILED, JOB_PENDING, JOB_RUNNING, JOB_DONE)

register(
    {
        "ops_when": {"en": "When", "de": "Wann"},
        "ops_actor": {"en": "Who", "de": "Wer"},
        "ops_action": {"en": "Action", "de": "Aktion"},
        "ops_entity": {"en": "Object", "de": "Objekt"},
        "ops_changes": {"en": "Changes", "de": "Änderungen"},
        "ops_changes_count": {"en": "{count} changed", "de": "{count} geändert"},
        "ops_before": {"en": "before:", "de": "vorher:"},
        "ops_after": {"en": "after:", "de": "nachher:"},
        "ops_member": {"en": "Member", "de": "Mitglied"},
        "ops_member_id": {"en": "Member id", "de": "Mitglieds-ID"},
        "ops_action_hint": {
            "en": "The start is enough, e.g. member. or member.locked",
            "de": "Der Anfang genügt, z. B. member. oder member.locked",
        },
        "ops_actor_kind": {"en": "Who (kind)", "de": "Wer (Art)"},
        "ops_any": {"en": "any", "de": "alle"},
        "ops_filter": {"en": "Filter", "de": "Filtern"},
        "ops_reset_filters": {"en": "Reset filters", "de": "Filter zurücksetzen"},
        "ops_filters": {"en": "Filters", "de": "Filter"},
        "ops_no_entries": {"en": "No entries.", "de": "Keine Einträge."},
        "ops_actor_admin": {"en": "admin", "de": "Admin"},
        "ops_actor_operator": {"en": "operator", "de": "Betreiber"},
        "ops_actor_api_key": {"en": "API key", "de": "API-Schlüssel"},
        "ops_actor_gateway_event": {"en": "gateway event", "de": "Zahlungsereignis"},
        "ops_actor_job": {"en": "job", "de": "Auftrag"},
        "ops_actor_member": {"en": "member", "de": "Mitglied"},
        "ops_actor_end_customer": {"en": "end customer", "de": "Endkunde"},
        "ops_actor_cli": {"en": "command line", "de": "Kommandozeile"},
        "ops_actor_system": {"en": "system", "de": "System"},
        # jobs
        "ops_jobs_intro": {
            "en": "Side effects (provisioning, emails, webhooks) run as jobs and are retried with "
            "increasing waits. A failed job has used up its attempts and waits for a retry by hand.",
            "de": "Nebenwirkungen (Provisionierung, E-Mails, Webhooks) laufen als Aufträge und werden mit "
            "wachsenden Pausen wiederholt. Ein fehlgeschlagener Auftrag hat alle Versuche aufgebraucht "
            "und wartet auf eine Wiederholung von Hand.",
        },
        "ops_status": {"en": "Status", "de": "Status"},
        "ops_kind": {"en": "Kind", "de": "Art"},
        "ops_attempts": {"en": "Attempts", "de": "Versuche"},
        "ops_attempts_of": {"en": "{attempts} of {max}", "de": "{attempts} von {max}"},
        "ops_last_error": {"en": "Last error", "de": "Letzter Fehler"},
        "ops_next_attempt": {"en": "Next attempt", "de": "Nächster Versuch"},
        "ops_payload": {"en": "Payload", "de": "Nutzdaten"},
        "ops_all_failed_first": {"en": "all, failed first", "de": "alle, fehlgeschlagene zuerst"},
        "ops_job_failed": {"en": "failed", "de": "fehlgeschlagen"},
        "ops_job_pending": {"en": "waiting", "de": "wartend"},
        "ops_job_running": {"en": "running", "de": "läuft"},
        "ops_job_done": {"en": "done", "de": "erledigt"},
        "ops_retrying": {"en": "will be retried", "de": "wird wiederholt"},
        "ops_retry": {"en": "Retry", "de": "Wiederholen"},
        "ops_no_jobs": {"en": "No jobs.", "de": "Keine Aufträge."},
        "ops_job_retried": {
            "en": "The job {id} will run again shortly.",
            "de": "Der Auftrag {id} läuft in Kürze erneut.",
        },
        "ops_job_not_failed": {
            "en": "only a failed job can be retried; job {id} is {status}.",
            "de": "nur ein fehlgeschlagener Auftrag kann wiederholt werden; Auftrag {id} ist {status}.",
        },
    }
)


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name, "").strip()
    return value if len(value) <= MAX_PARAM else ""


def _shown(value: object) -> str:
    if value is None:
        return NO_VALUE
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    )
    return text if len(text) <= MAX_VALUE_SHOWN else text[: MAX_VALUE_SHOWN - 1] + "…"


def changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None, prefix: str = ""
) -> list[tuple[str, str, str]]:
    """Only what changed between ``before`` and ``after``: (key, old, new); nested objects as dotted keys."""
    old_doc, new_doc = before or {}, after or {}
    result: list[tuple[str, str, str]] = []
    for key in sorted(set(old_doc) | set(new_doc), key=str):
        # A key that is absent is the same as one that is null.
        old, new = old_doc.get(key), new_doc.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            result += changes(old, new, f"{prefix}{key}.")
        else:
            result.append((f"{prefix}{key}", _shown(old), _shown(new)))
    return result


@dataclass(frozen=True)
class AuditRow:
    entry: AuditEntry
    actor: str  # who, readable: the staff's email, the API key's name, or the id
    changes: list[tuple[str, str, str]]


async def _audit_rows(
    page: Page, *, action: str, actor_kind: str, member_id: str, after: str
) -> tuple[list[AuditRow], bool]:
    query = select(AuditEntry).where(AuditEntry.merchant_id == page.merchant_id)
    if member_id:
        query = query.where(AuditEntry.member_id == member_id)
    if actor_kind:
        query = query.where(AuditEntry.actor_kind == actor_kind)
    if action:
        escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(AuditEntry.action.like(f"{escaped}%", escape="\\"))
    async with page.db.transaction() as session:
        entries = await newest_first(
            session, query, AuditEntry.id, starting_after=after or None, limit=PAGE_SIZE + 1
        )
        entries, more = entries[:PAGE_SIZE], len(entries) > PAGE_SIZE
        names = await _actor_names(session, page.merchant_id, entries)
    rows = [
        AuditRow(
            entry,
            names.get((entry.actor_kind, entry.actor_id or ""), entry.actor_id or ""),
            changes(entry.before, entry.after),
        )
        for entry in entries
    ]
    return rows, more


async def _actor_names(
    session: AsyncSession, merchant_id: str, entries: list[AuditEntry]
) -> dict[tuple[str, str], str]:
    """Staff actors by email (this merchant's staff or the operator), API keys by name and prefix."""
    staff_ids = {e.actor_id for e in entries if e.actor_kind in STAFF_ACTOR_KINDS and e.actor_id}
    key_ids = {e.actor_id for e in entries if e.actor_kind == "api_key" and e.actor_id}
    names: dict[tuple[str, str], str] = {}
    if staff_ids:
        found = await session.execute(
            select(StaffAccount.id, StaffAccount.email, StaffAccount.role).where(
                StaffAccount.id.in_(staff_ids),
                or_(StaffAccount.merchant_id == merchant_id, StaffAccount.merchant_id.is_(None)),
            )
        )
        for staff_id, email, role in found:
            names[("operator" if role == "operator" else "admin", staff_id)] = email
    if key_ids:
        keys = await session.execute(
            select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(
                ApiKey.id.in_(key_ids), ApiKey.merchant_id == merchant_id
            )
        )
        for key_id, name, prefix in keys:
            names[("api_key", key_id)] = f"{name} ({prefix}…)" if name else f"{prefix}…"
    return names


@router.get("/m/{slug}/audit")
async def audit_log(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    filters = {
        "action": _param(request, "action"),
        "actor": _param(request, "actor") if _param(request, "actor") in ACTOR_KINDS else "",
        "member": _param(request, "member"),
    }
    after = _param(request, "after")
    rows, more = await _audit_rows(
        page, action=filters["action"], actor_kind=filters["actor"], member_id=filters["member"], after=after
    )
    labels = {kind: page.t(f"ops_actor_{kind}") for kind in ACTOR_KINDS}
    return page.render(
        "operations/audit.html",
        title=page.t("nav_audit"),
        rows=rows,
        filters=filters,
        actor_labels=labels,
        actor_kinds_options=list(labels.items()),
        next_href=page.url("audit", after=rows[-1].entry.id, **filters) if more else None,
        first_href=page.url("audit", **filters) if after else None,
    )


# --------------------------------------------------------------------------- jobs


def _failed_first_cursor(job: Job) -> str:
    return f"{'failed' if job.status == JOB_FAILED else 'rest'}:{job.id}"


async def _job_rows(page: Page, status: str, after: str) -> tuple[list[Job], str | None]:
    """One page of jobs and the cursor of the next: one status, or failed ones first and then the rest."""
    base = select(Job).where(Job.merchant_id == page.merchant_id)
    async with page.db.transaction() as session:
        if status:
            rows = await newest_first(
                session,
                base.where(Job.status == status),
                Job.id,
                starting_after=after or None,
                limit=PAGE_SIZE + 1,
            )
        else:
            tier, _, cursor = after.partition(":")
            rest = base.where(Job.status != JOB_FAILED)
            if tier == "rest":
                rows = await newest_first(session, rest, Job.id, starting_after=cursor, limit=PAGE_SIZE + 1)
            else:
                failed = base.where(Job.status == JOB_FAILED)
                rows = await newest_first(
                    session, failed, Job.id, starting_after=cursor or None, limit=PAGE_SIZE + 1
                )
                if len(rows) <= PAGE_SIZE:
                    rows += await newest_first(
                        session, rest, Job.id, starting_after=None, limit=PAGE_SIZE + 1 - len(rows)
                    )
    if len(rows) <= PAGE_SIZE:
        return rows, None
    rows = rows[:PAGE_SIZE]
    return rows, rows[-1].id if status else _failed_first_cursor(rows[-1])


@router.get("/m/{slug}/jobs")
async def jobs(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    status = _param(request, "status")
    status = status if status in JOB_STATUSES else ""
    after = _param(request, "after")
    rows, cursor = await _job_rows(page, status, after)
    return page.render(
        "operations/jobs.html",
        title=page.t("nav_jobs"),
        jobs=rows,
        selected_status=status,
        status_options=[(value, page.t(f"ops_job_{value}")) for value in JOB_STATUSES],
        back=page.url("jobs", status=status, after=after),
        payloads={
            job.id: json.dumps(job.payload, ensure_ascii=False, indent=2, sort_keys=True) for job in rows
        },
        next_href=page.url("jobs", status=status, after=cursor) if cursor else None,
        first_href=page.url("jobs", status=status) if after else None,
    )


@router.post("/m/{slug}/jobs/{job_id}/retry")
async def retry(request: Request, slug: str, job_id: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    back = form.get("back", "")
    back = back if back.startswith(page.url("jobs")) else page.url("jobs")
    async with page.db.transaction() as session:
        status = await session.scalar(
            select(Job.status).where(Job.id == job_id, Job.merchant_id == page.merchant_id)
        )
        job = await retry_job(session, page.merchant_id, job_id, page.actor)
        if job is None:
            raise page.not_found()
    if status != JOB_FAILED:
        text = page.t("ops_job_not_failed", id=job_id, status=page.t(f"ops_job_{status}"))
        return page.redirect(back, error=page.failed(text))
    return page.redirect(back, notice=page.t("ops_job_retried", id=job_id))
