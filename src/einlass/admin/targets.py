"""Admin pages: provisioning targets, their state and drift, and reconciling on demand.

"Reconcile now" does what the API's reconcile endpoints do: reconcile at once
(``reconcile_target`` / ``reconcile_merchant``) and, when a target failed,
leave a provisioning job behind that retries with backoff. While a
reconciliation is queued (a new target, a due or running provisioning job),
the status block asks for itself again every two seconds (htmx); a plain
reload shows the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass import clock
from einlass.admin.catalogue import parse_model
from einlass.admin.page import Page, merchant_page
from einlass.admin.targets_text import STATUS_BADGES, action_text, reconcile_notice, status_text
from einlass.audit.models import AuditEntry
from einlass.errors import EinlassError, NotFound
from einlass.members.service import JOB_PROVISION
from einlass.outbox.models import JOB_PENDING, JOB_RUNNING, Job
from einlass.provisioning import service
from einlass.provisioning.hashing import DEFAULT_SCHEME, SCHEMES, target_scheme_key
from einlass.provisioning.models import HTPASSWD_KINDS, TARGET_HTPASSWD_FILE, ProvisioningTarget
from einlass.provisioning.reconciler import (
    STATUS_OK,
    STATUS_PENDING,
    ReconcileResult,
    reconcile_merchant,
    reconcile_target,
)
from einlass.provisioning.views import TargetCreate, create_target_from_body

router = APIRouter()

MAX_TARGETS = 200
RECENT_RUNS = 10


async def sync_waiting(session: AsyncSession, merchant_id: str) -> bool:
    """A provisioning job of the merchant is running, or due to run."""
    found = await session.scalar(
        select(Job.id)
        .where(
            Job.merchant_id == merchant_id,
            Job.kind == JOB_PROVISION,
            or_(Job.status == JOB_RUNNING, and_(Job.status == JOB_PENDING, Job.run_after <= clock.now())),
        )
        .limit(1)
    )
    return found is not None


def view(page: Page, target: ProvisioningTarget, areas: list[str], waiting: bool) -> dict[str, Any]:
    drift = target.last_drift or {}
    return {
        "target": target,
        "status": status_text(page.t, target.status),
        "kind": page.t(f"tgt_kind_{target.kind}"),
        "areas": areas,
        "pending": target.enabled and (target.status == STATUS_PENDING or waiting),
        "badge": STATUS_BADGES.get(target.status, ""),
        "drift": drift,
        "added": len(drift.get("missing") or []),
        "removed": len(drift.get("unexpected") or []),
        "changed": len(drift.get("changed") or []),
        "drift_at": datetime.fromisoformat(drift["at"]) if drift.get("at") else None,
    }


async def target_view(page: Page, session: AsyncSession, target_id: str) -> dict[str, Any]:
    try:
        target = await service.get_target(session, page.merchant_id, target_id)
    except NotFound:
        raise page.not_found() from None
    areas = await service.area_slugs(session, page.merchant_id, [target.id])
    return view(page, target, areas[target.id], await sync_waiting(session, page.merchant_id))


async def render_list(
    page: Page, *, status: int = 200, error: EinlassError | None = None, values: dict[str, str] | None = None
) -> Response:
    async with page.db.transaction() as session:
        targets = await service.list_targets(session, page.merchant_id, limit=MAX_TARGETS)
        areas = await service.area_slugs(session, page.merchant_id, [target.id for target in targets])
        waiting = await sync_waiting(session, page.merchant_id)
    rows = [view(page, target, areas[target.id], waiting) for target in sorted(targets, key=lambda t: t.name)]
    extra: dict[str, Any] = {"error": page.failed(error.message)} if error is not None else {}
    return page.render(
        "targets/list.html",
        title=page.t("title_targets"),
        status=status,
        rows=rows,
        any_pending=any(row["pending"] for row in rows),
        problem=error.param if error is not None else None,
        values=values or {"hash_scheme": DEFAULT_SCHEME},
        scheme_options=[(name, name) for name in sorted(SCHEMES)],
        **extra,
    )


@router.get("/m/{slug}/targets")
async def targets_page(request: Request, slug: str) -> Response:
    return await render_list(await merchant_page(request, slug))


@router.post("/m/{slug}/targets")
async def create_htpasswd_target(request: Request, slug: str) -> Response:
    """The local htpasswd file kind only; the other kinds are set up with the API or CLI."""
    page = await merchant_page(request, slug)
    form = await page.form()
    values = {key: form.get(key, "").strip() for key in ("name", "path", "areas", "hash_scheme", "hash_cost")}
    config: dict[str, Any] = {"path": values["path"], "hash_scheme": values["hash_scheme"] or DEFAULT_SCHEME}
    if values["hash_cost"]:
        cost = values["hash_cost"]
        config["hash_cost"] = int(cost) if cost.isdigit() else cost
    areas = [part for part in values["areas"].replace(",", " ").split() if part]
    data = {"name": values["name"], "kind": TARGET_HTPASSWD_FILE, "config": config, "areas": areas}
    try:
        body = parse_model(TargetCreate, data)
        async with page.db.transaction() as session:
            target = await create_target_from_body(
                session, page.settings.secret_key, page.merchant_id, body, page.actor
            )
    except EinlassError as error:
        return await render_list(page, status=400, error=error, values=values)
    return page.redirect(page.url(f"targets/{target.id}"), notice=page.t("tgt_created", name=target.name))


async def recent_runs(session: AsyncSession, merchant_id: str, target_id: str) -> list[AuditEntry]:
    """What the audit log holds about the target: creation, changes, and each reconcile that found drift."""
    query = (
        select(AuditEntry)
        .where(
            AuditEntry.merchant_id == merchant_id,
            AuditEntry.entity_kind == "target",
            AuditEntry.entity_id == target_id,
        )
        .order_by(AuditEntry.id.desc())
        .limit(RECENT_RUNS)
    )
    return list(await session.scalars(query))


@router.get("/m/{slug}/targets/{target_id}")
async def target_page(request: Request, slug: str, target_id: str) -> Response:
    page = await merchant_page(request, slug)
    async with page.db.transaction() as session:
        shown = await target_view(page, session, target_id)
        target: ProvisioningTarget = shown["target"]
        runs = await recent_runs(session, page.merchant_id, target.id)
    scheme = None
    if target.kind in HTPASSWD_KINDS:
        try:
            scheme = target_scheme_key(target.config or {})
        except ValueError:
            scheme = None
    return page.render(
        "targets/detail.html",
        title=page.t("title_target", name=target.name),
        row=shown,
        config=sorted(
            (key, value)
            for key, value in (target.config or {}).items()
            if scheme is None or key not in ("hash_scheme", "hash_cost")
        ),
        secrets=service.secret_names(page.settings.secret_key, target),
        scheme=scheme,
        runs=runs,
        action_text=action_text,
    )


@router.get("/m/{slug}/targets/{target_id}/status")
async def target_status(request: Request, slug: str, target_id: str) -> Response:
    """The status block alone, for the htmx poll; without htmx, the detail page."""
    page = await merchant_page(request, slug)
    if request.headers.get("hx-request") != "true":
        return page.redirect(page.url(f"targets/{target_id}"))
    async with page.db.transaction() as session:
        shown = await target_view(page, session, target_id)
    return page.render("targets/_status.html", title="", row=shown)


async def _retry_later(page: Page, results: list[ReconcileResult]) -> None:
    """As the API: a failed reconciliation on demand leaves a job behind, which retries with backoff."""
    if any(result.failed for result in results):
        async with page.db.transaction() as session:
            await service.request_sync(session, page.merchant_id, "reconciliation on demand failed")


@router.post("/m/{slug}/targets/reconcile")
async def reconcile_all(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    await page.form()
    results = await reconcile_merchant(page.db, page.settings, page.merchant_id, page.actor)
    await _retry_later(page, results)
    failed = [result for result in results if result.failed]
    if failed:
        error = page.t("tgt_reconciled_all_failed", count=len(results), failed=len(failed))
        return page.redirect(page.url("targets"), error=error)
    return page.redirect(page.url("targets"), notice=page.t("tgt_reconciled_all", count=len(results)))


@router.post("/m/{slug}/targets/{target_id}/reconcile")
async def reconcile_one(request: Request, slug: str, target_id: str) -> Response:
    page = await merchant_page(request, slug)
    await page.form()
    async with page.db.transaction() as session:
        try:
            target = await service.get_target(session, page.merchant_id, target_id)
        except NotFound:
            raise page.not_found() from None
    result = await reconcile_target(page.db, page.settings, page.merchant_id, target.id, page.actor)
    if result is None:
        raise page.not_found()
    await _retry_later(page, [result])
    here = page.url(f"targets/{target.id}")
    text = reconcile_notice(page.t, result)
    if result.status != STATUS_OK:
        return page.redirect(here, error=text)
    return page.redirect(here, notice=text)
