"""The checkout asks before the payment: POST /api/v1/screenings, decisions per merchant and member."""

from __future__ import annotations

import re

from conftest import make_shop
from einlass.screening.blacklist import file_report
from einlass.screening.identifiers import normalize
from einlass.screening.models import REPORT_CONFIRMED, REPORT_PENDING, SOURCE_OPERATOR
from helpers import api

HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


async def blacklist(db, settings, kind, raw, *, status=REPORT_CONFIRMED, category="fraud_attempt"):
    async with db.transaction() as session:
        await file_report(
            session,
            settings,
            normalize(kind, raw),
            category=category,
            source=SOURCE_OPERATOR,
            merchant_id=None,
            status=status,
        )


async def ask(client, shop, identifiers, member=None, expect=201):
    body = {"identifiers": identifiers} | ({"member": member} if member else {})
    response = await client.post("/api/v1/screenings", json=body, headers=shop.auth)
    assert response.status_code == expect, response.text
    return response.json()


async def new_member(client, shop, email):
    return await api(client, shop, "POST", "/members", json={"email": email, "send_credentials": False})


async def test_whitelist_wins_for_its_merchant_only(client, shop, db, settings):
    other = await make_shop(db, "other")
    await blacklist(db, settings, "email", "mallory@example.com")
    await api(client, shop, "POST", "/whitelist", json={"kind": "email", "value": "mallory@example.com"})

    accepted = await ask(client, shop, {"email": "mallory@example.com"})
    rejected = await ask(client, other, {"email": "Mallory@Example.com"})

    assert accepted["object"] == "screening" and accepted["id"].startswith("scr_")
    assert accepted["outcome"] == "accept"
    assert accepted["reasons"] == [{"source": "whitelist", "kind": "email"}]
    assert rejected["outcome"] == "reject"
    assert rejected["reasons"] == [
        {"source": "blacklist", "kind": "email", "category": "fraud_attempt", "status": "active"}
    ]
    for document in (accepted, rejected):
        text = str(document)
        assert "mallory" not in text.lower() and not HEX_DIGEST.search(text)


async def test_a_pending_entry_asks_for_review(client, shop, db, settings):
    await blacklist(db, settings, "iban", "DE89 3704 0044 0532 0130 00", status=REPORT_PENDING)
    decision = await ask(client, shop, {"iban": "de89370400440532013000", "email": "x@example.com"})
    assert decision["outcome"] == "review"
    assert decision["reasons"] == [
        {"source": "blacklist", "kind": "iban", "category": "fraud_attempt", "status": "pending"}
    ]


async def test_a_clean_customer_is_accepted_without_reasons(client, shop, db, settings):
    await blacklist(db, settings, "email", "someone-else@example.com")
    decision = await ask(client, shop, {"email": "fine@example.com", "ip": "203.0.113.7"})
    assert (decision["outcome"], decision["reasons"]) == ("accept", [])


async def test_spellings_of_the_same_identifier_meet(client, shop, db, settings):
    await blacklist(db, settings, "email", "Anna.Muster+shopping@gmail.com")
    await blacklist(db, settings, "phone", "+49 30 1234567", category="chargeback")

    by_email = await ask(client, shop, {"email": "annamuster@googlemail.com"})
    by_phone = await ask(client, shop, {"phone": "030 123 4567"})  # national, the merchant's region (DE)

    assert by_email["outcome"] == "reject"
    assert by_phone["outcome"] == "reject"
    assert by_phone["reasons"][0]["category"] == "chargeback"


