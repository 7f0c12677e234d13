"""Admin UI: a merchant's blacklist reports, the customer check and the whitelist."""

from __future__ import annotations

import html
import re

import httpx
from sqlalchemy import func, select

from admin_support import AdminClient, login, make_staff
from conftest import Shop, make_shop
from einlass.audit.models import AuditEntry
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.screening import operator_service
from einlass.screening.identifiers import normalize
from einlass.screening.models import BlacklistReport, ScreeningDecision, WhitelistEntry
from helpers import api


async def _file_report(admin: AdminClient, slug: str, value: str, text: str) -> httpx.Response:
    await admin.get(f"/admin/m/{slug}/blacklist")
    return await admin.post(
        f"/admin/m/{slug}/blacklist",
        {"kind": "email", "value": value, "category": "fraud_attempt", "text": text, "payment": ""},
        follow=True,
    )


async def _reports_of(db: Database, merchant_id: str) -> list[BlacklistReport]:
    async with db.transaction() as session:
        rows = await session.scalars(
            select(BlacklistReport).where(BlacklistReport.merchant_id == merchant_id)
        )
        return list(rows)


async def _audit(db: Database, action: str) -> list[AuditEntry]:
    async with db.transaction() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def test_a_merchant_sees_its_own_report_and_another_merchant_nothing_of_it(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    admin = await login(client, await make_staff(db, role="admin", merchant_id=shop.merchant_id))
    filed = await _file_report(admin, shop.slug, "Fraud.Ster@example.com", "stolen card, order 4711")
    assert filed.status_code == 200
    assert "The report was filed." in filed.text
    assert "stolen card, order 4711" in filed.text and "Fraud attempt" in filed.text
    assert "pending review" in filed.text and "Withdraw" in filed.text
    [report] = await _reports_of(db, shop.merchant_id)
    assert report.id in filed.text and report.status == "pending"
    [audit] = await _audit(db, "blacklist_report.filed")
    assert (audit.actor_kind, audit.actor_id, audit.entity_id) == ("admin", admin.staff.id, report.id)

    again = await _file_report(admin, shop.slug, "fraud.ster@example.com", "again")
    assert "You had reported this customer already" in again.text
    invalid = await _file_report(admin, shop.slug, "not an address", "x")
    assert "Nothing was changed" in invalid.text
    form = {"kind": "email", "value": "x@example.com", "category": "abuse"}
    no_csrf = await admin.post(f"/admin/m/{shop.slug}/blacklist", form, csrf=False)
    assert no_csrf.status_code == 403
    assert len(await _reports_of(db, shop.merchant_id)) == 1

    await _file_report(admin, shop.slug, "someone@example.com", "mistake")
    [second] = [item for item in await _reports_of(db, shop.merchant_id) if item.id != report.id]
    done = await admin.post(f"/admin/m/{shop.slug}/blacklist/{second.id}/withdraw", follow=True)
    assert "The report was withdrawn and its evidence erased." in done.text
    assert second.id not in done.text and report.id in done.text
    # the entry had no other report: it went with it
    assert [item.id for item in await _reports_of(db, shop.merchant_id)] == [report.id]
    [withdrawn] = await _audit(db, "blacklist_report.withdrawn")
    assert withdrawn.actor_id == admin.staff.id

    intruder = await login(client, await make_staff(db, role="admin", merchant_id=other.merchant_id))
    own = await intruder.get(f"/admin/m/{other.slug}/blacklist")
    assert own.status_code == 200
    assert report.id not in own.text and "stolen card" not in own.text
    assert (await intruder.get(f"/admin/m/{shop.slug}/blacklist")).status_code == 404
    refused = await intruder.post(f"/admin/m/{other.slug}/blacklist/{report.id}/withdraw")
    assert refused.status_code == 404
    [unchanged] = await _reports_of(db, shop.merchant_id)
    assert unchanged.status == "pending" and unchanged.evidence is not None
    assert len(await _audit(db, "blacklist_report.withdrawn")) == 1


async def _check(admin: AdminClient, slug: str, fields: dict[str, str]) -> httpx.Response:
    await admin.get(f"/admin/m/{slug}/blacklist")
    answer = await admin.post(f"/admin/m/{slug}/blacklist/check", fields)
    assert answer.status_code == 303, answer.text
    assert re.search(r"screening=scr_", answer.headers["location"])
    return await admin.get(answer.headers["location"])


async def test_checking_a_customer_rejects_a_listed_one_and_accepts_a_whitelisted_member(
    client: httpx.AsyncClient, db: Database, shop: Shop, settings: Settings
) -> None:
    async with db.transaction() as session:
        await operator_service.operator_entry(
            session,
            settings,
            normalize("email", "bad@example.com"),
            category="chargeback",
            evidence=None,
            actor=operator_service.OPERATOR,
        )
    admin = await login(client, await make_staff(db, role="admin", merchant_id=shop.merchant_id))

    rejected = await _check(admin, shop.slug, {"email": "BAD@example.com"})
    assert "Decision: reject." in rejected.text
    assert "Blacklist: Email address, Chargeback (active)" in rejected.text
    clean = await _check(admin, shop.slug, {"email": "good@example.com", "ip": "192.0.2.1"})
    assert "Decision: accept." in clean.text and "Nothing matched." in clean.text

    member = await api(
        client, shop, "POST", "/members", json={"email": "bad@example.com", "send_credentials": False}
    )
    await admin.get(f"/admin/m/{shop.slug}/whitelist")
    added = await admin.post(
        f"/admin/m/{shop.slug}/whitelist", {"by": "member", "member": "bad@example.com"}, follow=True
    )
    assert "Added to the whitelist." in added.text
    accepted = await _check(admin, shop.slug, {"email": "bad@example.com", "member": member["id"]})
    assert "Decision: accept." in accepted.text and "On your whitelist (Member)" in accepted.text

    async with db.transaction() as session:
        outcomes = list(
            await session.scalars(
                select(ScreeningDecision.outcome)
                .where(ScreeningDecision.merchant_id == shop.merchant_id)
                .order_by(ScreeningDecision.id)
            )
        )
    assert outcomes == ["reject", "accept", "accept"]
    nothing = await admin.post(f"/admin/m/{shop.slug}/blacklist/check", {"email": ""}, follow=True)
    assert "Nothing was changed: give at least one identifier or a member" in nothing.text

    other = await make_shop(db, "other")
    async with db.transaction() as session:
        foreign = await session.scalar(
            select(ScreeningDecision.id).where(ScreeningDecision.outcome == "reject")
        )
    assert foreign is not None
    outsider = await login(client, await make_staff(db, role="admin", merchant_id=other.merchant_id))
    assert (await outsider.get(f"/admin/m/{other.slug}/blacklist?screening={foreign}")).status_code == 404


async def test_whitelist_add_and_remove(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    member = await api(
        client,
        shop,
        "POST",
        "/members",
        json={"email": "loyal@example.com", "name": "Lea Loyal", "send_credentials": False},
    )
    admin = await login(client, await make_staff(db, role="admin", merchant_id=shop.merchant_id))
    base = f"/admin/m/{shop.slug}/whitelist"
    empty = await admin.get(base)
    assert empty.status_code == 200 and "None yet." in empty.text

    await admin.post(
        base, {"by": "identifier", "kind": "phone", "value": "+49 170 1234567", "note": "VIP caller"}
    )
    await admin.post(base, {"by": "member", "member": member["id"], "member_note": "since 2019"})
    page = await admin.get(base)
    assert "VIP caller" in page.text and "Phone number" in page.text and "(stored as a digest)" in page.text
    assert "1234567" not in page.text
    assert f'href="/admin/m/{shop.slug}/members/{member["id"]}"' in page.text
    assert "Lea Loyal" in page.text and "since 2019" in page.text

    twice = await admin.post(base, {"by": "member", "member": "LOYAL@example.com"}, follow=True)
    assert "Nothing was changed: this customer is on the whitelist already" in html.unescape(twice.text)

    async with db.transaction() as session:
        entries = {row.kind or "member": row.id for row in await session.scalars(select(WhitelistEntry))}
    removed = await admin.post(f"{base}/{entries['phone']}/remove", follow=True)
    assert "Removed from the whitelist." in removed.text and "VIP caller" not in removed.text
    [audit] = await _audit(db, "whitelist.removed")
    assert (audit.actor_kind, audit.actor_id) == ("admin", admin.staff.id)

    german = await admin.get(f"{base}?lang=de")
    assert "Mitglied hinzufügen" in german.text and "Merkmal hinzufügen" in german.text
    german = await admin.get(f"/admin/m/{shop.slug}/blacklist")
    assert "Kunden prüfen" in german.text and "Ihre Meldungen" in german.text

    other = await make_shop(db, "other")
    outsider = await login(client, await make_staff(db, role="admin", merchant_id=other.merchant_id))
    await outsider.get(f"/admin/m/{other.slug}/whitelist")
    assert (
        await outsider.post(f"/admin/m/{other.slug}/whitelist/{entries['member']}/remove")
    ).status_code == 404
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(WhitelistEntry)) == 1


async def test_a_viewer_reads_but_cannot_post(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    viewer = await login(client, await make_staff(db, role="viewer", merchant_id=shop.merchant_id))
    page = await viewer.get(f"/admin/m/{shop.slug}/blacklist")
    assert page.status_code == 200 and "Your reports" in page.text
    assert f'action="/admin/m/{shop.slug}/blacklist"' not in page.text
    refused = await viewer.post(
        f"/admin/m/{shop.slug}/blacklist", {"kind": "email", "value": "x@example.com", "category": "abuse"}
    )
    assert refused.status_code == 403 and "may only read" in refused.text
    check = await viewer.post(f"/admin/m/{shop.slug}/blacklist/check", {"email": "x@example.com"})
    assert check.status_code == 403
    whitelist = await viewer.post(
        f"/admin/m/{shop.slug}/whitelist", {"by": "identifier", "kind": "email", "value": "x@example.com"}
    )
    assert whitelist.status_code == 403
    assert await _reports_of(db, shop.merchant_id) == []
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(WhitelistEntry)) == 0
        assert await session.scalar(select(func.count()).select_from(ScreeningDecision)) == 0
