"""Admin UI: the operator's blacklist review (queue, confirm, reject, direct entries, appeals)."""

from __future__ import annotations

import html

import httpx
from sqlalchemy import select

from admin_support import AdminClient, login, make_staff
from conftest import Shop, make_shop
from einlass import clock
from einlass.audit.models import AuditEntry
from einlass.config import Settings
from einlass.crypto import encrypt_json
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.screening.models import Appeal, BlacklistEntry, BlacklistReport
from helpers import api

QUEUE = "/admin/operator/blacklist"


async def _report(http: httpx.AsyncClient, shop: Shop, email: str, text: str) -> str:
    body = {"identifiers": {"email": email}, "category": "fraud_attempt", "evidence": {"text": text}}
    document = await api(http, shop, "POST", "/blacklist_reports", json=body)
    report_id: str = document["data"][0]["id"]
    return report_id


async def _screen(http: httpx.AsyncClient, shop: Shop, email: str) -> str:
    decision = await api(http, shop, "POST", "/screenings", json={"identifiers": {"email": email}})
    outcome: str = decision["outcome"]
    return outcome


async def _report_row(db: Database, report_id: str) -> tuple[BlacklistReport, BlacklistEntry]:
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(BlacklistReport, BlacklistEntry)
                .join(BlacklistEntry, BlacklistEntry.id == BlacklistReport.entry_id)
                .where(BlacklistReport.id == report_id)
            )
        ).one()
        return row[0], row[1]


async def _operator(client: httpx.AsyncClient, db: Database) -> AdminClient:
    admin = await login(client, await make_staff(db, role="operator"))
    await admin.get(QUEUE)
    return admin


async def test_the_queue_shows_a_pending_report_and_confirming_it_makes_the_entry_reject(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    report_id = await _report(client, shop, "fraudster@example.com", "three chargebacks in May")
    assert await _screen(client, shop, "fraudster@example.com") == "review"
    operator = await _operator(client, db)
    queue = operator.last
    assert queue is not None and queue.status_code == 200
    for shown in (report_id, "Shop GmbH", "Fraud attempt", "Email address", "three chargebacks in May"):
        assert shown in queue.text, shown
    assert "1; merchants among the reporters: 1" in queue.text and "pending review" in queue.text

    refused = await operator.post(f"{QUEUE}/{report_id}/confirm", {"note": "x"}, csrf=False)
    assert refused.status_code == 403
    assert (await _report_row(db, report_id))[0].status == "pending"

    done = await operator.post(f"{QUEUE}/{report_id}/confirm", {"note": "matches our records"}, follow=True)
    assert f"Report {report_id} confirmed; its entry is now active." in done.text
    report, entry = await _report_row(db, report_id)
    assert (report.status, report.review_note, entry.status) == ("confirmed", "matches our records", "active")
    assert await _screen(client, shop, "fraudster@example.com") == "reject"
    async with db.transaction() as session:
        audit = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "blacklist_report.confirmed")
        )
    assert audit is not None and (audit.actor_kind, audit.actor_id) == ("operator", operator.staff.id)
    # the queue shows pending reports by default; the confirmed one under "confirmed"
    assert f"report-{report_id}" not in done.text
    assert f"report-{report_id}" in (await operator.get(f"{QUEUE}?status=confirmed")).text
    assert (await operator.post(f"{QUEUE}/blr_nosuchreport/confirm", {})).status_code == 404


async def test_rejecting_needs_a_reason(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    report_id = await _report(client, shop, "innocent@example.com", "looked odd")
    operator = await _operator(client, db)
    missing = await operator.post(f"{QUEUE}/{report_id}/reject", {"note": " "}, follow=True)
    assert "Nothing was changed: say why the report is rejected" in missing.text
    assert (await _report_row(db, report_id))[0].status == "pending"
    done = await operator.post(f"{QUEUE}/{report_id}/reject", {"note": "no evidence"}, follow=True)
    assert f"Report {report_id} rejected; its entry is now rejected." in done.text
    assert await _screen(client, shop, "innocent@example.com") == "accept"


async def test_a_direct_entry_and_an_upheld_appeal(
    client: httpx.AsyncClient, db: Database, shop: Shop, settings: Settings
) -> None:
    operator = await _operator(client, db)
    added = await operator.post(
        f"{QUEUE}/entries",
        {"kind": "email", "value": "Spammer@Example.com", "category": "abuse", "text": "bot signups"},
        follow=True,
    )
    assert "The entry was added; it is active." in added.text
    assert await _screen(client, shop, "spammer@example.com") == "reject"
    bad = await operator.post(
        f"{QUEUE}/entries", {"kind": "phone", "value": "12", "category": "abuse"}, follow=True
    )
    assert "Nothing was changed" in bad.text

    async with db.transaction() as session:
        entry_id = await session.scalar(select(BlacklistEntry.id).where(BlacklistEntry.category == "abuse"))
        appeal_id = new_id("apl")
        session.add(
            Appeal(
                id=appeal_id,
                entry_id=entry_id,
                status="pending",
                statement=encrypt_json(settings.secret_key, {"statement": "that was my brother"}).encode(),
                created_at=clock.now(),
            )
        )
    page = await operator.get(QUEUE)
    assert appeal_id in page.text and "that was my brother" in page.text
    upheld = await operator.post(f"{QUEUE}/appeals/{appeal_id}/uphold", {"note": "plausible"}, follow=True)
    assert "The appeal was upheld; the entry is now rejected." in upheld.text
    assert await _screen(client, shop, "spammer@example.com") == "accept"
    again = await operator.post(f"{QUEUE}/appeals/{appeal_id}/dismiss", {}, follow=True)
    assert "Nothing was changed: the appeal was already upheld" in html.unescape(again.text)
    async with db.transaction() as session:
        actions = {
            (row.action, row.actor_id)
            for row in await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.actor_kind == "operator", AuditEntry.action.like("blacklist%")
                )
            )
        }
    assert actions == {
        ("blacklist_entry.filed", operator.staff.id),
        ("blacklist_appeal.upheld", operator.staff.id),
    }


async def test_only_the_operator_reaches_the_review(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    report_id = await _report(client, other, "someone@example.com", "secret evidence of other")
    admin = await login(client, await make_staff(db, role="admin", merchant_id=shop.merchant_id))
    assert (await admin.get(QUEUE)).status_code == 404
    await admin.get(f"/admin/m/{shop.slug}/blacklist")
    assert (await admin.post(f"{QUEUE}/{report_id}/confirm", {})).status_code == 404
    own = await admin.get(f"/admin/m/{shop.slug}/blacklist")
    assert "secret evidence of other" not in own.text and report_id not in own.text
    assert f'href="{QUEUE}"' not in own.text
    assert (await _report_row(db, report_id))[0].status == "pending"
