"""Admin UI: the members list (search, filters, keyset pages), bulk lock and unlock, creating a member.

The list shows the merchant's own members only, newest first, 50 a page; the
search finds a member by id, by the start of the email address and by the
start of any word of the name; the filters narrow by status, by current access
to an area and by a bought plan. Bulk lock and unlock go through the services
the API uses (one audit entry per member), refuse viewers, posts without the
CSRF token and foreign ids without changing anything. Creating a member works
as the API does and a duplicate shows the form again with what was typed.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from admin_support import AdminClient, login, make_staff
from conftest import Shop, make_shop
from einlass.audit.models import AuditEntry
from einlass.audit.service import CLI
from einlass.billing.models import Area, Plan
from einlass.clock import FrozenClock
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.members import search, service
from einlass.members.models import Member
from einlass.members.service import JOB_CREDENTIALS_EMAIL
from einlass.outbox.models import Job
from einlass.tenants.models import Merchant
from helpers import post_generic
from payloads import generic

ROW = re.compile(r'<a href="/admin/m/[a-z0-9-]+/members/(mem_[0-9A-Z]+)">')


async def add_members(db: Database, slug: str, *people: tuple[str, str | None]) -> list[str]:
    """Members by (email, name) through the service, oldest first; their ids."""
    ids = []
    async with db.transaction() as session:
        merchant = await session.scalar(select(Merchant).where(Merchant.slug == slug))
        assert merchant is not None
        for email, name in people:
            member, _ = await service.create_member(session, merchant, email=email, name=name, actor=CLI)
            ids.append(member.id)
    return ids


async def admin_of(client: httpx.AsyncClient, db: Database, shop: Shop, role: str = "admin") -> AdminClient:
    return await login(client, await make_staff(db, role=role, merchant_id=shop.merchant_id))


def listed(html: str) -> list[str]:
    """The member ids in the results table, in order."""
    return ROW.findall(html)


async def members_page(admin: AdminClient, shop: Shop, **query: str) -> httpx.Response:
    page = await admin.get(f"/admin/m/{shop.slug}/members", params=query)
    assert page.status_code == 200, page.text
    return page


async def test_the_list_shows_own_members_newest_first_and_no_other_merchants(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    ids = await add_members(db, shop.slug, ("anna@example.com", "Anna Muster"), ("ben@example.com", None))
    [foreign] = await add_members(db, other.slug, ("olga@example.org", "Olga Other"))
    admin = await admin_of(client, db, shop)
    page = await members_page(admin, shop)
    assert listed(page.text) == ids[::-1]
    assert "anna@example.com" in page.text and "Anna Muster" in page.text and "2 shown" in page.text
    assert '<span class="badge good">active</span>' in page.text
    assert "olga@example.org" not in page.text and foreign not in page.text
    assert 'aria-live="polite"' in page.text and '<th scope="col">Email address</th>' in page.text
    assert 'hx-trigger="input changed delay:300ms, search"' in page.text
    assert '<label for="ml-sel-' in page.text and "Select anna@example.com" in page.text
    german = await members_page(admin, shop, lang="de")
    assert "2 angezeigt" in german.text and "aktiv" in german.text
    # Another merchant's list is a 404 to this merchant's staff.
    assert (await admin.get(f"/admin/m/{other.slug}/members")).status_code == 404


async def test_search_by_id_email_prefix_and_any_word_of_the_name(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    anna, max_, lea, _ = await add_members(
        db,
        shop.slug,
        ("anna.mueller@example.com", "Anna Müller"),
        ("max@example.com", "Max Schmidt"),
        ("lea.b@example.org", "Lea Schmidt-Berg"),
        ("100%_sure@example.com", "Percy Sure"),
    )
    admin = await admin_of(client, db, shop)
    for query, expected in (
        (anna, [anna]),  # the id, exactly
        ("ANNA.M", [anna]),  # the start of the email address, any case
        ("max@exa", [max_]),
        ("schmidt", [lea, max_]),  # a last name
        ("berg", [lea]),  # a part of a double name
        ("Lea Schm", [lea]),  # first and last name starts
        ("müll", [anna]),
        ("100%_", []),  # % and _ are not wildcards: only the one email starts with them literally
        ("nobody", []),
    ):
        page = await members_page(admin, shop, q=query)
        found = listed(page.text)
        if query == "100%_":
            assert len(found) == 1 and "100%_sure@example.com" in page.text
            continue
        assert found == expected, query
    # htmx typing asks for the results region alone; a boosted request gets the whole page.
    fragment = await admin.get(
        f"/admin/m/{shop.slug}/members", params={"q": "schmidt"}, headers={"HX-Request": "true"}
    )
    assert (
        "<html" not in fragment.text and "2 shown" in fragment.text and listed(fragment.text) == [lea, max_]
    )
    boosted = await admin.get(
        f"/admin/m/{shop.slug}/members",
        params={"q": "schmidt"},
        headers={"HX-Request": "true", "HX-Boosted": "true"},
    )
    assert "<html" in boosted.text and 'value="schmidt"' in boosted.text


async def test_a_search_finds_rare_names_past_the_newest_members_and_pages_through_matches(
    client: httpx.AsyncClient, db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a window of 3, a name only old members have is found through the indexes."""
    monkeypatch.setattr(search, "SEARCH_WINDOW", 3)
    people = [
        ("old@example.com", "Olga Seltenname"),
        *((f"p{n}@example.com", f"Pat Person {n}") for n in range(6)),
    ]
    ids = await add_members(db, shop.slug, *people)
    admin = await admin_of(client, db, shop)
    assert listed((await members_page(admin, shop, q="seltenn")).text) == [ids[0]]
    assert listed((await members_page(admin, shop, q="Pat Pers")).text) == ids[:0:-1]
    # Pages of two through the matches of a search, newest first, none repeated.
    async with db.transaction() as session:
        seen: list[str] = []
        after = None
        while True:
            found = await search.search_members(
                session, shop.merchant_id, search.MemberFilter(q="person"), starting_after=after, limit=2
            )
            seen += [row.member.id for row in found.rows]
            if found.next_after is None:
                break
            after = found.next_after
    assert seen == ids[:0:-1]


