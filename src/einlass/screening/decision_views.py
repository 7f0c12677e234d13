"""REST: screenings (the checkout asks before the payment) and the merchant's whitelist."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from einlass.db.util import newest_first
from einlass.errors import InvalidInput
from einlass.rest.common import ApiContext, api_context, list_response, page_limit
from einlass.screening import whitelist
from einlass.screening.decisions import (
    CONTEXT_CHECKOUT,
    decision_document,
    get_decision,
    of_member,
    screen,
)
from einlass.screening.identifiers import MAX_RAW
from einlass.screening.models import ScreeningDecision

router = APIRouter(tags=["screening"])

RawIdentifier = Field(default=None, max_length=MAX_RAW)


class Identifiers(BaseModel):
    """What the checkout knows of the customer; each is normalised, then only its digest is used."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = RawIdentifier
    phone: str | None = Field(
        default=None, max_length=MAX_RAW, description="E.164, or national in the merchant's region"
    )
    iban: str | None = RawIdentifier
    card_fingerprint: str | None = Field(
        default=None, max_length=MAX_RAW, description="As the gateway gives it (Stripe card.fingerprint)"
    )
    ip: str | None = RawIdentifier
    device_id: str | None = RawIdentifier
    name_postcode: str | None = Field(default=None, max_length=MAX_RAW, examples=["Anna Muster|10115"])


class ScreeningRequest(BaseModel):
    identifiers: Identifiers = Field(default_factory=Identifiers)
    member: str | None = Field(
        default=None, description="A member id (mem_...), to honour a whitelist by member"
    )


class WhitelistCreate(BaseModel):
    member: str | None = Field(default=None, description="A member id (mem_...)")
    kind: str | None = Field(
        default=None, description="email, phone, iban, card_fingerprint, ip, device_id, name_postcode"
    )
    value: str | None = Field(
        default=None, max_length=MAX_RAW, description="The raw identifier; only its digest is kept"
    )
    note: str | None = Field(default=None, max_length=whitelist.MAX_NOTE)


@router.post("/screenings", status_code=201)
async def create_screening(body: ScreeningRequest, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    """Ask before the payment: accept, review (an entry waits for review) or reject.

    The merchant's whitelist wins over the shared blacklist. Reasons name the
    identifier's kind, the category and the entry's status, never who reported it.
    """
    identifiers = body.identifiers.model_dump(exclude_none=True)
    if not identifiers and body.member is None:
        raise InvalidInput("give at least one identifier or a member", param="identifiers")
    try:
        async with ctx.transaction() as session:
            decision = await screen(
                session,
                ctx.settings,
                ctx.merchant,
                identifiers,
                member_id=body.member,
                context=CONTEXT_CHECKOUT,
            )
    except InvalidInput as error:
        if error.param in identifiers:
            error.param = f"identifiers.{error.param}"
        raise
    return decision_document(decision)


@router.get("/screenings")
async def list_screenings(
    ctx: ApiContext = Depends(api_context),
    member: str | None = None,
    payment: str | None = None,
    limit: int = 20,
    starting_after: str | None = None,
) -> dict[str, Any]:
    """The merchant's decisions, newest first; filter by member or payment."""
    limit = page_limit(limit)
    query = select(ScreeningDecision).where(ScreeningDecision.merchant_id == ctx.merchant_id)
    if member is not None:
        query = query.where(of_member(ctx.merchant_id, member))
    if payment is not None:
        query = query.where(ScreeningDecision.payment_id == payment)
    async with ctx.transaction() as session:
        rows = await newest_first(
            session, query, ScreeningDecision.id, starting_after=starting_after, limit=limit + 1
        )
    return list_response("/api/v1/screenings", rows, limit, decision_document)


@router.get("/screenings/{screening_id}")
async def get_screening(screening_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        return decision_document(await get_decision(session, ctx.merchant_id, screening_id))


@router.post("/whitelist", status_code=201)
async def add_to_whitelist(body: WhitelistCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    """Whitelist a member, or an identifier (kind and value): screening then always accepts them here."""
    async with ctx.transaction() as session:
        entry = await whitelist.add_entry(
            session,
            ctx.settings,
            ctx.merchant,
            member_id=body.member,
            kind=body.kind,
            value=body.value,
            note=body.note,
            actor=ctx.actor,
        )
        return whitelist.entry_document(entry)


@router.get("/whitelist")
async def list_whitelist(
    ctx: ApiContext = Depends(api_context),
    member: str | None = None,
    limit: int = 20,
    starting_after: str | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.transaction() as session:
        rows = await whitelist.list_entries(
            session, ctx.merchant_id, member_id=member, starting_after=starting_after, limit=limit + 1
        )
    return list_response("/api/v1/whitelist", rows, limit, whitelist.entry_document)


@router.get("/whitelist/{entry_id}")
async def get_whitelist_entry(entry_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        return whitelist.entry_document(await whitelist.get_entry(session, ctx.merchant_id, entry_id))


@router.delete("/whitelist/{entry_id}")
async def remove_from_whitelist(entry_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        entry = await whitelist.remove_entry(session, ctx.merchant_id, entry_id, ctx.actor)
        return {**whitelist.entry_document(entry), "deleted": True}
