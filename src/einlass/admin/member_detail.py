"""Admin: one member's page (``GET /admin/m/{slug}/members/{id}``).

Profile, access per area and the grants it comes from, subscriptions with
their actions, payments, screening decisions and whitelist, and the audit
trail. The actions themselves are in ``member_actions`` (its router is
included here).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass import clock
from einlass.admin import member_actions
from einlass.admin.billing_subscriptions import change_plan_choices
from einlass.admin.member_reads import find_member, payments_of, whitelist_entries
from einlass.admin.page import Page, merchant_page
from einlass.audit.models import AuditEntry
from einlass.audit.service import list_entries
from einlass.billing.catalogue import list_areas, list_plans
from einlass.billing.models import Plan
from einlass.billing.subscriptions.models import SubscriptionAction
from einlass.billing.subscriptions.queries import member_subscriptions
from einlass.billing.subscriptions.rules import ENDED, Status
from einlass.members import service
from einlass.members.models import GRANT_SOURCE_MANUAL, Member
from einlass.screening.decisions import decision_document, recent_decisions
from einlass.screening.models import CATEGORIES
from einlass.screening.whitelist import member_whitelisted
from einlass.tenants.models import StaffAccount

router = APIRouter()
router.include_router(member_actions.router)

AUDIT_ENTRIES = 50
PAYMENTS = 50
DECISIONS = 10
ACTIONS_PER_SUBSCRIPTION = 5
STAFF_ACTORS = ("admin", "operator")
KNOWN_ACTORS = frozenset({*STAFF_ACTORS, "api_key", "gateway_event", "job", "member", "cli", "system"})


@router.get("/m/{slug}/members/{member_id}")
async def member_page(request: Request, slug: str, member_id: str) -> Response:
    page = await merchant_page(request, slug)
    async with page.db.read_sessionmaker() as session, session.begin():
        member = await find_member(page, session, member_id)
        values = await _contents(page, session, member)
    shown = member.email or member.name or member.id
    return page.render("member_detail/page.html", title=page.t("md_title", name=shown), **values)


async def _contents(page: Page, session: AsyncSession, member: Member) -> dict[str, Any]:
    assert page.merchant is not None
    now = clock.now()
    areas = {area.id: area for area in await list_areas(session, page.merchant_id)}
    plans = {plan.id: plan for plan in await list_plans(session, page.merchant_id)}
    grants = await service.grants_of(session, member)
    access = [
        {"area": areas[row.area_id], "active": row.active, "until": row.until}
        for row in await service.access_of(session, member, now)
    ]
    subscriptions = await _subscriptions(session, page.merchant_id, member, list(plans.values()))
    payments = await payments_of(session, page.merchant_id, member, PAYMENTS)
    subscription_ids = {row["subscription"].id for row in subscriptions}
    payment_ids = {payment.id for payment in payments}
    timeline = [
        {
            "grant": grant,
            "area": areas[grant.area_id],
            "anchor": _anchor(grant.source_kind, grant.source_id, payment_ids, subscription_ids),
            "revocable": grant.source_kind == GRANT_SOURCE_MANUAL
            and grant.revoked_at is None
            and (grant.ends_at is None or grant.ends_at > now),
        }
        for grant in sorted(grants, key=lambda grant: (grant.starts_at, grant.id), reverse=True)
    ]
    decisions = await recent_decisions(session, page.merchant_id, member.id, limit=DECISIONS)
    audit = await list_entries(session, page.merchant_id, member_id=member.id, limit=AUDIT_ENTRIES)
    return {
        "member": member,
        "member_status": "deleted" if member.deleted_at else "locked" if member.locked_at else "active",
        "access": access,
        "timeline": timeline,
        "area_options": [(area.id, area.name) for area in sorted(areas.values(), key=lambda area: area.slug)],
        "subscriptions": subscriptions,
        "plans": plans,
        "payments": payments,
        "decisions": [{**decision_document(decision), "at": decision.created_at} for decision in decisions],
        "whitelisted": await member_whitelisted(session, page.settings, page.merchant, member),
        "whitelist": await whitelist_entries(session, page, member),
        "categories": CATEGORIES,
        "audit": await _audit_rows(page, session, audit),
        "audit_limit": AUDIT_ENTRIES,
        "writable": page.can_write and member.deleted_at is None,
        "today": now.date().isoformat(),
    }


def _anchor(kind: str, source_id: str, payments: set[str], subscriptions: set[str]) -> str | None:
    """A link to the payment or subscription the grant came from, where it is on this page."""
    if kind == "payment" and source_id in payments:
        return f"#payment-{source_id}"
    if kind == "subscription" and source_id in subscriptions:
        return f"#subscription-{source_id}"
    return None


async def _subscriptions(
    session: AsyncSession, merchant_id: str, member: Member, plans: list[Plan]
) -> list[dict[str, Any]]:
    """The member's subscriptions, newest first, with their latest actions and the plans to change to."""
    rows = await member_subscriptions(session, merchant_id, member.id)
    done: dict[str, list[SubscriptionAction]] = {row.id: [] for row in rows}
    if rows:
        found = await session.scalars(
            select(SubscriptionAction)
            .where(
                SubscriptionAction.merchant_id == merchant_id,
                SubscriptionAction.subscription_id.in_(list(done)),
            )
            .order_by(SubscriptionAction.created_at.desc(), SubscriptionAction.id.desc())
        )
        for action in found:
            if len(done[action.subscription_id]) < ACTIONS_PER_SUBSCRIPTION:
                done[action.subscription_id].append(action)
    return [
        {
            "subscription": row,
            "actions": done[row.id],
            "ended": Status(row.status) in ENDED,
            "plan_choices": change_plan_choices(plans, row),
        }
        for row in rows
    ]


async def _audit_rows(page: Page, session: AsyncSession, entries: list[AuditEntry]) -> list[dict[str, Any]]:
    staff_ids = {entry.actor_id for entry in entries if entry.actor_kind in STAFF_ACTORS and entry.actor_id}
    emails: dict[str, str] = {}
    if staff_ids:
        found = await session.execute(
            select(StaffAccount.id, StaffAccount.email, StaffAccount.merchant_id).where(
                StaffAccount.id.in_(staff_ids)
            )
        )
        # The merchant's own staff by email; the operator's account stays a role.
        emails = {row.id: row.email for row in found if row.merchant_id == page.merchant_id}
    return [
        {"entry": entry, "actor": _actor(page, entry, emails), "changes": _changes(entry)}
        for entry in entries
    ]


def _actor(page: Page, entry: AuditEntry, emails: dict[str, str]) -> str:
    if entry.actor_kind not in KNOWN_ACTORS:
        return f"{entry.actor_kind} {entry.actor_id or ''}".strip()
    who = emails.get(entry.actor_id or "", "" if entry.actor_kind in STAFF_ACTORS else entry.actor_id or "")
    return page.t(f"md_actor_{entry.actor_kind}", who=who).strip()


def _short(value: object) -> str:
    if value is None:
        return "\u2013"
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= 80 else shown[:79] + "\u2026"


def _changes(entry: AuditEntry) -> list[tuple[str, str]]:
    """``key: before → after`` for what changed; what was only added or only removed likewise."""
    before, after = entry.before or {}, entry.after or {}
    rows = []
    for key in dict.fromkeys([*before, *after]):
        if key in before and key in after:
            if before[key] != after[key]:
                rows.append((key, f"{_short(before[key])} \u2192 {_short(after[key])}"))
        elif key in after:
            rows.append((key, _short(after[key])))
        else:
            rows.append((key, f"{_short(before[key])} \u2192 \u2013"))
    return rows
