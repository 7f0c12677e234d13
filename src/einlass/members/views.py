"""REST: members, their access and grants."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, EmailStr, Field
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.billing.catalogue import get_area
from einlass.billing.subscriptions.queries import member_subscriptions
from einlass.members import service
from einlass.members.models import Grant, Member
from einlass.rest.common import ApiContext, api_context, iso, list_response, page_limit
from einlass.screening.decisions import decision_document, recent_decisions
from einlass.screening.whitelist import member_whitelisted

router = APIRouter(tags=["members"])
# The member detail shows the newest screening decisions; all are at /screenings?member=.
RECENT_SCREENINGS = 5


def render_grant(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "object": "grant",
        "member": grant.member_id,
        "area": grant.area_id,
        "source": {"kind": grant.source_kind, "id": grant.source_id},
        "starts_at": iso(grant.starts_at),
        "ends_at": iso(grant.ends_at),
        "revoked_at": iso(grant.revoked_at),
        "revoked_reason": grant.revoked_reason,
        "note": grant.note,
    }


def render_member(member: Member, access: list[service.AreaAccess] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": member.id,
        "object": "member",
        "email": member.email,
        "name": member.name,
        "username": member.username,
        "locale": member.locale,
        "status": "deleted" if member.deleted_at else "locked" if member.locked_at else "active",
        "locked_at": iso(member.locked_at),
        "lock_reason": member.lock_reason,
        "deleted_at": iso(member.deleted_at),
        "created_at": iso(member.created_at),
    }
    if access is not None:
        document["access"] = [
            {"area": a.area_slug, "area_id": a.area_id, "active": a.active, "until": iso(a.until)}
            for a in access
        ]
    return document


async def subscriptions_of(session: AsyncSession, member: Member) -> list[dict[str, Any]]:
    """The member's subscriptions, newest first, in brief (details at /subscriptions/{id})."""
    rows = await member_subscriptions(session, member.merchant_id, member.id)
    return [
        {
            "id": row.id,
            "object": "subscription",
            "status": row.status,
            "plan": row.plan_id,
            "paid_through": iso(row.paid_through),
            "access_until": iso(row.access_until),
        }
        for row in rows
    ]


class MemberCreate(BaseModel):
    email: EmailStr
    name: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, description="Omit to generate one")
    locale: str | None = Field(default=None, pattern="^(de|en)$")
    send_credentials: bool = Field(default=True, description="Email the credentials to the member")


class MemberUpdate(BaseModel):
    email: EmailStr | None = None
    name: str | None = Field(default=None, max_length=200)


class LockRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class PasswordRequest(BaseModel):
    password: str | None = Field(default=None, description="Omit to generate one and email it")


class GrantCreate(BaseModel):
    area: str = Field(description="Area id or slug")
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = Field(default=None, description="Omit for access without end")
    note: str | None = Field(default=None, max_length=500)


class GrantRevoke(BaseModel):
    reason: str = Field(default="revoked by admin", max_length=200)


@router.get("/members")
async def list_members(
    ctx: ApiContext = Depends(api_context),
    limit: int = 20,
    starting_after: str | None = None,
    email: str | None = Query(default=None),
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.transaction() as session:
        rows = await service.list_members(
            session, ctx.merchant_id, email=email, starting_after=starting_after, limit=limit + 1
        )
        return list_response("/api/v1/members", rows, limit, render_member)


@router.post("/members", status_code=201)
async def create_member(body: MemberCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    """Without a password and with send_credentials, the member gets a generated one by email;
    with send_credentials false, the generated password is in the answer, once."""
    async with ctx.transaction() as session:
        member, password = await service.create_member(
            session,
            ctx.merchant,
            email=body.email,
            name=body.name,
            password=body.password,
            generate=body.password is None and not body.send_credentials,
            locale=body.locale,
            actor=ctx.actor,
        )
        if body.send_credentials:
            await service.send_credentials(session, ctx.merchant, member, new_password=body.password is None)
        document = render_member(member, [])
        if body.password is None and password is not None:
            document["password"] = password
        return document


@router.get("/members/{member_id}")
async def get_member(member_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id)
        decisions = await recent_decisions(session, ctx.merchant_id, member.id, limit=RECENT_SCREENINGS)
        return {
            **render_member(member, await service.access_of(session, member)),
            "subscriptions": await subscriptions_of(session, member),
            "screening_decisions": [decision_document(decision) for decision in decisions],
            "whitelisted": await member_whitelisted(session, ctx.settings, ctx.merchant, member),
        }


@router.post("/members/{member_id}")
async def update_member(
    member_id: str, body: MemberUpdate, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id, for_update=True)
        await service.update_member(
            session, ctx.merchant, member, email=body.email, name=body.name, actor=ctx.actor
        )
        return render_member(member, await service.access_of(session, member))


@router.delete("/members/{member_id}")
async def delete_member(member_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id, for_update=True)
        await service.erase_member(session, ctx.settings.secret_key, member, ctx.actor)
        return render_member(member)


@router.post("/members/{member_id}/lock")
async def lock_member(
    member_id: str, body: LockRequest | None = None, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id, for_update=True)
        await service.lock_member(session, member, body.reason if body else None, ctx.actor)
        return render_member(member, await service.access_of(session, member))


@router.post("/members/{member_id}/unlock")
async def unlock_member(member_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id, for_update=True)
        await service.unlock_member(session, member, ctx.actor)
        return render_member(member, await service.access_of(session, member))


@router.post("/members/{member_id}/password")
async def set_password(
    member_id: str, body: PasswordRequest | None = None, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id, for_update=True)
        await service.set_password(session, ctx.merchant, member, body.password if body else None, ctx.actor)
        return {**render_member(member), "credentials_emailed": not (body and body.password)}


@router.get("/members/{member_id}/grants")
async def list_grants(member_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id)
        grants = await service.grants_of(session, member)
        return {
            "object": "list",
            "url": f"/api/v1/members/{member_id}/grants",
            "data": [render_grant(g) for g in grants],
            "has_more": False,
        }


@router.post("/members/{member_id}/grants", status_code=201)
async def create_grant(
    member_id: str, body: GrantCreate, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    async with ctx.transaction() as session:
        member = await service.get_member(session, ctx.merchant_id, member_id, for_update=True)
        area = await get_area(session, ctx.merchant_id, body.area)
        grant = await service.grant_manually(
            session,
            ctx.merchant,
            member,
            area,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            note=body.note,
            actor=ctx.actor,
        )
        return render_grant(grant)


@router.post("/grants/{grant_id}/revoke")
async def revoke_grant(
    grant_id: str, body: GrantRevoke | None = None, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    async with ctx.transaction() as session:
        grant = await service.revoke_grant(
            session, ctx.merchant, grant_id, body.reason if body else "revoked by admin", ctx.actor
        )
        return render_grant(grant)
