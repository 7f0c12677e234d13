"""REST: a merchant's own blacklist reports, and the operator's review (``/api/v1/operator/...``).

A merchant sees its own reports and nothing else: no other reporter, no other
evidence, no count. The operator authenticates with the instance's operator key;
without one configured the whole operator tree answers 404.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from einlass.audit.service import Actor
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.errors import AuthenticationFailed, NotFound
from einlass.rest.common import (
    ApiContext,
    api_context,
    bearer_secret,
    database,
    iso,
    list_response,
    page_limit,
    settings_of,
)
from einlass.screening import operator_service as operator
from einlass.screening import service
from einlass.screening.decisions import default_region
from einlass.screening.identifiers import IdentifierKind, normalize
from einlass.screening.models import (
    CATEGORIES,
    REPORT_CONFIRMED,
    REPORT_REJECTED,
    Appeal,
    BlacklistEntry,
    BlacklistReport,
)
from einlass.tenants.models import Merchant

router = APIRouter(tags=["blacklist"])
operator_router = APIRouter(prefix="/operator", tags=["operator"])

CATEGORY_FIELD = Field(max_length=32, description=f"one of {', '.join(CATEGORIES)}")


class Evidence(BaseModel):
    text: str | None = Field(default=None, max_length=service.MAX_EVIDENCE_TEXT)
    payment: str | None = Field(default=None, max_length=40, description="A payment id (pay_...)")


class ReportCreate(BaseModel):
    identifiers: dict[str, str] = Field(
        description="kind -> value, e.g. {'email': 'a@example.com', 'phone': '+4930...'}",
        min_length=1,
        max_length=len(IdentifierKind),
    )
    category: str = CATEGORY_FIELD
    evidence: Evidence | None = None


def _evidence(body: Evidence | None) -> dict[str, Any] | None:
    document = {} if body is None else body.model_dump(exclude_none=True)
    return document or None


def render_own_report(settings: Settings, report: BlacklistReport, entry: BlacklistEntry) -> dict[str, Any]:
    """What the reporter may see of its own report: never another report or reporter."""
    return {
        "id": report.id,
        "object": "blacklist_report",
        "kind": entry.kind,
        "category": entry.category,
        "status": report.status,
        "entry_status": entry.status,
        "evidence": service.unseal(settings, report.evidence),
        "created_at": iso(report.created_at),
        "updated_at": iso(report.updated_at),
    }


@router.post("/blacklist_reports")
async def create_reports(body: ReportCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    identifiers = service.parse_identifiers(body.identifiers, default_region(ctx.merchant))
    async with ctx.transaction() as session:
        filed = await service.report_identifiers(
            session,
            ctx.settings,
            ctx.merchant,
            identifiers,
            category=body.category,
            evidence=_evidence(body.evidence),
            actor=ctx.actor,
        )
        data = [
            {
                **render_own_report(ctx.settings, item.report, item.entry),
                "already_reported": item.already_reported,
            }
            for item in filed
        ]
    return {"object": "list", "data": data}


@router.get("/blacklist_reports")
async def list_reports(
    ctx: ApiContext = Depends(api_context), limit: int = 20, starting_after: str | None = None
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.transaction() as session:
        rows = await service.merchant_reports(
            session, ctx.merchant_id, starting_after=starting_after, limit=limit + 1
        )
    return list_response(
        "/api/v1/blacklist_reports", rows, limit, lambda row: render_own_report(ctx.settings, *row)
    )


@router.get("/blacklist_reports/{report_id}")
async def get_report(report_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        report, entry = await service.merchant_report(session, ctx.merchant_id, report_id)
    return render_own_report(ctx.settings, report, entry)


@router.post("/blacklist_reports/{report_id}/withdraw")
async def withdraw_report(report_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        report, entry, deleted = await service.withdraw_report(
            session, ctx.settings, ctx.merchant_id, report_id, ctx.actor
        )
        document = render_own_report(ctx.settings, report, entry)
    return {**document, "entry_status": "deleted" if deleted else entry.status}


# The operator -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorContext:
    db: Database
    settings: Settings
    actor: Actor = operator.OPERATOR


async def operator_context(request: Request) -> OperatorContext:
    settings = settings_of(request)
    if not settings.operator_api_key:
        # No operator on this instance: the tree does not exist, rather than being locked.
        raise NotFound("not found", code="not_found")
    secret = bearer_secret(request) or ""
    if not hmac.compare_digest(secret.encode(), settings.operator_api_key.encode()):
        raise AuthenticationFailed(
            "send the operator key as 'Authorization: Bearer <key>'", code="invalid_operator_key"
        )
    return OperatorContext(database(request), settings)


def render_review(
    settings: Settings, report: BlacklistReport, entry: BlacklistEntry, merchant: Merchant | None
) -> dict[str, Any]:
    return {
        "id": report.id,
        "object": "blacklist_report",
        "source": report.source,
        "reporter": None if merchant is None else {"merchant": merchant.id, "slug": merchant.slug},
        "status": report.status,
        "evidence": service.unseal(settings, report.evidence),
        "review_note": report.review_note,
        "reviewed_at": iso(report.reviewed_at),
        "created_at": iso(report.created_at),
        "entry": render_entry(entry),
    }


def render_entry(entry: BlacklistEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "blacklist_entry",
        "kind": entry.kind,
        "category": entry.category,
        "status": entry.status,
        "source": entry.source,
        "expires_at": iso(entry.expires_at),
    }


def render_appeal(settings: Settings, appeal: Appeal, entry: BlacklistEntry) -> dict[str, Any]:
    return {
        "id": appeal.id,
        "object": "blacklist_appeal",
        "status": appeal.status,
        "statement": service.unseal(settings, appeal.statement),
        "created_at": iso(appeal.created_at),
        "decided_at": iso(appeal.decided_at),
        "entry": render_entry(entry),
    }


class ReviewNote(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class RejectNote(BaseModel):
    note: str = Field(min_length=1, max_length=2000)


class OperatorEntryCreate(BaseModel):
    kind: IdentifierKind
    value: str = Field(max_length=500)
    category: str = CATEGORY_FIELD
    evidence: Evidence | None = None


class DataSubject(BaseModel):
    kind: IdentifierKind
    value: str = Field(max_length=500)


@operator_router.get("/blacklist_reports")
async def review_queue(
    ctx: OperatorContext = Depends(operator_context),
    status: str | None = "pending",
    limit: int = 50,
    starting_after: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.db.transaction() as session:
        rows = await operator.review_queue(
            session, status=status or None, starting_after=starting_after, limit=limit + 1
        )
    return list_response(
        "/api/v1/operator/blacklist_reports", rows, limit, lambda row: render_review(ctx.settings, *row)
    )


async def _review(ctx: OperatorContext, report_id: str, status: str, note: str | None) -> dict[str, Any]:
    async with ctx.db.transaction() as session:
        report, entry = await operator.review_report(
            session, ctx.settings, report_id, status=status, note=note, actor=ctx.actor
        )
        merchant = await session.get(Merchant, report.merchant_id) if report.merchant_id else None
        return render_review(ctx.settings, report, entry, merchant)


@operator_router.post("/blacklist_reports/{report_id}/confirm")
async def confirm_report(
    report_id: str, body: ReviewNote | None = None, ctx: OperatorContext = Depends(operator_context)
) -> dict[str, Any]:
    return await _review(ctx, report_id, REPORT_CONFIRMED, body.note if body else None)


@operator_router.post("/blacklist_reports/{report_id}/reject")
async def reject_report(
    report_id: str, body: RejectNote, ctx: OperatorContext = Depends(operator_context)
) -> dict[str, Any]:
    return await _review(ctx, report_id, REPORT_REJECTED, body.note)


@operator_router.post("/blacklist_entries")
async def create_entry(
    body: OperatorEntryCreate, ctx: OperatorContext = Depends(operator_context)
) -> dict[str, Any]:
    identifier = normalize(body.kind, body.value)
    async with ctx.db.transaction() as session:
        entry, report = await operator.operator_entry(
            session,
            ctx.settings,
            identifier,
            category=body.category,
            evidence=_evidence(body.evidence),
            actor=ctx.actor,
        )
        return {**render_entry(entry), "report": report.id}


@operator_router.get("/appeals")
async def list_appeals(
    ctx: OperatorContext = Depends(operator_context),
    status: str | None = "pending",
    limit: int = 50,
    starting_after: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.db.transaction() as session:
        rows = await operator.appeals(
            session, status=status or None, starting_after=starting_after, limit=limit + 1
        )
    return list_response(
        "/api/v1/operator/appeals", rows, limit, lambda row: render_appeal(ctx.settings, *row)
    )


async def _decide(ctx: OperatorContext, appeal_id: str, uphold: bool, note: str | None) -> dict[str, Any]:
    async with ctx.db.transaction() as session:
        appeal, entry = await operator.decide_appeal(
            session, ctx.settings, appeal_id, uphold=uphold, note=note, actor=ctx.actor
        )
        return render_appeal(ctx.settings, appeal, entry)


@operator_router.post("/appeals/{appeal_id}/uphold")
async def uphold_appeal(
    appeal_id: str, body: ReviewNote | None = None, ctx: OperatorContext = Depends(operator_context)
) -> dict[str, Any]:
    return await _decide(ctx, appeal_id, True, body.note if body else None)


@operator_router.post("/appeals/{appeal_id}/dismiss")
async def dismiss_appeal(
    appeal_id: str, body: ReviewNote | None = None, ctx: OperatorContext = Depends(operator_context)
) -> dict[str, Any]:
    return await _decide(ctx, appeal_id, False, body.note if body else None)


@operator_router.post("/data_subject_export")
async def data_subject_export(
    body: DataSubject, ctx: OperatorContext = Depends(operator_context)
) -> dict[str, Any]:
    identifier = normalize(body.kind, body.value)
    async with ctx.db.transaction() as session:
        document = await operator.export_data_subject(session, ctx.settings, identifier)
        operator.record_export(session, identifier, ctx.actor)
    return document


@operator_router.post("/data_subject_erasure")
async def data_subject_erasure(
    body: DataSubject, ctx: OperatorContext = Depends(operator_context)
) -> dict[str, Any]:
    identifier = normalize(body.kind, body.value)
    async with ctx.db.transaction() as session:
        erased = await operator.erase_data_subject(session, ctx.settings, identifier, ctx.actor)
    return {"object": "data_subject_erasure", "kind": identifier.kind.value, "erased": erased}


# Unknown paths under /operator/ 404 anyway; the dependency makes known ones 404 too when disabled.
router.include_router(operator_router)
