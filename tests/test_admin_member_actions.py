"""Admin UI: every action on the member page works, shows after the redirect and is audited as the admin.

Each action posts a form, is redirected back to the member page with a
notice (or a refusal, with nothing changed), and leaves an audit entry with
actor kind "admin" and the staff account's id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from admin_support import AdminClient
from conftest import Shop
from einlass.audit.models import AuditEntry
from einlass.clock import FrozenClock
from einlass.db.engine import Database
from einlass.outbox.models import Job
from einlass.screening.models import BlacklistReport
from helpers import api
from test_admin_member_detail import admin_of, paying_member, stored


async def act(admin: AdminClient, url: str, action: str, data: dict[str, Any] | None = None) -> str:
    """Post ``action`` from the member page; the page after the redirect."""
    await admin.get(url)
    answer = await admin.post(f"{url}/{action}", data or {})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == url
    page = await admin.get(url)
    assert page.status_code == 200
    return page.text.replace("\u202f", " ")  # babel puts a narrow no-break space before AM


async def audited(db: Database, admin: AdminClient, action: str, member_id: str | None = None) -> AuditEntry:
    """The newest audit entry of ``action``, which the admin made."""
    query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id.desc())
    if member_id is not None:
        query = query.where(AuditEntry.member_id == member_id)
    async with db.transaction() as session:
        entry = await session.scalar(query.limit(1))
    assert entry is not None, action
    assert (entry.actor_kind, entry.actor_id) == ("admin", admin.staff.id)
    return entry


async def new_member(client: httpx.AsyncClient, shop: Shop, email: str = "m@example.com") -> dict[str, Any]:
    body = {"email": email, "name": "Max", "send_credentials": False}
    return await api(client, shop, "POST", "/members", json=body)  # type: ignore[no-any-return]


async def test_lock_unlock_edit_password_and_credentials(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    member = await new_member(client, shop)
    mid = member["id"]
    admin = await admin_of(client, db, shop)
    url = f"/admin/m/{shop.slug}/members/{mid}"

    page = await act(admin, url, "lock", {"reason": "chargeback fraud"})
    assert "The member is locked." in page
    assert '<span class="badge bad">locked</span>' in page and "Reason: chargeback fraud" in page
    assert "Unlock member" in page and "Lock member" not in page
    assert (await audited(db, admin, "member.locked", mid)).after == {"reason": "chargeback fraud"}

    page = await act(admin, url, "unlock")
    assert "The member is unlocked." in page and '<span class="badge good">active</span>' in page
    await audited(db, admin, "member.unlocked", mid)

    page = await act(admin, url, "edit", {"email": "New@Example.com", "name": "Max Neu", "locale": "de"})
    assert "The profile is saved." in page
    assert "New@Example.com" in page and "Max Neu" in page and "German" in page
    entry = await audited(db, admin, "member.updated", mid)
    assert entry.before is not None and entry.after is not None
    assert (entry.before["locale"], entry.after["locale"]) == ("en", "de")

    page = await act(admin, url, "password")
    assert "A new password will be generated and emailed to the member." in page
    await audited(db, admin, "member.password_reset", mid)
    page = await act(admin, url, "credentials")
    assert "The credentials will be emailed to the member." in page
    await audited(db, admin, "member.credentials_sent", mid)
    async with db.transaction() as session:
        jobs = list(await session.scalars(select(Job).where(Job.kind == "email.credentials")))
    assert [job.payload["member_id"] for job in jobs] == [mid, mid]


async def test_a_refused_action_changes_nothing_and_says_why(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    first = await new_member(client, shop, "first@example.com")
    second = await new_member(client, shop, "second@example.com")
    admin = await admin_of(client, db, shop)
    url = f"/admin/m/{shop.slug}/members/{second['id']}"
    page = await act(admin, url, "edit", {"email": "first@example.com", "name": "Other", "locale": "en"})
    assert "Nothing was changed: another member has email" in page
    assert (await stored(db, second["id"])).name == "Max"
    page = await act(admin, url, "grants", {"area": "premium", "until": "2026-13-40"})
    assert "Nothing was changed: “2026-13-40” is not a day (YYYY-MM-DD)." in page
    assert (await api(client, shop, "GET", f"/members/{second['id']}/grants"))["data"] == []
    assert (await stored(db, first["id"])).name == "Max"


async def test_delete_needs_the_confirmation(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    member = await new_member(client, shop)
    admin = await admin_of(client, db, shop)
    url = f"/admin/m/{shop.slug}/members/{member['id']}"
    page = await act(admin, url, "delete")
    assert "Nothing was changed: please tick the box to confirm the deletion." in page
    assert (await stored(db, member["id"])).deleted_at is None
    page = await act(admin, url, "delete", {"confirm": "yes"})
    assert "The member is deleted." in page and '<span class="badge bad">deleted</span>' in page
    assert "m@example.com" not in page and "Lock member" not in page
    after = await stored(db, member["id"])
    assert after.deleted_at is not None and after.email is None
    await audited(db, admin, "member.deleted", member["id"])


async def test_grant_by_hand_extend_and_revoke(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock
) -> None:
    member = await paying_member(client, sub_shop)  # premium until 2026-04-05 09:00 (subscription)
    mid = member["id"]
    admin = await admin_of(client, db, sub_shop)
    url = f"/admin/m/{sub_shop.slug}/members/{mid}"
    areas = {area["slug"]: area["id"] for area in (await api(client, sub_shop, "GET", "/areas"))["data"]}

    page = await act(
        admin, url, "grants", {"area": areas["archive"], "until": "2026-03-31", "note": "goodwill"}
    )
    assert "Access to Archive is granted." in page
    assert '<th scope="row">Archive</th>' in page and "01/04/2026, 00:00" in page and "goodwill" in page
    created = await audited(db, admin, "grant.created", mid)
    assert created.after is not None and created.after["note"] == "goodwill"
    assert created.after["ends_at"] == "2026-04-01T00:00:00+00:00"

    # Extending premium starts where its access ends now; twice in a row follows on.
    page = await act(admin, url, "extend", {"area": areas["premium"], "period": "30d"})
    assert "Access to Premium is extended until 05/05/2026, 09:00." in page
    page = await act(admin, url, "extend", {"area": areas["premium"], "period": "1y", "note": "loyal"})
    assert "Access to Premium is extended until 05/05/2027, 09:00." in page
    assert "extended: loyal" in page
    extended = await audited(db, admin, "grant.created", mid)
    assert extended.after is not None
    assert extended.after["starts_at"] == "2026-05-05T09:00:00+00:00"
    premium = [
        a for a in (await api(client, sub_shop, "GET", f"/members/{mid}"))["access"] if a["area"] == "premium"
    ]
    assert premium[0]["active"]
    clock.advance(timedelta(days=40))  # past the subscription's access: the extensions carry on
    assert [
        a["active"]
        for a in (await api(client, sub_shop, "GET", f"/members/{mid}"))["access"]
        if a["area"] == "premium"
    ] == [True]
    clock.advance(timedelta(days=-40))

    # An area without access extends from now; custom "until" needs its day.
    page = await act(admin, url, "extend", {"area": areas["archive"], "period": "until"})
    assert "please choose the day until which to extend." in page

    # Revoke the archive grant by hand: access there ends.
    grants = (await api(client, sub_shop, "GET", f"/members/{mid}/grants"))["data"]
    archive = next(g for g in grants if g["area"] == areas["archive"])
    page = await act(admin, url, f"grants/{archive['id']}/revoke")
    assert "The grant is revoked." in page and "revoked by admin" in page
    await audited(db, admin, "grant.revoked", mid)
    access = {
        a["area"]: a["active"] for a in (await api(client, sub_shop, "GET", f"/members/{mid}"))["access"]
    }
    assert access == {"archive": False, "premium": True}


async def test_subscription_actions(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock
) -> None:
    """Each a minute after the one before: the subscription folds its facts in time order."""
    member = await paying_member(client, sub_shop)
    subscription = member["subscriptions"][0]["id"]
    admin = await admin_of(client, db, sub_shop)
    url = f"/admin/m/{sub_shop.slug}/members/{member['id']}"
    action = f"subscriptions/{subscription}/action"  # the subscription page's forms, back to this page

    page = await act(admin, url, action, {"action": "pause", "resume_on": "2026-03-20"})
    assert (
        "Pause: done here and sent to the gateway." in page
        and "paused" in page
        and "resumes 20/03/2026" in page
    )
    assert "pause: waiting for the gateway" in page
    entry = await audited(db, admin, "subscription.pause_requested")
    assert entry.member_id == member["id"] and entry.after == {"resume_at": "2026-03-20T00:00:00+00:00"}

    clock.advance(timedelta(minutes=1))
    page = await act(admin, url, action, {"action": "resume"})
    assert "Resume: done here and sent to the gateway." in page
    await audited(db, admin, "subscription.resume_requested")

    clock.advance(timedelta(minutes=1))
    plans = {plan["slug"]: plan["id"] for plan in (await api(client, sub_shop, "GET", "/plans"))["data"]}
    page = await act(admin, url, action, {"action": "change_plan", "plan": plans["yearly"]})
    assert "Change plan: done here and sent to the gateway." in page
    await audited(db, admin, "subscription.change_plan_requested")
    changed = await api(client, sub_shop, "GET", f"/subscriptions/{subscription}")
    assert plans["yearly"] in (changed["plan"], changed["pending_plan"])  # now, or at the period's end
    assert "Yearly" in page

    clock.advance(timedelta(minutes=1))
    page = await act(admin, url, action, {"action": "cancel", "when": "period_end"})
    assert "Cancel: done here and sent to the gateway." in page
    await audited(db, admin, "subscription.cancel_requested")
    detail = await api(client, sub_shop, "GET", f"/subscriptions/{subscription}")
    assert detail["cancel_at"] is not None

    clock.advance(timedelta(minutes=1))
    # A refusal of the service comes back as the page's error.
    page = await act(admin, url, action, {"action": "resume"})
    assert "Nothing was changed: the subscription is not paused" in page
    # Another member's subscription is not reachable through this member.
    other = await new_member(client, sub_shop, "other@example.com")
    await admin.get(url)
    answer = await admin.post(f"/admin/m/{sub_shop.slug}/members/{other['id']}/{action}", {"action": "pause"})
    assert answer.status_code == 404


async def test_whitelist_and_blacklist_report(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop
) -> None:
    member = await paying_member(client, sub_shop)
    mid = member["id"]
    admin = await admin_of(client, db, sub_shop)
    url = f"/admin/m/{sub_shop.slug}/members/{mid}"

    page = await act(admin, url, "whitelist", {"note": "loyal since 2019"})
    assert "The member is on the whitelist." in page
    assert '<span class="badge good" id="md-whitelisted">yes</span>' in page and "loyal since 2019" in page
    added = await audited(db, admin, "whitelist.added", mid)
    page = await act(admin, url, f"whitelist/{added.entity_id}/remove")
    assert "The entry is removed from the whitelist." in page
    assert '<span class="badge" id="md-whitelisted">no</span>' in page
    await audited(db, admin, "whitelist.removed", mid)

    payment = (await api(client, sub_shop, "GET", "/payments", params={"member": mid}))["data"][0]["id"]
    report = {"category": "fraud_attempt", "evidence": "stolen card", "payment": payment}
    page = await act(admin, url, "report", report)
    assert "The report is filed; the operator will review it." in page
    filed = await audited(db, admin, "blacklist_report.filed")
    assert filed.after == {"kind": "email", "category": "fraud_attempt", "entry_status": "pending"}
    own = await api(client, sub_shop, "GET", "/blacklist_reports")
    assert [(r["category"], r["evidence"]) for r in own["data"]] == [
        ("fraud_attempt", {"text": "stolen card", "payment": payment})
    ]
    page = await act(admin, url, "report", report)
    assert "You have reported this email address in this category already." in page
    page = await act(admin, url, "report", {"category": "nonsense"})
    assert "Nothing was changed: category must be one of" in page
    async with db.transaction() as session:
        reports = list(await session.scalars(select(BlacklistReport)))
    assert len(reports) == 1


async def test_an_unknown_subscription_action_is_not_found(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    member = await new_member(client, shop)
    admin = await admin_of(client, db, shop)
    url = f"/admin/m/{shop.slug}/members/{member['id']}"
    await admin.get(url)
    assert (await admin.post(f"{url}/subscriptions/sub_x/action", {"action": "explode"})).status_code == 404
    assert (await admin.post(f"{url}/subscriptions/sub_x/action", {"action": "pause"})).status_code == 404
    assert (await admin.post(f"{url}/whitelist/wle_x/remove")).status_code == 404
