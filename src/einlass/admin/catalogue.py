"""Admin pages: areas and plans (the catalogue); the gateways page lives in ``admin.gateways``.

Creating an area or a plan reads the form into the API's own request models
(``AreaCreate``, ``PlanCreate``), so the page refuses exactly what the API
refuses, and then creates through the API's own ``create_plan_from_body``. A refusal shows the page again with the typed values kept (400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.admin import gateways
from einlass.admin.i18n import NO_VALUE, format_money, register
from einlass.admin.page import Page, merchant_page
from einlass.billing import catalogue
from einlass.billing.gateways import GATEWAY_NAMES
from einlass.billing.models import PLAN_ONE_TIME, PLAN_SUBSCRIPTION, Plan
from einlass.billing.views import AreaCreate, PlanCreate, create_plan_from_body
from einlass.errors import EinlassError, InvalidInput
from einlass.tenants.models import Merchant

router = APIRouter()
router.include_router(gateways.router)

Model = TypeVar("Model", bound=BaseModel)
TERM_TEXT_FIELDS = ("interval", "trial_period", "grace_period", "min_term", "min_interval", "max_interval")
TERM_MONEY_FIELDS = ("first_amount", "min_amount", "max_amount")
TERM_FLAGS = ("dynamic", "member_can_pause", "member_can_cancel")
MAX_EXTERNAL_ID = 200  # the column's length
_MONEY = re.compile(r"-?\d+(?:[.,]\d{1,2})?")

register(
    {
        "title_catalogue": {"en": "Areas and plans", "de": "Bereiche und Tarife"},
        "cat_areas": {"en": "Areas", "de": "Bereiche"},
        "cat_plans": {"en": "Plans", "de": "Tarife"},
        "cat_no_areas": {"en": "No areas yet.", "de": "Noch keine Bereiche."},
        "cat_no_plans": {"en": "No plans yet.", "de": "Noch keine Tarife."},
        "cat_new_area": {"en": "New area", "de": "Neuer Bereich"},
        "cat_new_plan_one_time": {"en": "New one-time plan", "de": "Neuer Tarif mit Einmalzahlung"},
        "cat_new_plan_subscription": {"en": "New subscription plan", "de": "Neuer Abo-Tarif"},
        "cat_add_reference": {"en": "Add a gateway reference", "de": "Anbieter-Referenz hinzufügen"},
        "cat_create_area": {"en": "Create area", "de": "Bereich anlegen"},
        "cat_create_plan": {"en": "Create plan", "de": "Tarif anlegen"},
        "cat_add_reference_button": {"en": "Add reference", "de": "Referenz hinzufügen"},
        "cat_slug_hint": {
            "en": "Lower-case letters, digits and dashes, e.g. premium. Cannot be changed later.",
            "de": "Kleinbuchstaben, Ziffern und Bindestriche, z. B. premium. Später nicht änderbar.",
        },
        "cat_plan": {"en": "Plan", "de": "Tarif"},
        "cat_kind": {"en": "Kind", "de": "Art"},
        "cat_kind_one_time": {"en": "one-time payment", "de": "Einmalzahlung"},
        "cat_kind_subscription": {"en": "subscription", "de": "Abo"},
        "cat_price": {"en": "Price", "de": "Preis"},
        "cat_price_hint": {
            "en": "In the currency's main unit, e.g. 9.90.",
            "de": "In der Hauptwährungseinheit, z. B. 9,90.",
        },
        "cat_currency": {"en": "Currency", "de": "Währung"},
        "cat_currency_hint": {"en": "ISO 4217 code, e.g. EUR.", "de": "ISO-4217-Code, z. B. EUR."},
        "cat_terms": {"en": "Access and terms", "de": "Zugang und Bedingungen"},
        "cat_plan_areas": {"en": "Areas", "de": "Bereiche"},
        "cat_areas_hint": {
            "en": "Short names of the areas, separated by commas. Existing: {areas}",
            "de": "Kurznamen der Bereiche, durch Kommas getrennt. Vorhanden: {areas}",
        },
        "cat_references": {"en": "Gateway references", "de": "Anbieter-Referenzen"},
        "cat_on_sale": {"en": "On sale", "de": "Im Verkauf"},
        "cat_yes": {"en": "yes", "de": "ja"},
        "cat_no": {"en": "no", "de": "nein"},
        "cat_lifetime": {"en": "lifetime access", "de": "Zugang unbegrenzt"},
        "cat_access_period": {"en": "Access period", "de": "Zugangsdauer"},
        "cat_access_period_hint": {
            "en": "ISO 8601 duration, e.g. P30D for 30 days or P1Y for a year; empty for lifetime access.",
            "de": "ISO-8601-Dauer, z. B. P30D für 30 Tage oder P1Y für ein Jahr; leer für unbegrenzten Zugang.",
        },
        "cat_interval": {"en": "Billing interval", "de": "Abrechnungsintervall"},
        "cat_interval_hint": {
            "en": "ISO 8601 duration, e.g. P1M for monthly; may be empty for a dynamic plan.",
            "de": "ISO-8601-Dauer, z. B. P1M für monatlich; bei einem dynamischen Tarif leer lassen.",
        },
        "cat_trial_period": {"en": "Free trial", "de": "Kostenloser Testzeitraum"},
        "cat_first_amount": {"en": "First period's price", "de": "Preis des ersten Zeitraums"},
        "cat_grace_period": {"en": "Grace period", "de": "Kulanzzeit"},
        "cat_grace_hint": {
            "en": "Access kept after a missed renewal; empty for the default P3D.",
            "de": "Zugang nach einer ausgebliebenen Verlängerung; leer für den Standard P3D.",
        },
        "cat_min_term": {"en": "Minimum term", "de": "Mindestlaufzeit"},
        "cat_max_cycles": {"en": "Paid periods, then it ends", "de": "Bezahlte Zeiträume, dann endet es"},
        "cat_dynamic": {
            "en": "Dynamic: amount and interval come with each purchase",
            "de": "Dynamisch: Betrag und Intervall kommen mit jedem Kauf",
        },
        "cat_amount_range": {"en": "Amount", "de": "Betrag"},
        "cat_interval_range": {"en": "Interval", "de": "Intervall"},
        "cat_min_amount": {"en": "Lowest amount", "de": "Niedrigster Betrag"},
        "cat_max_amount": {"en": "Highest amount", "de": "Höchster Betrag"},
        "cat_min_interval": {"en": "Shortest interval", "de": "Kürzestes Intervall"},
        "cat_max_interval": {"en": "Longest interval", "de": "Längstes Intervall"},
        "cat_member_can_pause": {"en": "Members may pause", "de": "Mitglieder dürfen pausieren"},
        "cat_member_can_cancel": {"en": "Members may cancel", "de": "Mitglieder dürfen kündigen"},
        "cat_dynamic_fieldset": {"en": "Dynamic plans only", "de": "Nur für dynamische Tarife"},
        "cat_optional_fieldset": {"en": "Optional terms", "de": "Optionale Bedingungen"},
        "cat_any": {"en": "any", "de": "beliebig"},
        "cat_gateway": {"en": "Gateway", "de": "Zahlungsanbieter"},
        "cat_external_id": {"en": "Product, tariff or price id", "de": "Produkt-, Tarif- oder Preis-ID"},
        "cat_external_id_hint": {
            "en": "The id the gateway sends for this plan, e.g. a Stripe price id.",
            "de": "Die ID, die der Anbieter für diesen Tarif sendet, z. B. eine Stripe-Preis-ID.",
        },
        "cat_references_later": {
            "en": "Gateway references are added below, once the plan exists.",
            "de": "Anbieter-Referenzen fügen Sie unten hinzu, sobald der Tarif angelegt ist.",
        },
        "cat_area_created": {"en": "Area {slug} created.", "de": "Bereich {slug} angelegt."},
        "cat_plan_created": {"en": "Plan {slug} created.", "de": "Tarif {slug} angelegt."},
        "cat_reference_added": {
            "en": "Reference {gateway} {external_id} added to plan {plan}.",
            "de": "Referenz {gateway} {external_id} zum Tarif {plan} hinzugefügt.",
        },
        "cat_error_money": {
            "en": "{field}: enter an amount such as 9.90",
            "de": "{field}: Geben Sie einen Betrag wie 9,90 ein",
        },
        "cat_error_external_id": {
            "en": "enter the gateway's id for the plan (at most 200 characters)",
            "de": "Geben Sie die ID des Anbieters für den Tarif ein (höchstens 200 Zeichen)",
        },
    }
)


@dataclass
class PlanRow:
    plan: Plan
    kind: str
    price: str
    terms: list[tuple[str, str]]
    areas: list[str]
    references: list[tuple[str, str]]


def _merchant(page: Page) -> Merchant:
    assert page.merchant is not None
    return page.merchant


def parse_model(model: type[Model], data: dict[str, Any]) -> Model:
    """The API's request model from form data; its validation errors worded as the API words them."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems, first = [], None
        for item in error.errors():
            location = ".".join(str(part) for part in item.get("loc", ()))
            first = first or location or None
            problems.append(f"{location or 'body'}: {item.get('msg')}")
        raise InvalidInput("; ".join(problems), param=first) from None


