"""Admin: what staff do to one member (``POST /admin/m/{slug}/members/{id}/...``).

Each action calls the service the REST API calls, in one transaction, and
redirects back to the member page with a notice, or with the refusal and
nothing changed. Viewers and posts without the CSRF token are refused by
``page.form()``; a member, grant, subscription or whitelist entry of another
merchant (or of another member) is the same 404 as one that does not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass import clock
from einlass.admin import member_detail_text  # noqa: F401  (registers the strings)
from einlass.admin.billing_subscriptions import post_subscription_action
from einlass.admin.i18n import format_when
from einlass.admin.member_reads import find_member, payment_ids, whitelist_entries
from einlass.admin.page import Page, merchant_page
from einlass.billing.catalogue import get_area
from einlass.errors import InvalidInput
from einlass.members import service
from einlass.members.access import MemberStanding, access_until, may_enter
from einlass.members.models import Grant, Member
from einlass.screening import service as screening
from einlass.screening import whitelist
from einlass.screening.decisions import default_region
from einlass.web import Form

router = APIRouter()

MEMBER = "/m/{slug}/members/{member_id}"
MAX_TEXT = 500
EXTEND_PERIODS = {"30d": timedelta(days=30), "90d": timedelta(days=90)}
EXTEND_CHOICES = ("30d", "90d", "1y", "until")
REVOKE_REASON = "revoked by admin"
UNLOCKED = MemberStanding(locked=False, deleted=False)


class FormProblem(InvalidInput):
    """A form value the page itself refuses, with the (translated) reason."""


# -- form values -------------------------------------------------------------------------------------


def text(page: Page, form: dict[str, str], name: str, limit: int = MAX_TEXT) -> str | None:
    value = form.get(name, "").strip()
    if len(value) > limit:
        raise FormProblem(page.t("md_too_long", limit=limit))
    return value or None


def day(page: Page, form: dict[str, str], name: str) -> datetime | None:
    """A ``<input type="date">`` value as the start of that day in UTC."""
    value = form.get(name, "").strip()
    if not value:
        return None
    try:
        parsed = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise FormProblem(page.t("md_bad_day", value=value[:20])) from None
    return parsed.replace(tzinfo=UTC)


def end_of(moment: datetime | None) -> datetime | None:
    """Access "until" a day lasts through that day."""
    return moment + timedelta(days=1) if moment is not None else None


def a_year_after(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + 1, day=28)


# -- the frame of every action ---------------------------------------------------------------------

Action = Callable[[Page, Form, AsyncSession, Member], Awaitable[str]]


def member_action(path: str) -> Callable[[Action], Action]:
    """Route ``POST …/members/{member_id}`` + ``path`` to the action.

    The action runs on the locked member in one transaction and returns the
    notice; back to the member page either way (``page.act``). Further ids in
    ``path`` are in ``page.request.path_params``.
    """

    def route(action: Action) -> Action:
        async def handler(request: Request, slug: str, member_id: str) -> Response:
            page = await merchant_page(request, slug)
            form = await page.form()

            async def work(session: AsyncSession) -> str:
                member = await find_member(page, session, member_id, for_update=True)
                return await action(page, form, session, member)

            return await page.act(page.url(f"members/{member_id}"), work)

        router.post(MEMBER + path, name=action.__name__, description=action.__doc__ or "")(handler)
        return action

    return route


# -- the profile -------------------------------------------------------------------------------------


@member_action("/edit")
async def edit(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    assert page.merchant is not None
    email = text(page, form, "email", 320)
    name = text(page, form, "name", 200)
    locale = form.get("locale") or None
    await service.update_member(
        session, page.merchant, member, email=email, name=name or "", locale=locale, actor=page.actor
    )
    return page.t("md_edited")


@member_action("/lock")
async def lock(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    await service.lock_member(session, member, text(page, form, "reason"), page.actor)
    return page.t("md_locked")


@member_action("/unlock")
async def unlock(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    await service.unlock_member(session, member, page.actor)
    return page.t("md_unlocked")


@member_action("/delete")
async def delete(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    if form.get("confirm") != "yes":
        raise FormProblem(page.t("md_delete_unconfirmed"))
    await service.erase_member(session, page.settings.secret_key, member, page.actor)
    return page.t("md_deleted")


@member_action("/password")
async def reset_password(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    assert page.merchant is not None
    await service.set_password(session, page.merchant, member, None, page.actor)
    return page.t("md_reset_done")


@member_action("/credentials")
async def resend_credentials(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    """The credentials email again; a member without a password yet gets a new one in it."""
    assert page.merchant is not None
    if member.deleted_at is not None:
        raise FormProblem(page.t("md_is_deleted"))
    new_password = member.password_hash is None
    await service.send_credentials(
        session, page.merchant, member, new_password=new_password, actor=page.actor
    )
    return page.t("md_resend_done")


# -- access ------------------------------------------------------------------------------------------


@member_action("/grants")
async def grant(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    assert page.merchant is not None
    area = await get_area(session, page.merchant_id, form.get("area", ""))
    await service.grant_manually(
        session,
        page.merchant,
        member,
        area,
        starts_at=day(page, form, "starts"),
        ends_at=end_of(day(page, form, "until")),
        note=text(page, form, "note"),
        actor=page.actor,
    )
    return page.t("md_granted", area=area.name)


@member_action("/extend")
async def extend(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    """A grant by hand that starts where the access in the area ends now (or now, when it has ended)."""
    assert page.merchant is not None
    area = await get_area(session, page.merchant_id, form.get("area", ""))
    period = form.get("period", "")
    if period not in EXTEND_CHOICES:
        raise FormProblem(page.t("md_bad_choice"))
    note = text(page, form, "note", MAX_TEXT - 10)
    until_day = day(page, form, "until")
    now = clock.now()
    windows = [service.window(grant) for grant in await service.grants_of(session, member)]
    # The grants decide, not the member's lock: a locked member's extension follows on too.
    starts = access_until(windows, area.id, now) if may_enter(UNLOCKED, windows, area.id, now) else now
    if starts is None:
        raise FormProblem(page.t("md_extend_unlimited"))
    if period == "until":
        if until_day is None:
            raise FormProblem(page.t("md_extend_no_day"))
        ends = end_of(until_day)
    elif period == "1y":
        ends = a_year_after(starts)
    else:
        ends = starts + EXTEND_PERIODS[period]
    await service.grant_manually(
        session,
        page.merchant,
        member,
        area,
        starts_at=starts,
        ends_at=ends,
        note=f"extended: {note}" if note else "extended",
        actor=page.actor,
    )
    return page.t("md_extended", area=area.name, until=format_when(ends, page.lang))


@member_action("/grants/{grant_id}/revoke")
async def revoke(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    grant_id = page.request.path_params["grant_id"]
    assert page.merchant is not None
    found = await session.scalar(
        select(Grant.id).where(
            Grant.id == grant_id, Grant.merchant_id == page.merchant_id, Grant.member_id == member.id
        )
    )
    if found is None:
        raise page.not_found()
    reason = text(page, form, "reason", 200) or REVOKE_REASON
    await service.revoke_grant(session, page.merchant, grant_id, reason, page.actor)
    return page.t("md_revoked_done")


# -- subscriptions -----------------------------------------------------------------------------------


@router.post(MEMBER + "/subscriptions/{subscription_id}/action")
async def subscription_action(request: Request, slug: str, member_id: str, subscription_id: str) -> Response:
    """The subscription page's action form, posted from the member page: back to the member page."""
    page = await merchant_page(request, slug)
    back = page.url(f"members/{member_id}")
    return await post_subscription_action(page, subscription_id, back, member_id=member_id)


