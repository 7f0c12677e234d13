"""Admin: what the member page and its actions both read (tenant-scoped, by the member)."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.admin.page import Page
from einlass.billing.models import Payment
from einlass.errors import InvalidInput, NotFound
from einlass.members import service
from einlass.members.models import Member
from einlass.screening.decisions import default_region, identifier_digests
from einlass.screening.identifiers import normalize
from einlass.screening.models import WhitelistEntry


async def find_member(
    page: Page, session: AsyncSession, member_id: str, *, for_update: bool = False
) -> Member:
    """The merchant's member, or the page's 404."""
    try:
        return await service.get_member(session, page.merchant_id, member_id, for_update=for_update)
    except NotFound:
        raise page.not_found() from None


async def whitelist_entries(session: AsyncSession, page: Page, member: Member) -> list[WhitelistEntry]:
    """The merchant's whitelist entries naming this member, by id or by its email address."""
    assert page.merchant is not None
    matches = [WhitelistEntry.member_id == member.id]
    if member.email:
        try:
            email = normalize("email", member.email, default_region=default_region(page.merchant))
        except InvalidInput:
            email = None
        if email is not None:
            [(kind, value)] = identifier_digests(page.settings, [email])
            matches.append(and_(WhitelistEntry.kind == kind, WhitelistEntry.digest == value))
    rows = await session.scalars(
        select(WhitelistEntry)
        .where(WhitelistEntry.merchant_id == page.merchant_id, or_(*matches))
        .order_by(WhitelistEntry.id)
    )
    return list(rows)


async def payments_of(session: AsyncSession, merchant_id: str, member: Member, limit: int) -> list[Payment]:
    """The member's payments, newest first."""
    rows = await session.scalars(
        select(Payment)
        .where(Payment.merchant_id == merchant_id, Payment.member_id == member.id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    return list(rows)


async def payment_ids(session: AsyncSession, merchant_id: str, member: Member) -> set[str]:
    rows = await session.scalars(
        select(Payment.id).where(Payment.merchant_id == merchant_id, Payment.member_id == member.id)
    )
    return set(rows)
