"""Admin UI: the member page shows everything about one member, to its own merchant's staff only.

Profile, access per area and the grants behind it, subscriptions, payments,
screening decisions and the audit trail of a member who paid. A viewer reads
but finds no forms and is refused on every post; another merchant's member
(or a made-up id) is a 404 for reading and for posting; a post without the
CSRF token changes nothing.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from admin_support import AdminClient, login, make_staff
from conftest import Shop, make_shop
from einlass import clock
from einlass.db.engine import Database
from einlass.members.models import Member
from helpers import api, member_by_email, post_generic
from payloads import generic

ANNA = "anna@example.com"


async def paying_member(client: httpx.AsyncClient, shop: Shop, email: str = ANNA) -> dict[str, Any]:
    """A member who bought 30 days once and has a monthly subscription (the shop with subscription plans)."""
    bought = generic.payment_confirmed(
        "pay-1", amount=990, email=email, product_id="prod-30", name="Anna Muster"
    )
    assert (await post_generic(client, shop, bought)).status_code == 200
    subscribed = generic.subscription_created(
        "gs_1", at=clock.now(), product_id="sub-monthly", payment_id="gp_1", amount=990, email=email
    )
    assert (await post_generic(client, shop, subscribed)).status_code == 200
    member = await member_by_email(client, shop, email)
    assert member is not None
    return member


async def admin_of(client: httpx.AsyncClient, db: Database, shop: Shop, role: str = "admin") -> AdminClient:
    return await login(client, await make_staff(db, role=role, merchant_id=shop.merchant_id))


async def stored(db: Database, member_id: str) -> Member:
    async with db.transaction() as session:
        member = await session.scalar(select(Member).where(Member.id == member_id))
    assert member is not None
    return member


async def test_the_page_shows_profile_access_subscriptions_payments_decisions_and_audit(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop
) -> None:
    member = await paying_member(client, sub_shop)
    payments = await api(client, sub_shop, "GET", "/payments", params={"member": member["id"]})
    admin = await admin_of(client, db, sub_shop)
    page = await admin.get(f"/admin/m/{sub_shop.slug}/members/{member['id']}")
    assert page.status_code == 200
    html = page.text.replace("\u202f", " ")  # babel puts a narrow no-break space before AM
    # profile
    assert "<h1>Member anna@example.com</h1>" in html
    assert "Anna Muster" in html and member["id"] in html and "English" in html
    assert '<span class="badge good">active</span>' in html
    # access per area and the timeline of grants, with links to their sources on the page
    assert '<th scope="row">Premium</th>' in html
    assert "05/04/2026, 09:00" in html  # the subscription's access (a month plus grace) is the latest end
    subscription = member["subscriptions"][0]["id"]
    assert f'<a href="#subscription-{subscription}">{subscription}</a>' in html
    for payment in payments["data"]:
        assert f'id="payment-{payment["id"]}"' in html
    assert any(f'<a href="#payment-{p["id"]}">{p["id"]}</a>' in html for p in payments["data"])
    # subscriptions with their actions, payments
    assert f'id="subscription-{subscription}"' in html and "Monthly" in html
    assert "Change subscription" in html and "Cancel subscription" in html and "Change plan" in html
    assert "€9.90" in html and "confirmed" in html
    # screening and audit trail
    assert "Screening decisions" in html and "accepted" in html
    assert "On the whitelist" in html
    assert "member.created" in html and "grant.created" in html and "payment event" in html
    # the forms of the main actions are there for an admin
    for action in (
        "lock",
        "password",
        "credentials",
        "edit",
        "delete",
        "grants",
        "extend",
        "whitelist",
        "report",
    ):
        assert f'action="/admin/m/{sub_shop.slug}/members/{member["id"]}/{action}"' in html, action
    assert "Lock member" in html and "Grant access by hand" in html


async def test_the_page_in_german(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    member = await api(
        client, shop, "POST", "/members", json={"email": "b@example.com", "send_credentials": False}
    )
    admin = await admin_of(client, db, shop)
    page = await admin.get(f"/admin/m/{shop.slug}/members/{member['id']}?lang=de")
    assert page.status_code == 200
    assert "Mitglied sperren" in page.text and "Zugang von Hand freischalten" in page.text
    assert "Bisher kein Zugang zu einem Bereich." in page.text


async def test_a_viewer_sees_no_forms_and_may_not_post(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop
) -> None:
    member = await paying_member(client, sub_shop)
    viewer = await admin_of(client, db, sub_shop, role="viewer")
    url = f"/admin/m/{sub_shop.slug}/members/{member['id']}"
    page = await viewer.get(url)
    assert page.status_code == 200
    assert "Anna Muster" in page.text and "Monthly" in page.text
    assert "Your role may only read" in page.text
    assert f'action="{url}/' not in page.text  # no action forms at all
    assert "Lock member" not in page.text
    for action, data in (
        ("lock", {"reason": "x"}),
        ("delete", {"confirm": "yes"}),
        ("grants", {"area": "premium"}),
    ):
        refused = await viewer.post(f"{url}/{action}", data)
        assert refused.status_code == 403, action
        assert "Your role may only read" in refused.text
    after = await stored(db, member["id"])
    assert after.locked_at is None and after.deleted_at is None
    assert len((await api(client, sub_shop, "GET", f"/members/{member['id']}/grants"))["data"]) == 2


async def test_another_merchants_member_is_not_found(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    foreign = await api(
        client, other, "POST", "/members", json={"email": "f@example.com", "send_credentials": False}
    )
    own = await api(
        client, shop, "POST", "/members", json={"email": "o@example.com", "send_credentials": False}
    )
    foreign_grant = await api(
        client, other, "POST", f"/members/{foreign['id']}/grants", json={"area": "premium"}
    )
    admin = await admin_of(client, db, shop)
    for member_id in (foreign["id"], "mem_doesnotexist"):
        url = f"/admin/m/{shop.slug}/members/{member_id}"
        assert (await admin.get(url)).status_code == 404
        await admin.get(f"/admin/m/{shop.slug}/members/{own['id']}")  # a fresh CSRF token
        for action, data in (("lock", {}), ("delete", {"confirm": "yes"}), ("grants", {"area": "premium"})):
            assert (await admin.post(f"{url}/{action}", data)).status_code == 404, action
    # The other merchant's page through its own slug is not reachable either.
    assert (await admin.get(f"/admin/m/other/members/{foreign['id']}")).status_code == 404
    # Nor a foreign grant through one's own member.
    own_url = f"/admin/m/{shop.slug}/members/{own['id']}"
    revoked = await admin.post(f"{own_url}/grants/{foreign_grant['id']}/revoke")
    assert revoked.status_code == 404
    after = await stored(db, foreign["id"])
    assert after.locked_at is None and after.deleted_at is None and after.email == "f@example.com"
    grants = await api(client, other, "GET", f"/members/{foreign['id']}/grants")
    assert [grant["revoked_at"] for grant in grants["data"]] == [None]


async def test_a_post_without_the_csrf_token_changes_nothing(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    member = await api(
        client, shop, "POST", "/members", json={"email": "c@example.com", "send_credentials": False}
    )
    admin = await admin_of(client, db, shop)
    url = f"/admin/m/{shop.slug}/members/{member['id']}"
    await admin.get(url)
    refused = await admin.post(f"{url}/lock", {"reason": "no token"}, csrf=False)
    assert refused.status_code == 403 and "nothing was changed" in refused.text
    wrong = await admin.post(f"{url}/delete", {"confirm": "yes", "csrf_token": "forged"}, csrf=False)
    assert wrong.status_code == 403
    after = await stored(db, member["id"])
    assert after.locked_at is None and after.deleted_at is None