async def test_an_invalid_identifier_is_named_and_nothing_is_stored(client, shop):
    response = await client.post(
        "/api/v1/screenings",
        json={"identifiers": {"email": "ok@example.com", "phone": "not a number"}},
        headers=shop.auth,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "identifiers.phone"

    unknown = await client.post(
        "/api/v1/screenings", json={"identifiers": {"shoe_size": "44"}}, headers=shop.auth
    )
    assert unknown.status_code == 400 and "shoe_size" in unknown.json()["error"]["param"]
    nothing = await client.post("/api/v1/screenings", json={"identifiers": {}}, headers=shop.auth)
    assert nothing.status_code == 400

    assert (await api(client, shop, "GET", "/screenings"))["data"] == []


async def test_whitelist_by_member_and_by_identifier(client, shop, db, settings):
    await blacklist(db, settings, "email", "loyal@example.com")
    await blacklist(db, settings, "device_id", "dev-42")
    member = await new_member(client, shop, "loyal@example.com")

    assert (await ask(client, shop, {"email": "loyal@example.com"}, member["id"]))["outcome"] == "reject"
    entry = await api(client, shop, "POST", "/whitelist", json={"member": member["id"], "note": "since 2019"})
    by_member = await ask(client, shop, {"email": "loyal@example.com"}, member["id"])
    assert by_member["outcome"] == "accept"
    assert by_member["reasons"] == [{"source": "whitelist", "kind": "member"}]
    # Without naming the member, the whitelist by member does not apply.
    assert (await ask(client, shop, {"email": "loyal@example.com"}))["outcome"] == "reject"

    await api(client, shop, "DELETE", f"/whitelist/{entry['id']}")
    assert (await ask(client, shop, {"email": "loyal@example.com"}, member["id"]))["outcome"] == "reject"

    await api(client, shop, "POST", "/whitelist", json={"kind": "device_id", "value": "dev-42"})
    by_device = await ask(client, shop, {"device_id": " dev-42 "})
    assert (by_device["outcome"], by_device["reasons"]) == (
        "accept",
        [{"source": "whitelist", "kind": "device_id"}],
    )


async def test_another_merchant_sees_nothing_of_it(client, shop, db, settings):
    other = await make_shop(db, "other")
    member = await new_member(client, shop, "anna@example.com")
    decision = await ask(client, shop, {"email": "anna@example.com"}, member["id"])
    entry = await api(client, shop, "POST", "/whitelist", json={"member": member["id"]})

    for path in (f"/screenings/{decision['id']}", f"/whitelist/{entry['id']}"):
        response = await client.get(f"/api/v1{path}", headers=other.auth)
        assert response.status_code == 404
    deleting = await client.delete(f"/api/v1/whitelist/{entry['id']}", headers=other.auth)
    assert deleting.status_code == 404
    assert (await api(client, other, "GET", "/screenings"))["data"] == []
    assert (await api(client, other, "GET", "/screenings", params={"member": member["id"]}))["data"] == []
    assert (await api(client, other, "GET", "/whitelist"))["data"] == []
    # Nor can it screen against (or attach decisions to) the first merchant's member.
    foreign = await client.post(
        "/api/v1/screenings",
        json={"identifiers": {"email": "anna@example.com"}, "member": member["id"]},
        headers=other.auth,
    )
    assert foreign.status_code == 404 and foreign.json()["error"]["param"] == "member"
    assert (await api(client, other, "GET", "/screenings"))["data"] == []
    # The entry is still there for its merchant.
    assert [e["id"] for e in (await api(client, shop, "GET", "/whitelist"))["data"]] == [entry["id"]]


async def test_decisions_are_kept_per_member_and_shown_with_it(client, shop, db, settings):
    member = await new_member(client, shop, "berta@example.com")
    someone = await new_member(client, shop, "carl@example.com")
    first = await ask(client, shop, {"email": "berta@example.com"}, member["id"])
    await blacklist(db, settings, "email", "berta@example.com", category="chargeback")
    second = await ask(client, shop, {"email": "berta@example.com"}, member["id"])
    await ask(client, shop, {"email": "carl@example.com"}, someone["id"])

    detail = await api(client, shop, "GET", f"/members/{member['id']}")
    assert [d["id"] for d in detail["screening_decisions"]] == [second["id"], first["id"]]
    assert [d["outcome"] for d in detail["screening_decisions"]] == ["reject", "accept"]
    assert detail["whitelisted"] is False

    listing = await api(client, shop, "GET", "/screenings", params={"member": member["id"], "limit": 1})
    assert [d["id"] for d in listing["data"]] == [second["id"]] and listing["has_more"]
    rest = await api(
        client,
        shop,
        "GET",
        "/screenings",
        params={"member": member["id"], "starting_after": listing["next_cursor"]},
    )
    assert [d["id"] for d in rest["data"]] == [first["id"]] and not rest["has_more"]
    assert await api(client, shop, "GET", f"/screenings/{second['id']}") == second

    # Whitelisted by its email, the member shows as whitelisted.
    await api(client, shop, "POST", "/whitelist", json={"kind": "email", "value": "Berta@Example.com"})
    assert (await api(client, shop, "GET", f"/members/{member['id']}"))["whitelisted"] is True
    assert (await api(client, shop, "GET", f"/members/{someone['id']}"))["whitelisted"] is False
