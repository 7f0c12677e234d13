"""The real ``einlass`` command line, run as a subprocess against a SQLite file."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import select

from cli_support import Cli, migrated_cli
from einlass.app import create_app
from einlass.crypto import verify_password
from einlass.db.engine import Database
from einlass.members.models import Member
from payloads import generic

pytestmark = pytest.mark.slow

SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    yield migrated_cli(tmp_path_factory, "cli")


@asynccontextmanager
async def api_of(cli: Cli) -> AsyncIterator[httpx.AsyncClient]:
    """The web app on the CLI's database, as ``einlass serve`` would run it."""
    app = create_app(cli.settings(), run_worker=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://einlass.test") as http:
            yield http
    finally:
        await app.state.db.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def password_hash(cli: Cli, member_id: str) -> str | None:
    db = Database(cli.database_url)
    try:
        async with db.transaction() as session:
            return await session.scalar(select(Member.password_hash).where(Member.id == member_id))
    finally:
        await db.dispose()


def test_migrate_twice_is_harmless(cli):
    assert cli.run("migrate").stdout.strip() == "database is up to date"


async def test_merchant_create_prints_a_one_time_api_key_that_the_api_accepts(cli):
    created = cli.json("merchant create acme --name 'Acme Media'")
    assert created["object"] == "merchant" and created["slug"] == "acme" and created["name"] == "Acme Media"
    assert created["id"].startswith("mer_") and created["api_key"].startswith("ek_")

    async with api_of(cli) as http:
        response = await http.get("/api/v1/merchant", headers=bearer(created["api_key"]))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == created["id"] and response.json()["slug"] == "acme"
        keys = (await http.get("/api/v1/api_keys", headers=bearer(created["api_key"]))).json()
        assert created["api_key"] not in json.dumps(keys)
        assert (await http.get("/readyz")).status_code == 200

    listed = cli.json("merchant list")
    assert [m["name"] for m in listed if m["slug"] == "acme"] == ["Acme Media"]
    assert "api_key" not in json.dumps(listed)


def test_merchant_create_with_a_taken_or_bad_slug_fails_clearly(cli):
    cli.json("merchant create taken --name First")
    taken, bad, unknown = cli.run_parallel(
        ("merchant create taken --name Second", 1),
        ("merchant create 'Not A Slug' --name Bad", 1),
        ("member list no-such-shop", 1),
    )
    assert taken.stdout == ""
    assert taken.stderr.strip() == "error: a merchant with slug 'taken' exists already"
    assert bad.stdout == "" and bad.stderr.startswith("error: slug must be")
    assert unknown.stderr.strip() == "error: no merchant 'no-such-shop'"
    assert [m["name"] for m in cli.json("merchant list") if m["slug"] == "taken"] == ["First"]


async def test_catalogue_gateway_and_members_by_hand(cli):
    shop = "bookshop"
    cli.json(f"merchant create {shop} --name 'Book Shop'")
    area = cli.json(f"catalogue area {shop} premium --name Premium")
    assert area["object"] == "area" and area["slug"] == "premium"

    plan, gateway, quiet, mailed = (
        json.loads(result.stdout)
        for result in cli.run_parallel(
            (
                f"catalogue plan {shop} month --name '30 days' --amount 990 --area premium --period P30D "
                "--ref generic=prod-30",
                0,
            ),
            (f"gateway set {shop} generic --secret signing_secret={SIGNING_SECRET}", 0),
            (f"member create {shop} quiet@example.com --name Quiet --no-send", 0),
            (f"member create {shop} mailed@example.com", 0),
        )
    )
    assert plan == {
        **plan,
        "slug": "month",
        "amount": 990,
        "currency": "EUR",
        "access_period": "P30D",
        "areas": ["premium"],
        "gateway_refs": {"generic": ["prod-30"]},
    }
    assert gateway == {
        "gateway": "generic",
        "configured_secrets": ["signing_secret"],
        "webhook_url": f"http://127.0.0.1:8000/webhooks/{shop}/generic",
    }
    assert quiet["status"] == "active" and quiet["name"] == "Quiet" and len(quiet["password"]) >= 16
    hashed = await password_hash(cli, quiet["id"])
    assert hashed is not None and verify_password(quiet["password"], hashed)
    assert "password" not in mailed
    mid = quiet["id"]

    bad_period, unknown, malformed, duplicate, no_member, order, pending, failed, grant, key = (
        cli.run_parallel(
            (f"catalogue plan {shop} bad --name Bad --amount 1 --area premium --period '30 days'", 1),
            (f"gateway set {shop} generic --secret colour=red", 1),
            (f"gateway set {shop} generic --secret no-equals-sign", 2),
            (f"member create {shop} QUIET@example.com --no-send", 1),
            (f"member lock {shop} mem_unknown", 1),
            (f"catalogue order {shop} month --email buyer@example.com", 0),
            (f"jobs list {shop} --status pending", 0),
            (f"jobs list {shop}", 0),
            (f"member grant {shop} {mid} premium --until 2099-01-01T00:00:00 --note press", 0),
            (f"merchant api-key {shop} --name check", 0),
        )
    )
    assert "access_period '30 days' is not an ISO 8601 duration" in bad_period.stderr
    assert "unknown secret(s) for generic: colour" in unknown.stderr and "red" not in unknown.stderr
    assert "NAME=VALUE" in malformed.stderr
    assert "exists already" in duplicate.stderr
    assert no_member.stderr.strip() == "error: no member 'mem_unknown'"
    order_document = json.loads(order.stdout)
    assert order_document["status"] == "pending" and order_document["order_no"].startswith("ein-")
    emails = [
        job["payload"]["member_id"]
        for job in json.loads(pending.stdout)
        if job["kind"] == "email.credentials"
    ]
    assert emails == [mailed["id"]]
    assert json.loads(failed.stdout) == []  # by default the failed jobs: none
    grant_document = json.loads(grant.stdout)
    assert grant_document["ends_at"] == "2099-01-01T00:00:00+00:00" and grant_document["note"] == "press"
    assert grant_document["source"]["kind"] == "manual"

    locked = cli.json(f"member lock {shop} {mid} --reason 'chargeback at the bank'")
    assert locked["status"] == "locked" and locked["lock_reason"] == "chargeback at the bank"
    assert locked["access"] == [{"area": "premium", "area_id": area["id"], "active": False, "until": None}]
    unlocked = cli.json(f"member unlock {shop} {mid}")
    assert unlocked["status"] == "active"
    assert unlocked["access"] == [
        {"area": "premium", "area_id": area["id"], "active": True, "until": "2099-01-01T00:00:00+00:00"}
    ]
    deleted = cli.json(f"member delete {shop} {mid}")
    assert deleted["status"] == "deleted" and deleted["email"] is None and deleted["name"] is None
    assert all(entry["active"] is False for entry in deleted["access"])

    # What the CLI did is what the API and the webhook endpoint see.
    api_key = json.loads(key.stdout)["api_key"]
    async with api_of(cli) as http:
        listed = (await http.get("/api/v1/members", headers=bearer(api_key))).json()
        assert [m["id"] for m in listed["data"]] == [mailed["id"]]
        params = {"member": mid, "limit": 100}
        audit = (await http.get("/api/v1/audit_entries", params=params, headers=bearer(api_key))).json()
        assert {entry["actor"]["kind"] for entry in audit["data"]} == {"cli"}
        actions = {entry["action"] for entry in audit["data"]}
        assert {
            "member.created",
            "grant.created",
            "member.locked",
            "member.unlocked",
            "member.deleted",
        } <= actions

        payment = generic.payment_confirmed(
            "pay-cli", amount=990, email="payer@example.com", product_id="prod-30"
        )
        body, headers = generic.signed(payment, SIGNING_SECRET, "msg_cli_1", int(time.time()))
        response = await http.post(f"/webhooks/{shop}/generic", content=body, headers=headers)
        assert response.status_code == 200 and response.json()["status"] == "stored", response.text
        params = {"email": "payer@example.com"}
        [payer] = (await http.get("/api/v1/members", params=params, headers=bearer(api_key))).json()["data"]
        payer = (await http.get(f"/api/v1/members/{payer['id']}", headers=bearer(api_key))).json()
        assert [(a["area"], a["active"]) for a in payer["access"]] == [("premium", True)]


async def test_demo_twice_issues_a_new_key_and_no_second_merchant(cli):
    first = cli.json("demo")
    second = cli.json("demo")
    assert first["merchant"] == second["merchant"] == "demo"
    assert first["api_key"].startswith("ek_") and second["api_key"].startswith("ek_")
    assert first["api_key"] != second["api_key"]
    assert first["generic_signing_secret"] == second["generic_signing_secret"]
    assert [m["slug"] for m in cli.json("merchant list")].count("demo") == 1
    # The demo's admin UI account: its password and TOTP secret are shown once, when created.
    assert first["admin_ui"]["email"] == second["admin_ui"]["email"] == "admin@demo.example"
    assert len(first["admin_ui"]["password"]) >= 12 and first["admin_ui"]["totp_secret"]
    assert "totp_secret" not in second["admin_ui"]
    assert [s["email"] for s in cli.json("staff list --merchant demo")] == ["admin@demo.example"]

    async with api_of(cli) as http:
        for key in (first["api_key"], second["api_key"]):
            response = await http.get("/api/v1/merchant", headers=bearer(key))
            assert response.status_code == 200 and response.json()["slug"] == "demo"
        plans = (await http.get("/api/v1/plans", headers=bearer(second["api_key"]))).json()["data"]
        assert [plan["slug"] for plan in plans] == ["premium-30d", "premium-monthly"]
        gateways = (await http.get("/api/v1/gateways", headers=bearer(second["api_key"]))).json()["data"]
        assert {gateway["id"] for gateway in gateways} == {"generic", "novalnet", "stripe"}
