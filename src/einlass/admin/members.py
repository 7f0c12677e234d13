"""Admin: the members list (search, filters, keyset pages), bulk lock and unlock, creating a member.

``GET /m/{slug}/members`` lists the merchant's members newest first, 50 a page
(``einlass.members.search``); with htmx, typing in the search box asks for the
results region alone. ``POST /m/{slug}/members/bulk`` locks or unlocks the
ticked members in one transaction with the services the API uses, and
``/m/{slug}/members/new`` creates one as ``POST /api/v1/members`` does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.admin.i18n import format_number, register
from einlass.admin.page import Page, merchant_page
from einlass.billing.catalogue import list_areas, list_plans
from einlass.errors import EinlassError, InvalidInput, NotFound
from einlass.members import service
from einlass.members.models import Member
from einlass.members.search import MAX_QUERY, STATUSES, MemberFilter, search_members

router = APIRouter()

MAX_BULK = 500
MAX_BULK_BYTES = 64 * 1024
MAX_ID = 40
MAX_NAME = 200
LOCALES = ("de", "en")
# The list's own query parameters, kept across pages and after a bulk action.
LIST_PARAMS = ("q", "status", "area", "plan")


# ------------------------------------------------------------------ the list


def _list_params(source: Any) -> dict[str, str]:
    return {key: str(source.get(key, "") or "").strip()[:MAX_QUERY] for key in LIST_PARAMS}


def _wants_fragment(request: Request) -> bool:
    """htmx asking for the results alone: not a boosted link or form, not a history restore."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-boosted") != "true"
        and headers.get("hx-history-restore-request") != "true"
    )


