"""REST: the audit log, per merchant and per member."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from einlass.audit.models import AuditEntry
from einlass.audit.service import list_entries
from einlass.rest.common import ApiContext, api_context, iso, list_response, page_limit

router = APIRouter(tags=["audit"])


def render_entry(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "audit_entry",
        "actor": {"kind": entry.actor_kind, "id": entry.actor_id},
        "action": entry.action,
        "entity": {"kind": entry.entity_kind, "id": entry.entity_id},
        "member": entry.member_id,
        "before": entry.before,
        "after": entry.after,
        "at": iso(entry.at),
    }


@router.get("/audit_entries")
async def audit_entries(
    ctx: ApiContext = Depends(api_context),
    member: str | None = None,
    limit: int = 50,
    starting_after: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.transaction() as session:
        rows = await list_entries(
            session, ctx.merchant_id, member_id=member, starting_after=starting_after, limit=limit + 1
        )
        return list_response("/api/v1/audit_entries", rows, limit, render_entry)
