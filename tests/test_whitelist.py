"""A merchant's whitelist: API and CLI; only digests are kept, and every change is audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from einlass.screening.models import WhitelistEntry
from helpers import api

EINLASS = Path(sys.executable).with_name("einlass")


async def test_an_identifier_is_kept_as_a_digest_never_raw(client, shop, db):
    entry = await api(
        client,
        shop,
        "POST",
        "/whitelist",
        json={"kind": "phone", "value": "+49 170 1234567", "note": "our best customer"},
    )
    assert entry["object"] == "whitelist_entry" and entry["id"].startswith("wle_")
    assert (entry["kind"], entry["member"], entry["note"]) == ("phone", None, "our best customer")
    assert "digest" not in entry

    async with db.transaction() as session:
        row = await session.scalar(select(WhitelistEntry).where(WhitelistEntry.id == entry["id"]))
    assert row is not None and row.merchant_id == shop.merchant_id
    stored = json.dumps([row.kind, row.digest, row.note, row.member_id])
    assert "1701234567" not in stored and "+49" not in stored and len(row.digest or "") == 64

    listing = await api(client, shop, "GET", "/whitelist")
    assert listing["data"] == [entry]


async def test_listing_the_same_customer_twice_is_a_conflict(client, shop):
    await api(client, shop, "POST", "/whitelist", json={"kind": "email", "value": "Anna.M@gmail.com"})
    again = await client.post(
        "/api/v1/whitelist", json={"kind": "email", "value": "annam+x@googlemail.com"}, headers=shop.auth
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_whitelisted"
    assert len((await api(client, shop, "GET", "/whitelist"))["data"]) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"kind": "email", "value": "not-an-address"}, "email"),
        ({"kind": "shoe_size", "value": "44"}, "shoe_size"),
        ({"kind": "email"}, "kind"),
        ({}, "kind"),
        ({"member": "mem_nobody"}, "member"),
    ],
)
async def test_what_cannot_be_listed_is_refused_and_named(client, shop, body, param):
    response = await client.post("/api/v1/whitelist", json=body, headers=shop.auth)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param
    assert (await api(client, shop, "GET", "/whitelist"))["data"] == []


async def test_adding_and_removing_are_audited_without_the_identifier(client, shop):
    member = await api(
        client, shop, "POST", "/members", json={"email": "m@example.com", "send_credentials": False}
    )
    by_member = await api(client, shop, "POST", "/whitelist", json={"member": member["id"], "note": "VIP"})
    by_iban = await api(
        client, shop, "POST", "/whitelist", json={"kind": "iban", "value": "DE89370400440532013000"}
    )
    assert by_member["kind"] == "member" and by_member["member"] == member["id"]
    listed = await api(client, shop, "GET", "/whitelist", params={"member": member["id"]})
    assert [e["id"] for e in listed["data"]] == [by_member["id"]]

    removed = await api(client, shop, "DELETE", f"/whitelist/{by_iban['id']}")
    assert removed["deleted"] is True
    assert (await client.get(f"/api/v1/whitelist/{by_iban['id']}", headers=shop.auth)).status_code == 404

    audit = await api(client, shop, "GET", "/audit_entries")
    actions = [
        (e["action"], e["entity"]["id"]) for e in audit["data"] if e["action"].startswith("whitelist.")
    ]
    assert actions == [
        ("whitelist.removed", by_iban["id"]),
        ("whitelist.added", by_iban["id"]),
        ("whitelist.added", by_member["id"]),
    ]
    assert "DE89370400440532013000" not in json.dumps(audit)


@pytest.mark.slow
def test_the_cli_screens_and_manages_the_whitelist(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env.update(
        EINLASS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        EINLASS_SECRET_KEY="cli-whitelist-secret",
        EINLASS_LOG_LEVEL="WARNING",
    )

    def einlass(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(EINLASS), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == expect, f"{args}: {done.stdout} {done.stderr}"
        return done

    einlass("migrate")
    einlass("merchant", "create", "kiosk", "--name", "Kiosk")
    entry = json.loads(
        einlass(
            "whitelist",
            "add",
            "--merchant",
            "kiosk",
            "--kind",
            "email",
            "--value",
            "Eva@Example.com",
            "--note",
            "regular",
        ).stdout
    )
    assert (entry["kind"], entry["note"]) == ("email", "regular")
    listed = json.loads(einlass("whitelist", "list", "--merchant", "kiosk").stdout)
    assert [e["id"] for e in listed] == [entry["id"]] and "Eva" not in json.dumps(listed)

    decision = json.loads(
        einlass("screen", "--merchant", "kiosk", "--email", "eva@example.com", "--phone", "0301234567").stdout
    )
    assert decision["outcome"] == "accept"
    assert decision["reasons"] == [{"source": "whitelist", "kind": "email"}]

    einlass("whitelist", "remove", "--merchant", "kiosk", entry["id"])
    assert json.loads(einlass("whitelist", "list", "--merchant", "kiosk").stdout) == []
    refused = einlass("screen", "--merchant", "kiosk", "--phone", "no number", expect=1)
    assert "phone" in refused.stderr