def minor_units(page: Page, value: str, field: str) -> int:
    """An amount typed as 9.90 or 9,90 in minor units (990)."""
    if not _MONEY.fullmatch(value):
        raise InvalidInput(page.t("cat_error_money", field=field), param=field)
    try:
        return int(Decimal(value.replace(",", ".")) * 100)
    except InvalidOperation:
        raise InvalidInput(page.t("cat_error_money", field=field), param=field) from None


def _split(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", value) if part]


def _money(page: Page, amount: int | None, currency: str) -> str:
    return page.t("cat_any") if amount is None else format_money(amount, currency, page.lang)


def plan_terms(page: Page, plan: Plan) -> list[tuple[str, str]]:
    """What the plan sells, as (label, value) pairs in the page's language."""
    t = page.t
    if plan.kind != PLAN_SUBSCRIPTION:
        return [(t("cat_access_period"), plan.access_period or t("cat_lifetime"))]
    terms = []
    if plan.access_period:
        terms.append((t("cat_interval"), plan.access_period))
    if plan.dynamic:
        low, high = _money(page, plan.min_amount, plan.currency), _money(page, plan.max_amount, plan.currency)
        amounts = f"{low} {NO_VALUE} {high}"
        intervals = f"{plan.min_interval or t('cat_any')} {NO_VALUE} {plan.max_interval or t('cat_any')}"
        terms += [(t("cat_amount_range"), amounts), (t("cat_interval_range"), intervals)]
    if plan.trial_period:
        terms.append((t("cat_trial_period"), plan.trial_period))
    if plan.first_amount is not None:
        terms.append((t("cat_first_amount"), format_money(plan.first_amount, plan.currency, page.lang)))
    terms.append((t("cat_grace_period"), plan.grace_period or "P3D"))
    if plan.min_term:
        terms.append((t("cat_min_term"), plan.min_term))
    if plan.max_cycles is not None:
        terms.append((t("cat_max_cycles"), str(plan.max_cycles)))
    terms.append((t("cat_member_can_pause"), t("cat_yes") if plan.member_can_pause else t("cat_no")))
    terms.append((t("cat_member_can_cancel"), t("cat_yes") if plan.member_can_cancel else t("cat_no")))
    return terms


async def render_catalogue(
    page: Page,
    *,
    status: int = 200,
    failed: str | None = None,
    error: EinlassError | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    """The page; after a refusal, ``failed`` names the form whose ``values`` are shown again."""
    async with page.db.transaction() as session:
        areas = await catalogue.list_areas(session, page.merchant_id)
        rows = []
        for plan in await catalogue.list_plans(session, page.merchant_id):
            details = await catalogue.plan_details(session, plan)
            rows.append(
                PlanRow(
                    plan=plan,
                    kind=page.t(f"cat_kind_{plan.kind}"),
                    price=format_money(plan.amount, plan.currency, page.lang),
                    terms=plan_terms(page, plan),
                    areas=details["areas"],
                    references=[
                        (gateway, external_id)
                        for gateway, ids in sorted(details["gateway_refs"].items())
                        for external_id in ids
                    ],
                )
            )
    extra: dict[str, Any] = {}
    if error is not None:
        extra["error"] = page.failed(error.message)
    return page.render(
        "catalogue/catalogue.html",
        title=page.t("title_catalogue"),
        status=status,
        areas=areas,
        plans=rows,
        plan_options=[(row.plan.id, f"{row.plan.name} ({row.plan.slug})") for row in rows],
        gateway_options=[(name, name) for name in GATEWAY_NAMES],
        failed=failed,
        problem=error.param if error is not None else None,
        values=values or {},
        area_list=", ".join(area.slug for area in areas) or NO_VALUE,
        **extra,
    )


@router.get("/m/{slug}/catalogue")
async def catalogue_page(request: Request, slug: str) -> Response:
    return await render_catalogue(await merchant_page(request, slug))


@router.post("/m/{slug}/catalogue/areas")
async def create_area(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    values = {"slug": form.get("slug", "").strip(), "name": form.get("name", "").strip()}
    try:
        body = parse_model(AreaCreate, values)
        async with page.db.transaction() as session:
            area = await catalogue.create_area(session, _merchant(page), body.slug, body.name, page.actor)
    except EinlassError as error:
        return await render_catalogue(page, status=400, failed="area", error=error, values=values)
    return page.redirect(page.url("catalogue"), notice=page.t("cat_area_created", slug=area.slug))


def _plan_request(page: Page, form: dict[str, str]) -> dict[str, Any]:
    """The form as the API's PlanCreate body: empty fields are left out, as in a JSON body."""
    kind = PLAN_SUBSCRIPTION if form.get("kind") == PLAN_SUBSCRIPTION else PLAN_ONE_TIME
    data: dict[str, Any] = {
        "kind": kind,
        "slug": form.get("slug", "").strip(),
        "name": form.get("name", "").strip(),
        "currency": form.get("currency", "").strip(),
        "areas": _split(form.get("areas", "")),
    }
    if form.get("amount", "").strip():
        data["amount"] = minor_units(page, form["amount"].strip(), "amount")
    if kind == PLAN_ONE_TIME:
        if form.get("access_period", "").strip():
            data["access_period"] = form["access_period"].strip()
        return data
    for name in TERM_TEXT_FIELDS:
        if form.get(name, "").strip():
            data[name] = form[name].strip()
    for name in TERM_MONEY_FIELDS:
        if form.get(name, "").strip():
            data[name] = minor_units(page, form[name].strip(), name)
    if form.get("max_cycles", "").strip():
        data["max_cycles"] = form["max_cycles"].strip()
    for name in TERM_FLAGS:
        data[name] = name in form
    return data


@router.post("/m/{slug}/catalogue/plans")
async def create_plan(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    values = {key: value for key, value in form.items() if key != "csrf_token"}
    failed = PLAN_SUBSCRIPTION if form.get("kind") == PLAN_SUBSCRIPTION else PLAN_ONE_TIME
    try:
        body = parse_model(PlanCreate, _plan_request(page, form))
        async with page.db.transaction() as session:
            plan = await create_plan_from_body(session, _merchant(page), body, page.actor)
    except EinlassError as error:
        return await render_catalogue(page, status=400, failed=failed, error=error, values=values)
    return page.redirect(page.url("catalogue"), notice=page.t("cat_plan_created", slug=plan.slug))


@router.post("/m/{slug}/catalogue/references")
async def add_reference(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    gateway, external_id = form.get("gateway", ""), form.get("external_id", "").strip()

    async def work(session: AsyncSession) -> str:
        if not 1 <= len(external_id) <= MAX_EXTERNAL_ID:
            raise InvalidInput(page.t("cat_error_external_id"), param="external_id")
        plan = await catalogue.get_plan(session, page.merchant_id, form.get("plan", ""))
        await catalogue.add_gateway_reference(
            session, _merchant(page), plan, gateway, external_id, page.actor
        )
        return page.t("cat_reference_added", gateway=gateway, external_id=external_id, plan=plan.slug)

    return await page.act(page.url("catalogue"), work)