@router.get("/m/{slug}/members")
async def members_list(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    params = _list_params(request.query_params)
    after = request.query_params.get("starting_after", "")[:MAX_ID] or None
    async with page.db.read_sessionmaker() as session, session.begin():
        areas = await list_areas(session, page.merchant_id)
        plans = await list_plans(session, page.merchant_id)
        # Only the merchant's own areas and plans filter; anything else is no filter.
        area_id = params["area"] if params["area"] in {area.id for area in areas} else ""
        plan_id = params["plan"] if params["plan"] in {plan.id for plan in plans} else ""
        params.update(
            area=area_id, plan=plan_id, status=params["status"] if params["status"] in STATUSES else ""
        )
        filters = MemberFilter(
            q=params["q"], status=params["status"] or None, area_id=area_id or None, plan_id=plan_id or None
        )
        found = await search_members(session, page.merchant_id, filters, starting_after=after)
    values: dict[str, Any] = {
        "params": params,
        "rows": found.rows,
        "shown": page.t("ml_shown", count=format_number(len(found.rows), page.lang)),
        "next_href": page.url("members", **params, starting_after=found.next_after)
        if found.next_after
        else None,
        "first_href": page.url("members", **params) if after else None,
        "status_options": [("", page.t("ml_status_any"))] + [(s, page.t(f"ml_status_{s}")) for s in STATUSES],
        "area_options": [("", page.t("ml_any"))] + [(a.id, f"{a.name} ({a.slug})") for a in areas],
        "plan_options": [("", page.t("ml_any"))] + [(p.id, f"{p.name} ({p.slug})") for p in plans],
        "starting_after": after or "",
    }
    template = "members/_results.html" if _wants_fragment(request) else "members/list.html"
    return page.render(template, title=page.t("ml_title"), **values)


# ------------------------------------------------------------------ bulk lock and unlock


@router.post("/m/{slug}/members/bulk")
async def members_bulk(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    # One field per ticked member.
    form = await page.form(max_fields=MAX_BULK + 20, max_bytes=MAX_BULK_BYTES)
    ids = [value.strip() for value in form.getlist("member") if value.strip()]
    back = page.url("members", **_list_params(form), starting_after=form.get("starting_after", "")[:MAX_ID])
    action = form.get("action", "")
    if action not in ("lock", "unlock"):
        return page.redirect(back, error=page.t("ml_error_action"))
    ids = list(dict.fromkeys(ids))
    if not ids:
        return page.redirect(back, error=page.t("ml_error_none_selected"))
    if len(ids) > MAX_BULK:
        return page.redirect(back, error=page.t("ml_error_too_many", max=MAX_BULK))
    reason = form.get("reason", "").strip()[:500] or None

    async def work(session: AsyncSession) -> str:
        # One query, in id order (concurrent bulk posts lock rows in the same order).
        members = list(
            await session.scalars(
                select(Member)
                .where(Member.merchant_id == page.merchant_id, Member.id.in_(ids))
                .order_by(Member.id)
                .with_for_update()
            )
        )
        missing = sorted(set(ids) - {member.id for member in members})
        if missing:
            raise NotFound(f"no member {missing[0]!r}")
        changed = 0
        for member in members:
            was_locked = member.locked_at is not None
            if action == "lock":
                await service.lock_member(session, member, reason, page.actor)
            else:
                await service.unlock_member(session, member, page.actor)
            changed += was_locked != (member.locked_at is not None)
        done = "ml_locked" if action == "lock" else "ml_unlocked"
        notice = page.t(
            f"{done}_{'one' if changed == 1 else 'many'}", count=format_number(changed, page.lang)
        )
        if changed < len(ids):
            notice += " " + page.t("ml_unchanged", count=format_number(len(ids) - changed, page.lang))
        return notice

    return await page.act(back, work)


# ------------------------------------------------------------------ create a member


def _new_form(page: Page, values: dict[str, Any], *, status: int = 200, error: str | None = None) -> Response:
    options = [(code, page.t(f"ml_lang_{code}")) for code in LOCALES]
    return page.render(
        "members/new.html",
        title=page.t("ml_new"),
        status=status,
        values=values,
        locale_options=options,
        problem=error is not None,
        **({"error": error} if error else {}),
    )


@router.get("/m/{slug}/members/new")
async def new_member_form(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    assert page.merchant is not None
    locale = str(page.merchant.setting("locale") or "en")
    return _new_form(page, {"email": "", "name": "", "locale": locale, "send": True})


@router.post("/m/{slug}/members/new")
async def create_member(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    assert page.merchant is not None
    form = await page.form()
    email = form.get("email", "").strip()
    name = form.get("name", "").strip()
    locale = form.get("locale", "")
    send = form.get("send_credentials") == "yes"
    values = {"email": email[:320], "name": name[:MAX_NAME], "locale": locale, "send": send}
    try:
        if not email:
            raise InvalidInput(page.t("ml_error_email_missing"), param="email")
        if len(name) > MAX_NAME:
            raise InvalidInput(page.t("ml_error_name_long", max=MAX_NAME), param="name")
        async with page.db.transaction() as session:
            # As POST /api/v1/members: a generated password, emailed or shown here once.
            member, password = await service.create_member(
                session,
                page.merchant,
                email=email,
                name=name or None,
                password=None,
                generate=not send,
                locale=locale if locale in LOCALES else None,
                actor=page.actor,
            )
            if send:
                await service.send_credentials(session, page.merchant, member, new_password=True)
    except EinlassError as error:
        return _new_form(page, values, status=400, error=page.failed(error.message))
    if send or password is None:
        return page.redirect(page.url(f"members/{member.id}"), notice=page.t("ml_created_emailed"))
    # Shown on this answer only: never in a cookie, a URL or a log.
    return page.render(
        "members/created.html",
        title=page.t("ml_created_title"),
        password=password,
        member_href=page.url(f"members/{member.id}"),
        email=member.email,
    )


register(
    {
        "ml_title": {"en": "Members", "de": "Mitglieder"},
        "ml_filters": {"en": "Search and filter", "de": "Suchen und filtern"},
        "ml_search": {"en": "Search", "de": "Suche"},
        "ml_search_hint": {
            "en": "A member id (mem_…), the start of an email address, or the start of a first or last name.",
            "de": "Eine Mitglieds-ID (mem_…), der Anfang einer E-Mail-Adresse oder eines Vor- oder Nachnamens.",
        },
        "ml_search_button": {"en": "Search", "de": "Suchen"},
        "ml_status": {"en": "Status", "de": "Status"},
        "ml_status_any": {"en": "All but deleted", "de": "Alle außer gelöschten"},
        "ml_status_active": {"en": "active", "de": "aktiv"},
        "ml_status_locked": {"en": "locked", "de": "gesperrt"},
        "ml_status_deleted": {"en": "deleted", "de": "gelöscht"},
        "ml_area": {"en": "Access to area now", "de": "Jetzt Zugang zu Bereich"},
        "ml_plan": {"en": "Bought plan", "de": "Gekaufter Tarif"},
        "ml_any": {"en": "(any)", "de": "(alle)"},
        "ml_results": {"en": "Members found", "de": "Gefundene Mitglieder"},
        "ml_shown": {"en": "{count} shown", "de": "{count} angezeigt"},
        "ml_none": {"en": "No member matches.", "de": "Kein Mitglied passt."},
        "ml_access": {"en": "Access now", "de": "Zugang jetzt"},
        "ml_select": {"en": "Select {email}", "de": "{email} auswählen"},
        "ml_deleted_member": {"en": "deleted member {id}", "de": "gelöschtes Mitglied {id}"},
        "ml_bulk": {
            "en": "Lock or unlock the selected members",
            "de": "Ausgewählte Mitglieder sperren oder entsperren",
        },
        "ml_bulk_action": {"en": "Action", "de": "Aktion"},
        "ml_bulk_lock": {"en": "Lock", "de": "Sperren"},
        "ml_bulk_unlock": {"en": "Unlock", "de": "Entsperren"},
        "ml_bulk_reason": {"en": "Reason for locking (optional)", "de": "Grund der Sperre (optional)"},
        "ml_bulk_apply": {"en": "Apply to selected members", "de": "Auf ausgewählte Mitglieder anwenden"},
        "ml_locked_one": {"en": "1 member locked.", "de": "1 Mitglied gesperrt."},
        "ml_locked_many": {"en": "{count} members locked.", "de": "{count} Mitglieder gesperrt."},
        "ml_unlocked_one": {"en": "1 member unlocked.", "de": "1 Mitglied entsperrt."},
        "ml_unlocked_many": {"en": "{count} members unlocked.", "de": "{count} Mitglieder entsperrt."},
        "ml_unchanged": {
            "en": "{count} unchanged (already in that state).",
            "de": "{count} unverändert (bereits in diesem Zustand).",
        },
        "ml_error_action": {
            "en": "Please choose lock or unlock.",
            "de": "Bitte wählen Sie Sperren oder Entsperren.",
        },
        "ml_error_none_selected": {
            "en": "Please select at least one member.",
            "de": "Bitte wählen Sie mindestens ein Mitglied aus.",
        },
        "ml_error_too_many": {
            "en": "At most {max} members at once, so nothing was changed.",
            "de": "Höchstens {max} Mitglieder auf einmal; es wurde nichts geändert.",
        },
        "ml_new": {"en": "New member", "de": "Neues Mitglied"},
        "ml_new_intro": {
            "en": "The member gets a generated password: by email, or shown to you once after saving.",
            "de": "Das Mitglied erhält ein erzeugtes Passwort: per E-Mail oder einmalig Ihnen angezeigt.",
        },
        "ml_locale": {"en": "Language of emails", "de": "Sprache der E-Mails"},
        "ml_lang_de": {"en": "German", "de": "Deutsch"},
        "ml_lang_en": {"en": "English", "de": "Englisch"},
        "ml_send_credentials": {
            "en": "Email the credentials to the member",
            "de": "Zugangsdaten per E-Mail an das Mitglied senden",
        },
        "ml_create": {"en": "Create member", "de": "Mitglied anlegen"},
        "ml_read_only": {
            "en": "Your role may only read: creating members is not possible.",
            "de": "Ihre Rolle darf nur lesen: Mitglieder anlegen ist nicht möglich.",
        },
        "ml_created_emailed": {
            "en": "Member created. The credentials are on their way by email.",
            "de": "Mitglied angelegt. Die Zugangsdaten werden per E-Mail verschickt.",
        },
        "ml_created_title": {"en": "Member created", "de": "Mitglied angelegt"},
        "ml_created_open": {"en": "Open the member's page", "de": "Zur Seite des Mitglieds"},
        "ml_created_password": {
            "en": "The password of {email}, shown only this once:",
            "de": "Das Passwort von {email}, nur dieses eine Mal angezeigt:",
        },
        "ml_error_email_missing": {
            "en": "Please enter an email address.",
            "de": "Bitte geben Sie eine E-Mail-Adresse ein.",
        },
        "ml_error_name_long": {
            "en": "The name may have at most {max} characters.",
            "de": "Der Name darf höchstens {max} Zeichen haben.",
        },
    }
)
