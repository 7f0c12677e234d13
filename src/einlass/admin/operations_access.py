"""Admin pages: the merchant's API keys and staff accounts (mounted by ``operations``).

A new API key's secret, and a new staff account's password and TOTP secret,
appear once: on the page that answers the form, never in a cookie or a URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.access.i18n import LANGUAGES
from einlass.admin.i18n import register
from einlass.admin.page import Page, merchant_page
from einlass.errors import EinlassError
from einlass.tenants.models import STAFF_ROLE_ADMIN, STAFF_ROLE_VIEWER, StaffAccount
from einlass.tenants.service import IssuedKey, create_api_key, list_api_keys, revoke_api_key
from einlass.tenants.staff import NewStaff, create_staff, disable_staff, list_staff

router = APIRouter()

MAX_NAME = 200
MAX_EMAIL = 320
MERCHANT_ROLES = (STAFF_ROLE_ADMIN, STAFF_ROLE_VIEWER)

register(
    {
        # API keys
        "ops_keys_intro": {
            "en": "API keys give programs full access to this merchant's REST API (/api/v1). "
            "Revoke a key that is no longer needed or may have leaked.",
            "de": "API-Schlüssel geben Programmen vollen Zugriff auf die REST-API dieses Händlers "
            "(/api/v1). Widerrufen Sie einen Schlüssel, der nicht mehr gebraucht wird oder "
            "bekannt geworden sein könnte.",
        },
        "ops_staff_link": {
            "en": "Staff accounts of the admin UI",
            "de": "Mitarbeiterkonten der Verwaltung",
        },
        "ops_key_prefix": {"en": "Starts with", "de": "Beginnt mit"},
        "ops_last_used": {"en": "Last used", "de": "Zuletzt benutzt"},
        "ops_active": {"en": "active", "de": "aktiv"},
        "ops_revoked_on": {"en": "revoked {when}", "de": "widerrufen {when}"},
        "ops_revoke": {"en": "Revoke", "de": "Widerrufen"},
        "ops_revoke_key": {"en": "Revoke key {name}", "de": "Schlüssel {name} widerrufen"},
        "ops_new_key": {"en": "New API key", "de": "Neuer API-Schlüssel"},
        "ops_key_name_hint": {
            "en": "What the key is for, e.g. shop backend.",
            "de": "Wofür der Schlüssel ist, z. B. Shop-Backend.",
        },
        "ops_create_key": {"en": "Create key", "de": "Schlüssel anlegen"},
        "ops_key_created": {"en": "API key {name} created", "de": "API-Schlüssel {name} angelegt"},
        "ops_secret": {"en": "Secret", "de": "Geheimnis"},
        "ops_shown_once": {
            "en": "Copy the key now and keep it safe: it will not be shown again.",
            "de": "Kopieren Sie den Schlüssel jetzt und bewahren Sie ihn sicher auf: "
            "er wird nicht noch einmal angezeigt.",
        },
        "ops_values_shown_once": {
            "en": "Note these values now: they will not be shown again.",
            "de": "Notieren Sie diese Angaben jetzt: sie werden nicht noch einmal angezeigt.",
        },
        "ops_key_revoked": {"en": "The API key was revoked.", "de": "Der API-Schlüssel wurde widerrufen."},
        "ops_no_keys": {"en": "No API keys.", "de": "Keine API-Schlüssel."},
        "ops_name_too_long": {
            "en": "the name may have at most {max} characters.",
            "de": "der Name darf höchstens {max} Zeichen haben.",
        },
        # staff
        "ops_title_staff": {"en": "Staff accounts", "de": "Mitarbeiterkonten"},
        "ops_staff_intro": {
            "en": "People who may log in to this merchant's admin UI. Admins may change things; "
            "viewers may only read.",
            "de": "Personen, die sich in der Verwaltung dieses Händlers anmelden dürfen. Admins dürfen "
            "Änderungen vornehmen, Betrachter nur lesen.",
        },
        "ops_role": {"en": "Role", "de": "Rolle"},
        "ops_last_login": {"en": "Last login", "de": "Letzte Anmeldung"},
        "ops_disabled_on": {"en": "disabled {when}", "de": "deaktiviert {when}"},
        "ops_you": {"en": "(you)", "de": "(Sie)"},
        "ops_disable": {"en": "Disable", "de": "Deaktivieren"},
        "ops_staff_disabled": {
            "en": "The account {email} was disabled and logged out.",
            "de": "Das Konto {email} wurde deaktiviert und abgemeldet.",
        },
        "ops_already_disabled": {
            "en": "the account is disabled already.",
            "de": "das Konto ist bereits deaktiviert.",
        },
        "ops_not_yourself": {
            "en": "you cannot disable your own account.",
            "de": "Sie können Ihr eigenes Konto nicht deaktivieren.",
        },
        "ops_no_staff": {"en": "No staff accounts.", "de": "Keine Mitarbeiterkonten."},
        "ops_new_staff": {"en": "New staff account", "de": "Neues Mitarbeiterkonto"},
        "ops_staff_language": {"en": "Language of the admin UI", "de": "Sprache der Verwaltung"},
        "ops_create_staff": {"en": "Create account", "de": "Konto anlegen"},
        "ops_staff_created": {"en": "Account {email} created", "de": "Konto {email} angelegt"},
        "ops_staff_hand_over": {
            "en": "Give these to the person in a safe way. They log in with the password and a code from "
            "an authenticator app set up with the TOTP secret (or the otpauth link).",
            "de": "Geben Sie diese Angaben der Person auf sicherem Weg. Sie meldet sich mit dem Passwort "
            "und einem Code aus einer Authenticator-App an, die mit dem TOTP-Geheimnis (oder dem "
            "otpauth-Link) eingerichtet ist.",
        },
        "ops_totp_secret": {"en": "TOTP secret", "de": "TOTP-Geheimnis"},
        "ops_totp_uri": {"en": "otpauth link", "de": "otpauth-Link"},
        "ops_role_invalid": {
            "en": "the role must be admin or viewer.",
            "de": "die Rolle muss Admin oder Betrachter sein.",
        },
        "ops_english": {"en": "English", "de": "Englisch"},
        "ops_german": {"en": "German", "de": "Deutsch"},
    }
)


# --------------------------------------------------------------------------- API keys


async def _keys_page(page: Page, *, issued: IssuedKey | None = None) -> Response:
    async with page.db.transaction() as session:
        keys = await list_api_keys(session, page.merchant_id)
    return page.render("operations/api_keys.html", title=page.t("nav_api_keys"), keys=keys, issued=issued)


@router.get("/m/{slug}/api-keys")
async def api_keys(request: Request, slug: str) -> Response:
    return await _keys_page(await merchant_page(request, slug))


@router.post("/m/{slug}/api-keys")
async def new_api_key(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    name = form.get("name", "").strip()
    if len(name) > MAX_NAME:
        return page.redirect(
            page.url("api-keys"), error=page.failed(page.t("ops_name_too_long", max=MAX_NAME))
        )
    assert page.merchant is not None
    async with page.db.transaction() as session:
        issued = await create_api_key(session, page.merchant, name, page.actor)
    # The secret goes into this answer only: not a flash cookie, not a URL.
    return await _keys_page(page, issued=issued)


@router.post("/m/{slug}/api-keys/{key_id}/revoke")
async def revoke(request: Request, slug: str, key_id: str) -> Response:
    page = await merchant_page(request, slug)
    await page.form()

    async def work(session: AsyncSession) -> str:
        await revoke_api_key(session, page.merchant_id, key_id, page.actor)
        return page.t("ops_key_revoked")

    return await page.act(page.url("api-keys"), work, missing=True)


# --------------------------------------------------------------------------- staff


async def _staff_page(page: Page, *, created: NewStaff | None = None) -> Response:
    async with page.db.transaction() as session:
        accounts = await list_staff(session, page.merchant_id)
    return page.render(
        "operations/staff.html",
        title=page.t("ops_title_staff"),
        accounts=accounts,
        roles=[(role, page.t(f"role_{role}")) for role in MERCHANT_ROLES],
        languages_offered=[
            (code, page.t("ops_english" if code == "en" else "ops_german")) for code in LANGUAGES
        ],
        created=created,
    )


@router.get("/m/{slug}/staff")
async def staff(request: Request, slug: str) -> Response:
    return await _staff_page(await merchant_page(request, slug))


@router.post("/m/{slug}/staff")
async def new_staff(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    role = form.get("role", "")
    if role not in MERCHANT_ROLES:
        return page.redirect(page.url("staff"), error=page.failed(page.t("ops_role_invalid")))
    try:
        async with page.db.transaction() as session:
            created = await create_staff(
                session,
                page.settings.secret_key,
                email=form.get("email", "")[:MAX_EMAIL],
                role=role,
                merchant=page.merchant,
                actor=page.actor,
                name=form.get("name", "")[:MAX_NAME],
                locale=form.get("locale", "en"),
            )
    except EinlassError as error:
        return page.redirect(page.url("staff"), error=page.failed(error.message))
    # Password and TOTP secret go into this answer only.
    return await _staff_page(page, created=created)


@router.post("/m/{slug}/staff/{staff_id}/disable")
async def disable(request: Request, slug: str, staff_id: str) -> Response:
    page = await merchant_page(request, slug)
    await page.form()
    assert page.staff is not None
    async with page.db.transaction() as session:
        account = await session.scalar(
            select(StaffAccount)
            .where(StaffAccount.id == staff_id, StaffAccount.merchant_id == page.merchant_id)
            .with_for_update()
        )
        if account is None:
            raise page.not_found()
        if account.id == page.staff.id:
            return page.redirect(page.url("staff"), error=page.failed(page.t("ops_not_yourself")))
        if account.disabled_at is not None:
            return page.redirect(page.url("staff"), error=page.failed(page.t("ops_already_disabled")))
        await disable_staff(session, account, page.actor)
        email = account.email
    return page.redirect(page.url("staff"), notice=page.t("ops_staff_disabled", email=email))