async def test_filters_by_status_area_and_plan(
    client: httpx.AsyncClient, db: Database, shop: Shop, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    month = generic.payment_confirmed(
        "pay-m", amount=990, email="month@example.com", product_id="prod-30", name="Mona Month"
    )
    life = generic.payment_confirmed(
        "pay-l", amount=4900, email="life@example.com", product_id="prod-life", name="Lina Lifetime"
    )
    for event in (month, life):
        assert (await post_generic(client, shop, event)).status_code == 200
    locked, deleted = await add_members(
        db, shop.slug, ("locked@example.com", None), ("gone@example.com", None)
    )
    async with db.transaction() as session:
        by_email = {m.email: m for m in await session.scalars(select(Member))}
        await service.lock_member(session, by_email["locked@example.com"], "fraud", CLI)
        await service.erase_member(session, settings.secret_key, by_email["gone@example.com"], CLI)
        areas = {a.slug: a.id for a in await session.scalars(select(Area))}
        plans = {p.slug: p.id for p in await session.scalars(select(Plan))}
    buyer_month, buyer_life = by_email["month@example.com"].id, by_email["life@example.com"].id
    admin = await admin_of(client, db, shop)

    everyone = await members_page(admin, shop)
    assert set(listed(everyone.text)) == {buyer_month, buyer_life, locked}
    assert '<span class="badge bad">locked</span>' in everyone.text
    assert "<code>archive</code>, <code>premium</code>" in everyone.text  # the lifetime buyer's access now
    assert set(listed((await members_page(admin, shop, status="locked")).text)) == {locked}
    assert set(listed((await members_page(admin, shop, status="active")).text)) == {buyer_month, buyer_life}
    gone = await members_page(admin, shop, status="deleted")
    assert listed(gone.text) == [deleted] and "deleted member" in gone.text
    assert set(listed((await members_page(admin, shop, area=areas["premium"])).text)) == {
        buyer_month,
        buyer_life,
    }
    assert listed((await members_page(admin, shop, area=areas["archive"])).text) == [buyer_life]
    assert listed((await members_page(admin, shop, plan=plans["month"])).text) == [buyer_month]
    assert listed((await members_page(admin, shop, plan=plans["lifetime"], q="life@")).text) == [buyer_life]
    # A search in names with a filter: among the newest members, and (window of one) past them.
    for window in (search.SEARCH_WINDOW, 1):
        monkeypatch.setattr(search, "SEARCH_WINDOW", window)
        assert listed((await members_page(admin, shop, q="lina", area=areas["archive"])).text) == [buyer_life]
        assert listed((await members_page(admin, shop, q="mona", area=areas["archive"])).text) == []
        assert listed((await members_page(admin, shop, q="mona", plan=plans["month"])).text) == [buyer_month]
    # Another merchant's area is no filter at all.
    other = await make_shop(db, "other")
    async with db.transaction() as session:
        foreign_area = await session.scalar(select(Area.id).where(Area.merchant_id == other.merchant_id))
    assert len(listed((await members_page(admin, shop, area=str(foreign_area))).text)) == 3


async def test_next_page_links_give_every_member_once(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    ids = await add_members(db, shop.slug, *((f"m{n:03d}@example.com", f"Member {n}") for n in range(120)))
    admin = await admin_of(client, db, shop)
    seen: list[str] = []
    page = await members_page(admin, shop)
    sizes = []
    while True:
        rows = listed(page.text)
        sizes.append(len(rows))
        seen += rows
        link = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        if link is None:
            break
        assert "starting_after=" in link.group(1)
        page = await admin.get(link.group(1).replace("&amp;", "&"))
        assert "First page" in page.text
    assert sizes == [50, 50, 20]
    assert seen == ids[::-1]  # newest first, none repeated, none left out


async def audit_of(db: Database, action: str) -> list[AuditEntry]:
    async with db.transaction() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def locks(db: Database, ids: list[str]) -> dict[str, tuple[bool, str | None]]:
    async with db.transaction() as session:
        rows = await session.scalars(select(Member).where(Member.id.in_(ids)))
        return {m.id: (m.locked_at is not None, m.lock_reason) for m in rows}


async def test_bulk_lock_and_unlock_go_through_the_service_and_audit_each(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    ids = await add_members(db, shop.slug, *((f"b{n}@example.com", None) for n in range(4)))
    admin = await admin_of(client, db, shop)
    await members_page(admin, shop, q="b")
    answer = await admin.post(
        f"/admin/m/{shop.slug}/members/bulk",
        {"member": ids[:3], "action": "lock", "reason": "chargebacks", "q": "b"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/admin/m/{shop.slug}/members?q=b"
    assert (await admin.get(answer.headers["location"])).text.count("3 members locked.") == 1
    assert await locks(db, ids) == {
        **dict.fromkeys(ids[:3], (True, "chargebacks")),
        ids[3]: (False, None),
    }
    entries = await audit_of(db, "member.locked")
    assert sorted(e.entity_id or "" for e in entries) == sorted(ids[:3])
    assert {(e.actor_kind, e.actor_id) for e in entries} == {("admin", admin.staff.id)}
    answer = await admin.post(f"/admin/m/{shop.slug}/members/bulk", {"member": ids[1:], "action": "unlock"})
    page = await admin.get(answer.headers["location"])
    assert "2 members unlocked. 1 unchanged (already in that state)." in page.text
    assert [locked for locked, _ in (await locks(db, ids)).values()].count(True) == 1
    assert len(await audit_of(db, "member.unlocked")) == 2


async def test_bulk_refuses_viewers_posts_without_csrf_and_foreign_ids(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    ids = await add_members(db, shop.slug, ("c1@example.com", None), ("c2@example.com", None))
    [foreign] = await add_members(db, other.slug, ("c3@example.org", None))
    form: dict[str, Any] = {"member": ids, "action": "lock"}
    viewer = await admin_of(client, db, shop, role="viewer")
    page = await members_page(viewer, shop)
    assert 'name="member"' not in page.text and "members/bulk" not in page.text
    assert (await viewer.post(f"/admin/m/{shop.slug}/members/bulk", form)).status_code == 403
    client.cookies.clear()
    admin = await admin_of(client, db, shop)
    await members_page(admin, shop)
    refused = await admin.post(f"/admin/m/{shop.slug}/members/bulk", form, csrf=False)
    assert refused.status_code == 403
    mixed = await admin.post(f"/admin/m/{shop.slug}/members/bulk", {**form, "member": [*ids, foreign]})
    assert mixed.status_code == 303
    assert "Nothing was changed: no member" in (await admin.get(mixed.headers["location"])).text
    assert await locks(db, [*ids, foreign]) == dict.fromkeys([*ids, foreign], (False, None))
    assert await audit_of(db, "member.locked") == []
    nothing = await admin.post(f"/admin/m/{shop.slug}/members/bulk", {"action": "lock"})
    assert "Please select at least one member." in (await admin.get(nothing.headers["location"])).text


async def test_create_member_as_the_api_does_and_a_duplicate_keeps_what_was_typed(
    client: httpx.AsyncClient, db: Database, shop: Shop, clock: FrozenClock
) -> None:
    admin = await admin_of(client, db, shop)
    form = await admin.get(f"/admin/m/{shop.slug}/members/new")
    assert (
        form.status_code == 200 and 'name="send_credentials" type="checkbox" value="yes" checked' in form.text
    )
    typed = {"email": "Neu@Example.com", "name": "Nina Neu", "locale": "de", "send_credentials": "yes"}
    created = await admin.post(f"/admin/m/{shop.slug}/members/new", typed)
    assert created.status_code == 303
    member_id = created.headers["location"].rsplit("/", 1)[1]
    assert created.headers["location"] == f"/admin/m/{shop.slug}/members/{member_id}"
    async with db.transaction() as session:
        member = await session.scalar(select(Member).where(Member.id == member_id))
        jobs = list(await session.scalars(select(Job).where(Job.kind == JOB_CREDENTIALS_EMAIL)))
    assert member is not None and member.merchant_id == shop.merchant_id
    assert (member.email, member.name, member.locale) == ("Neu@Example.com", "Nina Neu", "de")
    assert [job.payload["member_id"] for job in jobs] == [member_id]
    assert [e.entity_id for e in await audit_of(db, "member.created")] == [member_id]
    assert member_id in (await members_page(admin, shop, q="nina")).text

    await admin.get(f"/admin/m/{shop.slug}/members/new")
    again = {"email": "neu@example.com", "name": "Typed Again", "locale": "en", "send_credentials": "yes"}
    duplicate = await admin.post(f"/admin/m/{shop.slug}/members/new", again)
    assert duplicate.status_code == 400
    assert "exists already" in duplicate.text and 'role="alert"' in duplicate.text
    assert 'value="neu@example.com"' in duplicate.text and 'value="Typed Again"' in duplicate.text
    assert '<option value="en" selected>' in duplicate.text
    bad = await admin.post(
        f"/admin/m/{shop.slug}/members/new", {"email": "not an address", "name": "Bad", "locale": "en"}
    )
    assert bad.status_code == 400 and "invalid email address" in bad.text
    assert 'value="not an address"' in bad.text and 'value="yes">' in bad.text  # unticked stays unticked

    # Without the email, the generated password is shown once.
    shown = await admin.post(f"/admin/m/{shop.slug}/members/new", {"email": "once@example.com"})
    assert shown.status_code == 200 and "set-cookie" not in shown.headers
    assert "The password of once@example.com, shown only this once:" in shown.text
    assert re.search(r'<code class="secret">\S{10,}</code>', shown.text)
    async with db.transaction() as session:
        count = len(list(await session.scalars(select(Job).where(Job.kind == JOB_CREDENTIALS_EMAIL))))
    assert count == 1
    viewer = await admin_of(client, db, shop, role="viewer")
    page = await viewer.get(f"/admin/m/{shop.slug}/members/new")
    assert "Your role may only read" in page.text and 'name="email"' not in page.text
    assert (await viewer.post(f"/admin/m/{shop.slug}/members/new", typed)).status_code == 403
