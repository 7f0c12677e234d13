"""Privacy of the shared blacklist: one merchant never sees another's reports, and no table holds a raw identifier."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, text

from conftest import Shop, make_shop
from einlass import clock
from einlass.crypto import encrypt_json
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.screening.identifiers import normalize
from einlass.screening.models import Appeal, BlacklistEntry, ScreeningDecision
from einlass.screening.rules import Hit, decide
from helpers import api

# Raw as a customer or gateway would give them; the tables must hold neither these nor their normalised forms.
RAW_IDENTIFIERS = {
    "email": "Priv.Acy+Tag@GMail.com",
    "phone": "030 98765432",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ip": "198.51.100.77",
    "name_postcode": "Jörg Müller|10115",
    "card_fingerprint": "Xt5EWLLDS7FJjR1c",
    "device_id": "dev-7f3a9c1e2b55",
}


async def test_another_merchant_sees_nothing_of_a_report_not_even_that_it_exists(
    client: httpx.AsyncClient, shop: Shop, db: Database
) -> None:
    other = await make_shop(db, "other")
    body = {
        "identifiers": {"email": "target@example.com"},
        "category": "chargeback",
        "evidence": {"text": "secret evidence of shop"},
    }
    [filed] = (await api(client, shop, "POST", "/blacklist_reports", json=body))["data"]

    listed = await api(client, other, "GET", "/blacklist_reports")
    assert listed["data"] == [] and listed["has_more"] is False
    assert set(listed) == {"object", "url", "data", "has_more", "next_cursor"}
    unknown = await client.get("/api/v1/blacklist_reports/blr_does_not_exist", headers=other.auth)
    for method, path in (
        ("GET", f"/api/v1/blacklist_reports/{filed['id']}"),
        ("POST", f"/api/v1/blacklist_reports/{filed['id']}/withdraw"),
    ):
        response = await client.request(method, path, headers=other.auth)
        assert response.status_code == 404
        # The same answer as for an id that never existed: no oracle.
        assert response.json()["error"]["code"] == unknown.json()["error"]["code"]
        assert "secret evidence" not in response.text

    # Reporting the same identifier shows the other merchant its own report only, with no count.
    answer = await client.post(
        "/api/v1/blacklist_reports",
        json={"identifiers": {"email": "TARGET@example.com"}, "category": "chargeback"},
        headers=other.auth,
    )
    [own] = answer.json()["data"]
    assert own["id"] != filed["id"] and own["evidence"] is None and own["entry_status"] == "pending"
    assert "secret evidence" not in answer.text and filed["id"] not in answer.text
    assert shop.slug not in answer.text and shop.merchant_id not in answer.text
    assert not any("count" in key or "reporter" in key for key in own)
    listed = await api(client, other, "GET", "/blacklist_reports")
    assert [item["id"] for item in listed["data"]] == [own["id"]]

    # And the first merchant still sees only its own, with its evidence intact.
    mine = await api(client, shop, "GET", "/blacklist_reports")
    assert [(item["id"], item["evidence"]["text"]) for item in mine["data"]] == [
        (filed["id"], "secret evidence of shop")
    ]


def forbidden_values() -> set[str]:
    values = set()
    for kind, raw in RAW_IDENTIFIERS.items():
        values.add(raw.lower())
        values.add(normalize(kind, raw).value.lower())
    return values


def as_text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


async def test_no_table_of_the_blacklist_holds_a_raw_or_normalised_identifier(
    client: httpx.AsyncClient, shop: Shop, db: Database
) -> None:
    evidence_naming_everything = "customer used " + ", ".join(RAW_IDENTIFIERS.values())
    filed = await api(
        client,
        shop,
        "POST",
        "/blacklist_reports",
        json={
            "identifiers": RAW_IDENTIFIERS,
            "category": "fraud_attempt",
            "evidence": {"text": evidence_naming_everything},
        },
    )
    assert len(filed["data"]) == len(RAW_IDENTIFIERS)
    async with db.transaction() as session:
        entries = list(await session.scalars(select(BlacklistEntry)))
        now = clock.now()
        session.add(
            Appeal(
                id=new_id("apl"),
                entry_id=entries[0].id,
                status="pending",
                statement=encrypt_json(
                    "test-secret-key-for-einlass", {"text": evidence_naming_everything}
                ).encode(),
                created_at=now,
            )
        )
        decision = decide(
            whitelisted_by=(), hits=[Hit(entry.kind, entry.category, entry.status) for entry in entries]
        )
        session.add(
            ScreeningDecision(
                id=new_id("scd"),
                merchant_id=shop.merchant_id,
                context="checkout",
                outcome=decision.outcome,
                reasons=list(decision.reasons),
                created_at=now,
            )
        )

    forbidden = forbidden_values()
    scanned = 0
    async with db.engine.connect() as connection:
        for table in ("blacklist_entries", "blacklist_reports", "blacklist_appeals", "screening_decisions"):
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).mappings().all()
            assert rows, table
            for row in rows:
                for column, value in row.items():
                    if value is None:
                        continue
                    scanned += 1
                    haystack = as_text(value).lower()
                    leaked = [needle for needle in forbidden if needle in haystack]
                    assert not leaked, f"{table}.{column} holds {leaked}"
    assert scanned > 50
