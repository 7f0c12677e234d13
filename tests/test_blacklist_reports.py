"""Merchant reports on the shared blacklist: filing, reading one's own, withdrawing, the threshold, chargebacks."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from conftest import Shop, make_shop
from einlass import clock
from einlass.billing.models import Payment
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.screening.models import BlacklistEntry, BlacklistReport
from einlass.screening.service import report_chargeback
from einlass.tenants.models import Merchant
from helpers import api


async def report(http: httpx.AsyncClient, shop: Shop, **body: Any) -> list[dict[str, Any]]:
    document = await api(http, shop, "POST", "/blacklist_reports", json=body)
    data: list[dict[str, Any]] = document["data"]
    return data


async def entries(db: Database) -> list[BlacklistEntry]:
    async with db.transaction() as session:
        return list(await session.scalars(select(BlacklistEntry).order_by(BlacklistEntry.kind)))


async def add_payment(db: Database, shop: Shop, email: str) -> str:
    now = clock.now()
    payment_id = new_id("pay")
    async with db.transaction() as session:
        session.add(
            Payment(
                id=payment_id,
                merchant_id=shop.merchant_id,
                gateway="generic",
                external_id=new_id("ext"),
                customer_email=email,
                amount=990,
                currency="EUR",
                status="charged_back",
                charged_back=True,
                created_at=now,
                updated_at=now,
            )
        )
    return payment_id


async def test_a_report_files_one_pending_report_per_identifier_with_its_evidence(
    client: httpx.AsyncClient, shop: Shop, db: Database
) -> None:
    payment = await add_payment(db, shop, "mallory@example.com")
    filed = await report(
        client,
        shop,
        identifiers={"email": "Mallory@Example.com", "phone": "030 1234567"},
        category="chargeback",
        evidence={"text": "chargeback on order 17", "payment": payment},
    )
    assert [(item["kind"], item["status"], item["entry_status"]) for item in filed] == [
        ("email", "pending", "pending"),
        ("phone", "pending", "pending"),
    ]
    assert all(item["evidence"] == {"text": "chargeback on order 17", "payment": payment} for item in filed)

    listed = await api(client, shop, "GET", "/blacklist_reports")
    assert {item["id"] for item in listed["data"]} == {item["id"] for item in filed}
    assert {item["category"] for item in listed["data"]} == {"chargeback"}
    one = await api(client, shop, "GET", f"/blacklist_reports/{filed[0]['id']}")
    assert one["evidence"]["text"] == "chargeback on order 17" and one["created_at"]
    assert [(entry.kind, entry.source) for entry in await entries(db)] == [
        ("email", "merchant_report"),
        ("phone", "merchant_report"),
    ]


async def test_reporting_the_same_identifier_again_files_nothing_new(
    client: httpx.AsyncClient, shop: Shop, db: Database
) -> None:
    [first] = await report(client, shop, identifiers={"email": "a.b@gmail.com"}, category="fraud_attempt")
    [again] = await report(client, shop, identifiers={"email": "AB+shop@gmail.com"}, category="fraud_attempt")
    assert again["id"] == first["id"] and again["already_reported"] is True
    async with db.transaction() as session:
        assert len(list(await session.scalars(select(BlacklistReport)))) == 1


async def test_bad_input_names_the_field_and_files_nothing(
    client: httpx.AsyncClient, shop: Shop, db: Database
) -> None:
    cases = [
        (
            {"identifiers": {"email": "a@example.com", "iban": "DE00 0000"}, "category": "abuse"},
            "identifiers.iban",
        ),
        ({"identifiers": {"shoe_size": "44"}, "category": "abuse"}, "identifiers"),
        ({"identifiers": {"email": "a@example.com"}, "category": "rude"}, "category"),
        (
            {
                "identifiers": {"email": "a@example.com"},
                "category": "abuse",
                "evidence": {"payment": "pay_x"},
            },
            "evidence.payment",
        ),
        ({"identifiers": {}, "category": "abuse"}, "identifiers"),
    ]
    for body, param in cases:
        response = await client.post("/api/v1/blacklist_reports", json=body, headers=shop.auth)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
    assert await entries(db) == []


async def test_withdrawing_the_only_report_deletes_the_entry(
    client: httpx.AsyncClient, shop: Shop, db: Database
) -> None:
    [filed] = await report(
        client,
        shop,
        identifiers={"iban": "DE89370400440532013000"},
        category="payment_default",
        evidence={"text": "never paid"},
    )
    withdrawn = await api(client, shop, "POST", f"/blacklist_reports/{filed['id']}/withdraw")
    assert withdrawn["status"] == "withdrawn" and withdrawn["evidence"] is None
    assert withdrawn["entry_status"] == "deleted"
    assert await entries(db) == []
    missing = await client.get(f"/api/v1/blacklist_reports/{filed['id']}", headers=shop.auth)
    assert missing.status_code == 404


async def test_withdrawing_keeps_an_entry_others_reported_and_erases_only_ones_own_evidence(
    client: httpx.AsyncClient, shop: Shop, db: Database, settings: Settings
) -> None:
    other = await make_shop(db, "other")
    [mine] = await report(
        client, shop, identifiers={"email": "x@example.com"}, category="abuse", evidence={"text": "mine"}
    )
    [theirs] = await report(
        client, other, identifiers={"email": "x@example.com"}, category="abuse", evidence={"text": "theirs"}
    )
    withdrawn = await api(client, shop, "POST", f"/blacklist_reports/{mine['id']}/withdraw")
    assert withdrawn["status"] == "withdrawn" and withdrawn["entry_status"] == "pending"
    kept = await api(client, other, "GET", f"/blacklist_reports/{theirs['id']}")
    assert kept["evidence"] == {"text": "theirs"} and kept["entry_status"] == "pending"
    again = await api(client, shop, "GET", f"/blacklist_reports/{mine['id']}")
    assert again["status"] == "withdrawn" and again["evidence"] is None
    async with db.transaction() as session:
        stored = await session.get(BlacklistReport, mine["id"])
        assert stored is not None and stored.evidence is None


async def test_enough_independent_merchants_make_an_entry_active(
    client: httpx.AsyncClient, shop: Shop, db: Database, settings: Settings
) -> None:
    assert settings.blacklist_independent_reports == 3
    second, third = await make_shop(db, "second"), await make_shop(db, "third")
    [one] = await report(client, shop, identifiers={"email": "fraud@example.com"}, category="fraud_attempt")
    [two] = await report(client, second, identifiers={"email": "FRAUD@example.com"}, category="fraud_attempt")
    # Another category is another entry: it does not add to the count.
    [elsewhere] = await report(client, third, identifiers={"email": "fraud@example.com"}, category="abuse")
    assert (one["entry_status"], two["entry_status"], elsewhere["entry_status"]) == ("pending",) * 3
    [three] = await report(
        client, third, identifiers={"email": "fraud@example.com"}, category="fraud_attempt"
    )
    assert three["entry_status"] == "active"
    mine = await api(client, shop, "GET", f"/blacklist_reports/{one['id']}")
    assert mine["status"] == "pending" and mine["entry_status"] == "active"

    # One merchant withdrawing brings it below the threshold again.
    await api(client, second, "POST", f"/blacklist_reports/{two['id']}/withdraw")
    mine = await api(client, shop, "GET", f"/blacklist_reports/{one['id']}")
    assert mine["entry_status"] == "pending"


async def test_a_chargeback_is_reported_only_when_the_merchant_asked_for_it(
    shop: Shop, db: Database, settings: Settings
) -> None:
    payment_id = await add_payment(db, shop, "Charge.Back@Example.com")
    async with db.transaction() as session:
        merchant = await session.get(Merchant, shop.merchant_id)
        payment = await session.get(Payment, payment_id)
        assert merchant is not None and payment is not None
        assert await report_chargeback(session, settings, merchant, payment) is None
        merchant.settings = {**merchant.settings, "report_chargebacks": True}
        filed = await report_chargeback(session, settings, merchant, payment)
        assert filed is not None and filed.status == "pending" and filed.merchant_id == shop.merchant_id
        # A second chargeback notice for the same customer files no second report.
        again = await report_chargeback(session, settings, merchant, payment)
        assert again is not None and again.id == filed.id
    [entry] = await entries(db)
    assert (entry.kind, entry.category, entry.status) == ("email", "chargeback", "pending")