# -- screening ---------------------------------------------------------------------------------------


@member_action("/whitelist")
async def add_to_whitelist(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    assert page.merchant is not None
    await whitelist.add_entry(
        session,
        page.settings,
        page.merchant,
        member_id=member.id,
        note=text(page, form, "note", whitelist.MAX_NOTE),
        actor=page.actor,
    )
    return page.t("md_whitelisted_done")


@member_action("/whitelist/{entry_id}/remove")
async def remove_from_whitelist(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    entry_id = page.request.path_params["entry_id"]
    if entry_id not in {entry.id for entry in await whitelist_entries(session, page, member)}:
        raise page.not_found()
    await whitelist.remove_entry(session, page.merchant_id, entry_id, page.actor)
    return page.t("md_unwhitelisted_done")


@member_action("/report")
async def report(page: Page, form: Form, session: AsyncSession, member: Member) -> str:
    """A blacklist report of the member's email address, as ``POST /api/v1/blacklist_reports``."""
    assert page.merchant is not None
    if not member.email:
        raise FormProblem(page.t("md_report_no_email"))
    identifiers = screening.parse_identifiers({"email": member.email}, default_region(page.merchant))
    payment = form.get("payment") or None
    if payment is not None and payment not in await payment_ids(session, page.merchant_id, member):
        raise FormProblem(page.t("md_report_bad_payment"))
    evidence = {"text": text(page, form, "evidence", screening.MAX_EVIDENCE_TEXT), "payment": payment}
    filed = await screening.report_identifiers(
        session,
        page.settings,
        page.merchant,
        identifiers,
        category=form.get("category", ""),
        evidence={key: value for key, value in evidence.items() if value} or None,
        actor=page.actor,
    )
    already = all(item.already_reported for item in filed)
    return page.t("md_reported_already" if already else "md_reported")
