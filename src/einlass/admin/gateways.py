"""Admin page: the merchant's payment gateways (mounted by ``admin.catalogue``).

Secrets are write-only: the page names the fields that are set, never a value,
and the form's password inputs are never filled in. Saving calls
``tenants.service.set_gateway_secrets`` as the API and ``einlass gateway set``
do. That call replaces the stored set, so a field left empty keeps its stored
value, and an optional field is removed only when asked to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.admin.i18n import register
from einlass.admin.page import Page, merchant_page
from einlass.billing.gateways import GATEWAY_NAMES, gateway_registry
from einlass.errors import InvalidInput
from einlass.tenants import service as tenants
from einlass.tenants.models import GatewayAccount

router = APIRouter()

register(
    {
        "title_gateways": {"en": "Payment gateways", "de": "Zahlungsanbieter"},
        "gw_intro": {
            "en": "Secrets are stored encrypted and never shown again; this page only says which are set.",
            "de": "Geheimnisse werden verschlüsselt gespeichert und nie wieder angezeigt; "
            "diese Seite zeigt nur, welche gesetzt sind.",
        },
        "gw_name_novalnet": {"en": "Novalnet", "de": "Novalnet"},
        "gw_name_stripe": {"en": "Stripe", "de": "Stripe"},
        "gw_name_generic": {
            "en": "Generic (Standard Webhooks)",
            "de": "Generisch (Standard Webhooks)",
        },
        "gw_configured": {"en": "Configured", "de": "Eingerichtet"},
        "gw_not_configured": {"en": "Not configured", "de": "Nicht eingerichtet"},
        "gw_updated": {"en": "Last updated", "de": "Zuletzt geändert"},
        "gw_webhook_url": {"en": "Webhook URL", "de": "Webhook-URL"},
        "gw_webhook_url_hint": {
            "en": "Enter this address in the gateway's settings as the notification (webhook) URL.",
            "de": "Tragen Sie diese Adresse in den Einstellungen des Anbieters als "
            "Benachrichtigungs-(Webhook-)URL ein.",
        },
        "gw_secret": {"en": "Secret", "de": "Geheimnis"},
        "gw_state": {"en": "State", "de": "Zustand"},
        "gw_set": {"en": "set", "de": "gesetzt"},
        "gw_not_set": {"en": "not set", "de": "nicht gesetzt"},
        "gw_required": {"en": "required", "de": "erforderlich"},
        "gw_optional": {"en": "optional", "de": "optional"},
        "gw_secrets_of": {"en": "Secrets of {gateway}", "de": "Geheimnisse von {gateway}"},
        "gw_set_secrets": {"en": "Set the secrets of {gateway}", "de": "Geheimnisse von {gateway} setzen"},
        "gw_keep_hint": {
            "en": "Leave a field empty to keep its stored value.",
            "de": "Lassen Sie ein Feld leer, um den gespeicherten Wert zu behalten.",
        },
        "gw_remove": {"en": "Remove the stored {field}", "de": "Gespeichertes {field} entfernen"},
        "gw_field_payment_access_key": {"en": "Payment access key", "de": "Zahlungs-Zugriffsschlüssel"},
        "gw_field_webhook_secret": {
            "en": "Webhook signing secret (whsec_…)",
            "de": "Webhook-Signaturgeheimnis (whsec_…)",
        },
        "gw_field_api_key": {
            "en": "API secret key (for cancel and pause)",
            "de": "Geheimer API-Schlüssel (für Kündigen und Pausieren)",
        },
        "gw_field_signing_secret": {"en": "Signing secret (whsec_…)", "de": "Signaturgeheimnis (whsec_…)"},
        "gw_field_action_url": {
            "en": "Action URL (where cancel and pause are sent)",
            "de": "Aktions-URL (wohin Kündigen und Pausieren gesendet werden)",
        },
        "gw_saved": {
            "en": "The secrets of {gateway} were saved: {fields}.",
            "de": "Die Geheimnisse von {gateway} wurden gespeichert: {fields}.",
        },
        "gw_nothing_entered": {
            "en": "no secret was entered or removed",
            "de": "es wurde kein Geheimnis eingegeben oder entfernt",
        },
    }
)


@dataclass
class SecretField:
    name: str
    is_set: bool
    required: bool


@dataclass
class GatewayView:
    name: str
    configured: bool
    updated_at: datetime | None
    fields: list[SecretField]
    webhook_url: str


def webhook_url(page: Page, gateway: str) -> str:
    assert page.merchant is not None
    return f"{page.settings.base_url.rstrip('/')}/webhooks/{page.merchant.slug}/{gateway}"


@router.get("/m/{slug}/gateways")
async def gateways_page(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    async with page.db.transaction() as session:
        configured = await tenants.configured_gateways(session, page.settings.secret_key, page.merchant_id)
        rows = await session.execute(
            select(GatewayAccount.gateway, GatewayAccount.updated_at).where(
                GatewayAccount.merchant_id == page.merchant_id
            )
        )
        updated = {row.gateway: row.updated_at for row in rows}
    registry = gateway_registry()
    views = []
    for name in GATEWAY_NAMES:
        names = registry[name].secret_fields
        stored = configured.get(name, [])
        views.append(
            GatewayView(
                name=name,
                configured=name in configured,
                updated_at=updated.get(name),
                fields=[SecretField(field, field in stored, index == 0) for index, field in enumerate(names)],
                webhook_url=webhook_url(page, name),
            )
        )
    return page.render("catalogue/gateways.html", title=page.t("title_gateways"), gateways=views)


@router.post("/m/{slug}/gateways/{gateway}")
async def set_secrets(request: Request, slug: str, gateway: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    if gateway not in GATEWAY_NAMES:
        raise page.not_found()
    merchant = page.merchant
    assert merchant is not None
    fields = gateway_registry()[gateway].secret_fields
    typed = {name: form[name] for name in fields if form.get(name)}
    removed = {name for name in fields[1:] if form.get(f"remove_{name}") and name not in typed}

    async def work(session: AsyncSession) -> str:
        if not typed and not removed:
            raise InvalidInput(page.t("gw_nothing_entered"))
        stored = await tenants.gateway_secrets(session, page.settings.secret_key, page.merchant_id, gateway)
        kept = {name: value for name, value in (stored or {}).items() if name not in removed}
        secrets = {**kept, **typed}
        await tenants.set_gateway_secrets(
            session, page.settings.secret_key, merchant, gateway, secrets, page.actor
        )
        return page.t("gw_saved", gateway=page.t(f"gw_name_{gateway}"), fields=", ".join(sorted(secrets)))

    return await page.act(page.url("gateways"), work)
