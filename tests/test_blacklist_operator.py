"""The operator's review: access to the operator API, confirm/reject, direct entries, appeals,
data-subject export and erasure, retention with the clock moved, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import Shop, make_shop
from einlass import clock
from einlass.audit.models import AuditEntry
from einlass.billing.models import Payment
from einlass.clock import FrozenClock
from einlass.config import Settings
from einlass.crypto import encrypt_json
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.screening.blacklist import RETENTION
from einlass.screening.models import Appeal, BlacklistEntry, BlacklistReport, ScreeningDecision
from einlass.screening.service import expire_entries
from helpers import api

OPERATOR_KEY = "operator-key-for-tests"
AS_OPERATOR = {"authorization": f"Bearer {OPERATOR_KEY}"}


@pytest.fixture
def operator(settings: Settings) -> dict[str, str]:
    settings.operator_api_key = OPERATOR_KEY
    return AS_OPERATOR


async def as_operator(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await http.request(method, f"/api/v1/operator{path}", headers=AS_OPERATOR, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


async def merchant_report(http: httpx.AsyncClient, shop: Shop, email: str, text: str = "evidence") -> str:
    body = {"identifiers": {"email": email}, "category": "fraud_attempt", "evidence": {"text": text}}
    document = await api(http, shop, "POST", "/blacklist_reports", json=body)
    report_id: str = document["data"][0]["id"]
    return report_id


async def add_appeal(db: Database, settings: Settings, entry_id: str, statement: str) -> str:
    appeal_id = new_id("apl")
    async with db.transaction() as session:
        session.add(
            Appeal(
                id=appeal_id,
                entry_id=entry_id,
                status="pending",
                statement=encrypt_json(settings.secret_key, {"text": statement}).encode(),
                created_at=clock.now(),
            )
        )
    return appeal_id


async def count(db: Database, model: Any) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_the_operator_api_is_absent_without_a_key_and_locked_without_the_right_one(
    client: httpx.AsyncClient, shop: Shop, settings: Settings
) -> None:
    response = await client.get("/api/v1/operator/blacklist_reports", headers=AS_OPERATOR)
    assert response.status_code == 404
    settings.operator_api_key = OPERATOR_KEY
    for headers in ({}, {"authorization": "Bearer wrong"}, shop.auth):
        response = await client.get("/api/v1/operator/blacklist_reports", headers=headers)
        assert response.status_code == 401, headers
    response = await client.get("/api/v1/operator/blacklist_reports", headers=AS_OPERATOR)
    assert response.status_code == 200


async def test_confirming_a_report_activates_its_entry_and_is_audited(
    client: httpx.AsyncClient, shop: Shop, operator: dict[str, str], db: Database
) -> None:
    report_id = await merchant_report(client, shop, "liar@example.com", "stolen card, order 42")
    queue = await as_operator(client, "GET", "/blacklist_reports?status=pending")
    [queued] = queue["data"]
    assert queued["id"] == report_id and queued["reporter"]["slug"] == "shop"
    assert queued["evidence"] == {"text": "stolen card, order 42"}
    assert (queued["entry"]["kind"], queued["entry"]["category"], queued["entry"]["status"]) == (
        "email",
        "fraud_attempt",
        "pending",
    )
    confirmed = await as_operator(client, "POST", f"/blacklist_reports/{report_id}/confirm", json={})
    assert confirmed["status"] == "confirmed" and confirmed["entry"]["status"] == "active"
    assert (await as_operator(client, "GET", "/blacklist_reports"))["data"] == []
    mine = await api(client, shop, "GET", f"/blacklist_reports/{report_id}")
    assert (mine["status"], mine["entry_status"]) == ("confirmed", "active")
    async with db.transaction() as session:
        audit = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "blacklist_report.confirmed")
        )
    assert audit is not None and audit.merchant_id is None and audit.actor_kind == "operator"


async def test_rejecting_needs_a_note_and_rejects_the_entry(
    client: httpx.AsyncClient, shop: Shop, operator: dict[str, str]
) -> None:
    report_id = await merchant_report(client, shop, "honest@example.com")
    response = await client.post(
        f"/api/v1/operator/blacklist_reports/{report_id}/reject", json={}, headers=AS_OPERATOR
    )
    assert response.status_code == 400
    rejected = await as_operator(
        client, "POST", f"/blacklist_reports/{report_id}/reject", json={"note": "the card owner paid"}
    )
    assert rejected["status"] == "rejected" and rejected["review_note"] == "the card owner paid"
    assert rejected["entry"]["status"] == "rejected"
    withdraw = await client.post(f"/api/v1/blacklist_reports/{report_id}/withdraw", headers=shop.auth)
    assert withdraw.status_code == 409
    missing = await client.post(
        "/api/v1/operator/blacklist_reports/blr_nope/confirm", json={}, headers=AS_OPERATOR
    )
    assert missing.status_code == 404


async def test_an_upheld_appeal_rejects_the_entry_and_a_dismissed_one_keeps_it(
    client: httpx.AsyncClient, shop: Shop, operator: dict[str, str], db: Database, settings: Settings
) -> None:
    upheld_entry = await as_operator(
        client, "POST", "/blacklist_entries", json={"kind": "ip", "value": "203.0.113.9", "category": "abuse"}
    )
    assert (upheld_entry["status"], upheld_entry["source"]) == ("active", "operator")
    report_id = await merchant_report(client, shop, "kept@example.com")
    await as_operator(client, "POST", f"/blacklist_reports/{report_id}/confirm")
    async with db.transaction() as session:
        kept_entry = await session.scalar(
            select(BlacklistReport.entry_id).where(BlacklistReport.id == report_id)
        )
    assert kept_entry is not None
    appeal_up = await add_appeal(db, settings, upheld_entry["id"], "that is my office's shared address")
    appeal_down = await add_appeal(db, settings, kept_entry, "I did nothing")

    pending = await as_operator(client, "GET", "/appeals")
    assert {item["id"] for item in pending["data"]} == {appeal_up, appeal_down}
    shown = next(item for item in pending["data"] if item["id"] == appeal_up)
    assert shown["statement"] == {"text": "that is my office's shared address"}

    upheld = await as_operator(client, "POST", f"/appeals/{appeal_up}/uphold", json={"note": "shared NAT"})
    assert upheld["status"] == "upheld" and upheld["entry"]["status"] == "rejected"
    dismissed = await as_operator(client, "POST", f"/appeals/{appeal_down}/dismiss")
    assert dismissed["status"] == "dismissed" and dismissed["entry"]["status"] == "active"
    again = await client.post(f"/api/v1/operator/appeals/{appeal_up}/dismiss", headers=AS_OPERATOR)
    assert again.status_code == 409
    async with db.transaction() as session:
        statuses = set(
            await session.scalars(
                select(BlacklistReport.status).where(BlacklistReport.entry_id == upheld_entry["id"])
            )
        )
    assert statuses == {"rejected"}
    assert (await as_operator(client, "GET", "/appeals"))["data"] == []


async def test_export_shows_everything_about_an_identifier_and_erasure_removes_it(
    client: httpx.AsyncClient, shop: Shop, operator: dict[str, str], db: Database, settings: Settings
) -> None:
    other = await make_shop(db, "other")
    first = await merchant_report(client, shop, "Subject@Example.com", "order 1 charged back")
    await merchant_report(client, other, "subject@example.com", "order 9 never paid")
    await merchant_report(client, shop, "bystander@example.com")
    async with db.transaction() as session:
        entry_id = await session.scalar(select(BlacklistReport.entry_id).where(BlacklistReport.id == first))
        assert entry_id is not None
        now = clock.now()
        payment_id = new_id("pay")
        session.add(
            Payment(
                id=payment_id,
                merchant_id=other.merchant_id,
                gateway="generic",
                external_id="ext-1",
                customer_email="SUBJECT@example.com",
                amount=990,
                currency="EUR",
                status="confirmed",
                created_at=now,
                updated_at=now,
            )
        )
        cites = [{"source": "blacklist", "kind": "email", "category": "fraud_attempt", "status": "pending"}]
        for payment in (payment_id, None):
            session.add(
                ScreeningDecision(
                    id=new_id("scd"),
                    merchant_id=other.merchant_id,
                    payment_id=payment,
                    context="payment",
                    outcome="review",
                    reasons=cites,
                    created_at=now,
                )
            )
    await add_appeal(db, settings, entry_id, "please remove me")

    exported = await as_operator(
        client, "POST", "/data_subject_export", json={"kind": "email", "value": "subject@EXAMPLE.com"}
    )
    assert [entry["id"] for entry in exported["entries"]] == [entry_id]
    assert {(item["reporter"]["slug"], item["evidence"]["text"]) for item in exported["reports"]} == {
        ("shop", "order 1 charged back"),
        ("other", "order 9 never paid"),
    }
    assert [appeal["statement"] for appeal in exported["appeals"]] == [{"text": "please remove me"}]
    [linked] = exported["decisions"]["linked"]
    assert linked["payment"] == payment_id and linked["merchant"] == "other"
    assert exported["decisions"]["not_linkable_count"] == 1
    assert "cannot be tied" in exported["decisions"]["explanation"]

    erased = await as_operator(
        client, "POST", "/data_subject_erasure", json={"kind": "email", "value": "subject@example.com"}
    )
    assert erased["erased"] == {"entries": 1, "reports": 2, "appeals": 1}
    after = await as_operator(
        client, "POST", "/data_subject_export", json={"kind": "email", "value": "subject@example.com"}
    )
    assert (after["entries"], after["reports"], after["appeals"]) == ([], [], [])
    assert await count(db, BlacklistEntry) == 1  # the bystander's
    missing = await client.get(f"/api/v1/blacklist_reports/{first}", headers=shop.auth)
    assert missing.status_code == 404
    async with db.transaction() as session:
        audit = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "blacklist.data_subject_erased")
        )
    assert audit is not None and audit.actor_kind == "operator" and "subject" not in json.dumps(audit.after)


async def test_entries_expire_and_are_deleted_thirty_days_later(
    client: httpx.AsyncClient,
    shop: Shop,
    operator: dict[str, str],
    db: Database,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    report_id = await merchant_report(client, shop, "old@example.com")
    await as_operator(client, "POST", f"/blacklist_reports/{report_id}/confirm")
    async with db.transaction() as session:
        entry_id = await session.scalar(select(BlacklistReport.entry_id))
    assert entry_id is not None
    await add_appeal(db, settings, entry_id, "old news")

    clock.advance(RETENTION["fraud_attempt"] - timedelta(hours=1))
    assert await expire_entries(db) == 0
    clock.advance(timedelta(hours=2))
    assert await expire_entries(db) == 1
    mine = await api(client, shop, "GET", f"/blacklist_reports/{report_id}")
    assert mine["entry_status"] == "expired"

    clock.advance(timedelta(days=29))
    await expire_entries(db)
    assert await count(db, BlacklistEntry) == 1
    clock.advance(timedelta(days=1))
    await expire_entries(db)
    assert (await count(db, BlacklistEntry), await count(db, BlacklistReport), await count(db, Appeal)) == (
        0,
        0,
        0,
    )


@pytest.mark.slow
def test_the_command_line_reports_reviews_exports_and_erases(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env.update(
        EINLASS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        EINLASS_SECRET_KEY="cli-secret",
        EINLASS_LOG_LEVEL="WARNING",
    )
    einlass = Path(sys.executable).with_name("einlass")

    def run(*args: str) -> Any:
        done = subprocess.run(
            [str(einlass), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else done.stdout

    run("migrate")
    run("merchant", "create", "shop", "--name", "Shop")
    [filed] = run(
        "blacklist",
        "report",
        "--merchant",
        "shop",
        "--email",
        "cli@example.com",
        "--category",
        "abuse",
        "--text",
        "spam",
    )
    [queued] = run("blacklist", "queue")
    assert queued["id"] == filed["id"] and queued["reporter"]["slug"] == "shop"
    assert run("blacklist", "confirm", filed["id"])["entry"]["status"] == "active"
    exported = run("blacklist", "export", "--kind", "email", "--value", "CLI@example.com")
    assert [report["evidence"] for report in exported["reports"]] == [{"text": "spam"}]
    erased = run("blacklist", "erase", "--kind", "email", "--value", "cli@example.com")
    assert erased["erased"]["entries"] == 1
