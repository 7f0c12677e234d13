"""Admin UI: areas and plans, gateway references, and the gateways page (secrets write-only)."""

from __future__ import annotations

import html

import httpx
from sqlalchemy import select

from admin_support import AdminClient, login, make_staff
from conftest import SECRET_KEY, Shop, make_shop
from einlass.audit.models import AuditEntry
from einlass.audit.service import CLI
from einlass.db.engine import Database
from einlass.tenants import service as tenants


async def _admin(client: httpx.AsyncClient, db: Database, shop: Shop, role: str = "admin") -> AdminClient:
    return await login(client, await make_staff(db, role=role, merchant_id=shop.merchant_id))


async def _audit(db: Database, merchant_id: str, action: str) -> list[AuditEntry]:
    async with db.transaction() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.merchant_id == merchant_id, AuditEntry.action == action)
        )
        return list(rows)


# --- areas and plans --------------------------------------------------------------------------


async def test_catalogue_shows_areas_and_plans(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    admin = await _admin(client, db, shop)
    page = await admin.get(f"/admin/m/{shop.slug}/catalogue")
    assert page.status_code == 200
    text = page.text
    for shown in ("Premium", "Archive", "30 days", "Forever", "€9.90", "€49.00", "P30D", "lifetime access"):
        assert shown in text, shown
    assert "tariff-30" in text and "price_30" in text and "prod-life" in text
    assert 'action="/admin/m/shop/catalogue/plans"' in text

    german = await admin.get(f"/admin/m/{shop.slug}/catalogue?lang=de")
    assert "Bereiche und Tarife" in german.text and "9,90\xa0€" in german.text


async def test_creating_an_area_and_plans_is_audited_with_the_admin(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    admin = await _admin(client, db, shop)
    await admin.get(f"/admin/m/{shop.slug}/catalogue")
    created = await admin.post(f"/admin/m/{shop.slug}/catalogue/areas", {"slug": "videos", "name": "Videos"})
    assert created.status_code == 303
    page = await admin.get(created.headers["location"])
    assert "Area videos created." in page.text and "Videos" in page.text

    one_time = {
        "kind": "one_time",
        "slug": "week",
        "name": "One week",
        "amount": "2,50",
        "currency": "eur",
        "access_period": "P7D",
        "areas": "videos, premium",
    }
    assert (await admin.post(f"/admin/m/{shop.slug}/catalogue/plans", one_time)).status_code == 303
    subscription = {
        "kind": "subscription",
        "slug": "monthly",
        "name": "Monthly",
        "amount": "9.90",
        "currency": "EUR",
        "interval": "P1M",
        "trial_period": "P14D",
        "areas": "premium",
        "member_can_cancel": "1",
    }
    answer = await admin.post(f"/admin/m/{shop.slug}/catalogue/plans", subscription)
    assert answer.status_code == 303, answer.text
    page = await admin.get(answer.headers["location"])
    assert "Plan monthly created." in page.text
    assert "One week" in page.text and "€2.50" in page.text and "P7D" in page.text
    assert "Monthly" in page.text and "P1M" in page.text and "P14D" in page.text

    plans = await client.get("/api/v1/plans", headers=shop.auth)
    by_slug = {plan["slug"]: plan for plan in plans.json()["data"]}
    assert by_slug["week"]["amount"] == 250 and by_slug["week"]["areas"] == ["premium", "videos"]
    assert by_slug["monthly"]["kind"] == "subscription"
    assert by_slug["monthly"]["subscription"]["trial_period"] == "P14D"
    assert by_slug["monthly"]["subscription"]["member_can_pause"] is False

    for action in ("area.created", "plan.created"):
        entries = await _audit(db, shop.merchant_id, action)
        mine = [entry for entry in entries if entry.actor_kind == "admin"]
        assert mine and all(entry.actor_id == admin.staff.id for entry in mine), action


async def test_a_dynamic_plan_with_every_field_of_the_form(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    admin = await _admin(client, db, shop)
    await admin.get(f"/admin/m/{shop.slug}/catalogue")
    form = {
        "kind": "subscription",
        "slug": "flex",
        "name": "Flexible",
        "amount": "10",
        "currency": "EUR",
        "interval": "",
        "areas": "premium",
        "trial_period": "P7D",
        "first_amount": "1",
        "grace_period": "P2D",
        "min_term": "P3M",
        "max_cycles": "12",
        "member_can_pause": "1",
        "member_can_cancel": "1",
        "dynamic": "1",
        "min_amount": "5",
        "max_amount": "50,00",
        "min_interval": "P7D",
        "max_interval": "P1Y",
    }
    answer = await admin.post(f"/admin/m/{shop.slug}/catalogue/plans", form)
    assert answer.status_code == 303, answer.text
    page = await admin.get(answer.headers["location"])
    assert "€5.00 \u2013 €50.00" in page.text and "P7D \u2013 P1Y" in page.text
    terms = (await client.get("/api/v1/plans/flex", headers=shop.auth)).json()["subscription"]
    assert terms["dynamic"] is True and terms["max_amount"] == 5000 and terms["first_amount"] == 100
    assert terms["max_cycles"] == 12 and terms["member_can_pause"] is True and terms["interval"] is None


async def test_a_bad_plan_shows_the_apis_error_and_keeps_the_typed_values(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    admin = await _admin(client, db, shop)
    await admin.get(f"/admin/m/{shop.slug}/catalogue")
    form = {
        "kind": "subscription",
        "slug": "gold",
        "name": "Gold tier",
        "amount": "5",
        "currency": "EUR",
        "interval": "P1X",
        "areas": "premium",
    }
    page = await admin.post(f"/admin/m/{shop.slug}/catalogue/plans", form)
    assert page.status_code == 400
    api = await client.post(
        "/api/v1/plans",
        headers=shop.auth,
        json={**form, "amount": 500, "areas": ["premium"]},
    )
    assert api.status_code == 400
    message = api.json()["error"]["message"]
    assert message in html.unescape(page.text)
    assert 'value="Gold tier"' in page.text and 'value="P1X"' in page.text
    assert 'id="sub-interval" name="interval"' in page.text and 'aria-invalid="true"' in page.text

    unknown_area = await admin.post(
        f"/admin/m/{shop.slug}/catalogue/plans", {**form, "interval": "P1M", "areas": "nowhere"}
    )
    assert unknown_area.status_code == 400 and "no area &#39;nowhere&#39;" in unknown_area.text
    bad_amount = await admin.post(f"/admin/m/{shop.slug}/catalogue/plans", {**form, "amount": "ten"})
    assert bad_amount.status_code == 400 and "amount: enter an amount such as 9.90" in bad_amount.text
    plans = (await client.get("/api/v1/plans", headers=shop.auth)).json()["data"]
    assert "gold" not in {plan["slug"] for plan in plans}


async def test_adding_a_gateway_reference(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    admin = await _admin(client, db, shop)
    page = await admin.get(f"/admin/m/{shop.slug}/catalogue")
    plans = (await client.get("/api/v1/plans", headers=shop.auth)).json()["data"]
    lifetime = next(plan for plan in plans if plan["slug"] == "lifetime")
    assert f'value="{lifetime["id"]}"' in page.text
    form = {"plan": lifetime["id"], "gateway": "stripe", "external_id": "price_life"}
    answer = await admin.post(f"/admin/m/{shop.slug}/catalogue/references", form)
    page = await admin.get(answer.headers["location"])
    assert "Reference stripe price_life added to plan lifetime." in page.text
    again = await admin.post(f"/admin/m/{shop.slug}/catalogue/references", {**form, "plan": "month"})
    page = await admin.get(again.headers["location"])
    assert "Nothing was changed: stripe reference &#39;price_life&#39; belongs to plan" in page.text
    shown = (await client.get(f"/api/v1/plans/{lifetime['id']}", headers=shop.auth)).json()
    assert shown["gateway_refs"]["stripe"] == ["price_life"]
    entries = await _audit(db, shop.merchant_id, "plan.reference_added")
    assert [entry.after for entry in entries if entry.actor_kind == "admin"] == [
        {"gateway": "stripe", "external_id": "price_life"}
    ]


async def test_a_viewer_sees_the_catalogue_without_forms_and_is_refused(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    viewer = await _admin(client, db, shop, role="viewer")
    page = await viewer.get(f"/admin/m/{shop.slug}/catalogue")
    assert page.status_code == 200 and "30 days" in page.text
    assert "catalogue/areas" not in page.text
    refused = await viewer.post(f"/admin/m/{shop.slug}/catalogue/areas", {"slug": "x", "name": "X"})
    assert refused.status_code == 403
    areas = (await client.get("/api/v1/areas", headers=shop.auth)).json()["data"]
    assert [area["slug"] for area in areas] == ["archive", "premium"]


async def test_another_merchants_catalogue_is_not_found(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    await make_shop(db, "other")
    admin = await _admin(client, db, shop)
    assert (await admin.get("/admin/m/other/catalogue")).status_code == 404
    assert (await admin.get("/admin/m/other/gateways")).status_code == 404
    answer = await admin.post("/admin/m/other/catalogue/areas", {"slug": "x", "name": "X"})
    assert answer.status_code == 404


# --- gateways ---------------------------------------------------------------------------------


async def test_gateways_page_shows_what_is_set_but_never_a_secret(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    admin = await _admin(client, db, shop)
    page = await admin.get(f"/admin/m/{shop.slug}/gateways")
    assert page.status_code == 200
    text = page.text
    for secret in (shop.novalnet_key, shop.stripe_secret, shop.generic_secret):
        assert secret not in text
    for gateway in ("novalnet", "stripe", "generic"):
        assert f"http://einlass.test/webhooks/shop/{gateway}" in text
    assert text.count("Configured") >= 3 and "payment_access_key" in text and "api_key" in text
    assert 'type="password"' in text and 'autocomplete="off"' in text
    assert "value=" not in text.split('type="password"', 1)[1].split(">", 1)[0]


async def test_setting_a_secret_keeps_the_others_and_shows_only_that_it_is_set(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    admin = await _admin(client, db, shop)
    await admin.get(f"/admin/m/{shop.slug}/gateways")
    secret = "sk_test_very_secret_4711"
    answer = await admin.post(
        f"/admin/m/{shop.slug}/gateways/stripe", {"webhook_secret": "", "api_key": secret}
    )
    assert answer.status_code == 303 and secret not in answer.text
    page = await admin.get(answer.headers["location"])
    assert "The secrets of Stripe were saved: api_key, webhook_secret." in page.text
    assert secret not in page.text and shop.stripe_secret not in page.text
    async with db.transaction() as session:
        stored = await tenants.gateway_secrets(session, SECRET_KEY, shop.merchant_id, "stripe")
    assert stored == {"webhook_secret": shop.stripe_secret, "api_key": secret}
    [entry] = [
        e for e in await _audit(db, shop.merchant_id, "gateway.secrets_set") if e.actor_kind == "admin"
    ]
    assert entry.actor_id == admin.staff.id and entry.after == {"fields": ["api_key", "webhook_secret"]}
    stripe_table = page.text.split("Secrets of Stripe", 1)[1].split("</table>", 1)[0]
    assert stripe_table.count(">set<") == 2

    removed = await admin.post(f"/admin/m/{shop.slug}/gateways/stripe", {"remove_api_key": "1"})
    await admin.get(removed.headers["location"])
    async with db.transaction() as session:
        stored = await tenants.gateway_secrets(session, SECRET_KEY, shop.merchant_id, "stripe")
    assert stored == {"webhook_secret": shop.stripe_secret}

    empty = await admin.post(f"/admin/m/{shop.slug}/gateways/stripe", {"api_key": ""})
    page = await admin.get(empty.headers["location"])
    assert "Nothing was changed: no secret was entered or removed" in page.text
    assert (await admin.post(f"/admin/m/{shop.slug}/gateways/paypal", {"x": "y"})).status_code == 404


async def test_a_new_gateway_needs_its_first_secret(client: httpx.AsyncClient, db: Database) -> None:
    async with db.transaction() as session:
        merchant, _ = await tenants.create_merchant(session, "fresh", "Fresh GmbH", CLI)
    staff = await make_staff(db, role="admin", merchant_id=merchant.id)
    admin = await login(client, staff)
    page = await admin.get("/admin/m/fresh/gateways")
    assert page.text.count("Not configured") == 3
    answer = await admin.post("/admin/m/fresh/gateways/generic", {"action_url": "https://shop.example/act"})
    page = await admin.get(answer.headers["location"])
    assert "Nothing was changed: signing_secret is required for generic" in page.text
    answer = await admin.post("/admin/m/fresh/gateways/novalnet", {"payment_access_key": "key-1"})
    page = await admin.get(answer.headers["location"])
    assert page.text.count("Not configured") == 2 and "key-1" not in page.text


async def test_a_viewer_cannot_set_secrets(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    viewer = await _admin(client, db, shop, role="viewer")
    page = await viewer.get(f"/admin/m/{shop.slug}/gateways")
    assert page.status_code == 200 and "Configured" in page.text and 'type="password"' not in page.text
    refused = await viewer.post(f"/admin/m/{shop.slug}/gateways/novalnet", {"payment_access_key": "evil"})
    assert refused.status_code == 403
    async with db.transaction() as session:
        stored = await tenants.gateway_secrets(session, SECRET_KEY, shop.merchant_id, "novalnet")
    assert stored == {"payment_access_key": shop.novalnet_key}
    entries = await _audit(db, shop.merchant_id, "gateway.secrets_set")
    assert all(entry.actor_kind == "cli" for entry in entries)
