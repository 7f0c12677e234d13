"""Push targets end to end: payments, locks, time and hand edits reach an htpasswd file."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from passlib.hash import apr_md5_crypt, bcrypt, sha512_crypt
from sqlalchemy import select

from einlass.members.models import Member
from einlass.outbox.models import JOB_PENDING, Job
from einlass.provisioning import htpasswd
from einlass.provisioning.models import MemberPushHash
from einlass.provisioning.transports.local import LocalFileTransport
from helpers import api, post_generic
from payloads import generic

# --- helpers ----------------------------------------------------------------------------------


async def add_target(http, shop, path: Path, *, name: str = "www", **config: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "htpasswd_file",
        "config": {"path": str(path), **config},
        "areas": ["premium"],
    }
    return await api(http, shop, "POST", "/provisioning_targets", json=body)  # type: ignore[no-any-return]


def entries(path: Path) -> dict[str, str]:
    return htpasswd.parse(path.read_bytes()).entries


def mailed_password(mail_dir: Path, to: str) -> str:
    """The password of the newest credentials email to ``to``."""
    found = []
    for mail in sorted(mail_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
        if message["To"] == to:
            body = message.get_body(preferencelist=("plain",))
            match = re.search(r"Passw(?:ord|ort): (\S+)", body.get_content()) if body else None
            if match:
                found.append(match.group(1))
    assert found, f"no credentials email to {to}"
    return found[-1]


async def pay(http, shop, payment_id: str, email_address: str, product: str = "prod-30") -> None:
    response = await post_generic(
        http,
        shop,
        generic.payment_confirmed(payment_id, amount=990, email=email_address, product_id=product),
    )
    assert response.status_code == 200, response.text


async def member_id(http, shop, email_address: str) -> str:
    listing = await api(http, shop, "GET", "/members", params={"email": email_address})
    return listing["data"][0]["id"]  # type: ignore[no-any-return]


def periodic(worker, name: str):
    [task] = [task for task in worker.periodic if task.name == name]
    return task


# --- the loop ---------------------------------------------------------------------------------


async def test_payment_puts_the_member_in_the_file_with_the_mailed_password(
    client, shop, worker, settings, tmp_path
):
    path = tmp_path / "site.htpasswd"
    target = await add_target(client, shop, path)
    assert target["hash_scheme"] == "sha512_crypt:5000" and target["status"] == "pending"

    await pay(client, shop, "pay-1", "erika@example.com")
    await worker.drain()

    password = mailed_password(settings.mail_dir, "erika@example.com")
    lines = entries(path)
    assert list(lines) == ["erika@example.com"]
    assert sha512_crypt.verify(password, lines["erika@example.com"])
    assert not sha512_crypt.verify(password + "x", lines["erika@example.com"])

    shown = await api(client, shop, "GET", f"/provisioning_targets/{target['id']}")
    assert shown["status"] == "ok" and shown["last_reconciled_at"] is not None
    assert shown["last_drift"]["missing"] == ["erika@example.com"]
    assert shown["consecutive_failures"] == 0


async def test_chargeback_lock_and_unlock(client, shop, worker, tmp_path):
    path = tmp_path / "site.htpasswd"
    await add_target(client, shop, path)
    await pay(client, shop, "pay-1", "a@example.com")
    await pay(client, shop, "pay-2", "b@example.com")
    await worker.drain()
    assert sorted(entries(path)) == ["a@example.com", "b@example.com"]

    await post_generic(client, shop, generic.payment_chargeback("pay-1", chargeback_id="cb-1", amount=990))
    await worker.drain()
    assert sorted(entries(path)) == ["b@example.com"]

    b = await member_id(client, shop, "b@example.com")
    await api(client, shop, "POST", f"/members/{b}/lock", json={"reason": "abuse"})
    await worker.drain()
    assert entries(path) == {}

    await api(client, shop, "POST", f"/members/{b}/unlock")
    await worker.drain()
    assert sorted(entries(path)) == ["b@example.com"]


async def test_a_line_added_by_hand_is_removed_and_reported(client, shop, worker, tmp_path):
    path = tmp_path / "site.htpasswd"
    target = await add_target(client, shop, path)
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()

    path.write_bytes(path.read_bytes() + b"intruder:$apr1$abc$def\n")
    # The next transaction of the merchant, whatever it is.
    a = await member_id(client, shop, "a@example.com")
    await api(client, shop, "POST", f"/members/{a}", json={"name": "Anna"})
    await worker.drain()

    assert sorted(entries(path)) == ["a@example.com"]
    audit = await api(client, shop, "GET", "/audit_entries", params={"limit": 100})
    drifts = [e for e in audit["data"] if e["action"] == "target.drift" and e["after"]["unexpected"]]
    assert len(drifts) == 1
    [entry] = drifts
    assert entry["entity"] == {"kind": "target", "id": target["id"]}
    assert entry["actor"]["kind"] == "job"
    assert entry["after"]["unexpected"] == ["intruder"]
    shown = await api(client, shop, "GET", f"/provisioning_targets/{target['id']}")
    assert shown["last_drift"]["unexpected"] == ["intruder"]


async def test_a_grant_that_ends_by_time_leaves_the_file_without_any_event(
    client, shop, worker, clock, tmp_path
):
    path = tmp_path / "site.htpasswd"
    await add_target(client, shop, path)
    await pay(client, shop, "pay-1", "a@example.com")  # 30 days
    await pay(client, shop, "pay-2", "b@example.com", product="prod-life")
    await worker.drain()
    assert sorted(entries(path)) == ["a@example.com", "b@example.com"]

    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    periodic(worker, "provisioning-grant-boundaries").last_run = float("-inf")
    await worker.drain()
    assert sorted(entries(path)) == ["a@example.com", "b@example.com"]

    clock.advance(timedelta(seconds=2))
    task = periodic(worker, "provisioning-grant-boundaries")
    task.last_run = float("-inf")
    await worker.drain()
    assert sorted(entries(path)) == ["b@example.com"]
    assert task.interval_s == 15


async def test_each_scheme_verifies_with_passlib(client, shop, worker, tmp_path):
    paths = {key: tmp_path / f"{key.replace(':', '-')}.htpasswd" for key in ("bcrypt", "sha512", "apr1")}
    await add_target(client, shop, paths["bcrypt"], name="b", hash_scheme="bcrypt", hash_cost=4)
    await add_target(client, shop, paths["sha512"], name="s", hash_scheme="sha512_crypt", hash_cost=1000)
    await add_target(client, shop, paths["apr1"], name="a", hash_scheme="apr1")
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()
    member = await member_id(client, shop, "a@example.com")
    await api(client, shop, "POST", f"/members/{member}/password", json={"password": "chosen-by-member-1"})
    await worker.drain()

    bcrypt_hash = entries(paths["bcrypt"])["a@example.com"]
    assert bcrypt_hash.startswith("$2y$04$") and bcrypt.verify("chosen-by-member-1", bcrypt_hash)
    sha_hash = entries(paths["sha512"])["a@example.com"]
    assert sha_hash.startswith("$6$rounds=1000$") and sha512_crypt.verify("chosen-by-member-1", sha_hash)
    apr_hash = entries(paths["apr1"])["a@example.com"]
    assert apr_hash.startswith("$apr1$") and apr_md5_crypt.verify("chosen-by-member-1", apr_hash)


async def test_no_write_when_in_sync(client, shop, worker, tmp_path):
    path = tmp_path / "site.htpasswd"
    target = await add_target(client, shop, path)
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()
    before = path.stat()

    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["status"] == "ok" and result["written"] is False and result["members"] == 1
    assert result["drift"] == {
        "unexpected": [],
        "missing": [],
        "changed": [],
        "without_hash": [],
        "problems": [],
    }
    everything = await api(client, shop, "POST", "/reconcile")
    assert [r["written"] for r in everything["data"]] == [False] and everything["failed"] == 0
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def count_writes(monkeypatch) -> list[int]:
    writes: list[int] = []
    original = LocalFileTransport.write_atomic

    async def counting(self, content: bytes) -> None:
        writes.append(len(content))
        await original(self, content)

    monkeypatch.setattr(LocalFileTransport, "write_atomic", counting)
    return writes


async def pending_sync_jobs(db) -> int:
    async with db.transaction() as session:
        rows = await session.scalars(
            select(Job.id).where(Job.kind == "provisioning.sync", Job.status == JOB_PENDING)
        )
        return len(list(rows))


async def test_a_burst_of_payments_makes_few_writes(client, shop, worker, db, tmp_path, monkeypatch):
    writes = count_writes(monkeypatch)
    path = tmp_path / "site.htpasswd"
    await add_target(client, shop, path, hash_scheme="apr1")
    payments = 50
    for number in range(payments):
        await pay(client, shop, f"pay-{number}", f"m{number}@example.com")
    assert await pending_sync_jobs(db) == 1  # the burst coalesced into one job

    worker.batch_size = 200
    await worker.drain()
    assert len(entries(path)) == payments
    # One write before the credentials jobs stored the members' hashes, one after.
    assert len(writes) <= 3, writes


async def test_a_thousand_payment_transactions_make_one_write(
    client, shop, worker, db, tmp_path, monkeypatch
):
    """1,000 transactions that change access, as 1,000 payments do, before the worker runs."""
    from sqlalchemy import insert

    from einlass import clock
    from einlass.billing.models import Area
    from einlass.members.models import Grant
    from einlass.members.service import access_changed
    from einlass.provisioning.hashing import hash_password

    writes = count_writes(monkeypatch)
    path = tmp_path / "site.htpasswd"
    await add_target(client, shop, path, hash_scheme="apr1")
    await worker.drain()
    assert writes == [len(htpasswd.HEADER)]
    count, now, pushed = 1000, clock.now(), hash_password("apr1:0", "generated-password")
    async with db.transaction() as session:
        area = await session.scalar(
            select(Area.id).where(Area.merchant_id == shop.merchant_id, Area.slug == "premium")
        )
        ids = [f"mem_burst{number:05d}" for number in range(count)]
        base = {"merchant_id": shop.merchant_id, "created_at": now}
        await session.execute(
            insert(Member),
            [
                {
                    **base,
                    "id": i,
                    "email": f"{i}@example.com",
                    "email_normalized": f"{i}@example.com",
                    "username": f"{i}@example.com",
                    "locale": "en",
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        await session.execute(
            insert(MemberPushHash),
            [{**base, "member_id": i, "scheme": "apr1:0", "hash": pushed} for i in ids],
        )
        await session.execute(
            insert(Grant),
            [
                {
                    **base,
                    "id": f"grt_{i}",
                    "member_id": i,
                    "area_id": area,
                    "source_kind": "payment",
                    "source_id": f"pay_{i}",
                    "starts_at": now,
                    "ends_at": now + timedelta(days=30),
                    "updated_at": now,
                }
                for i in ids
            ],
        )
    gate = asyncio.Semaphore(10)

    async def one_payment(member: str) -> None:
        async with gate, db.transaction() as session:
            await access_changed(session, shop.merchant_id, member, "payment")

    await asyncio.gather(*(one_payment(member) for member in ids))
    assert await pending_sync_jobs(db) == 1

    await worker.drain()
    assert len(writes) == 2  # the empty file when the target was added, then this one
    assert len(entries(path)) == count


# --- hashes for new schemes -------------------------------------------------------------------


async def test_a_new_target_lists_members_without_hash_until_credentials_are_reissued(
    client, shop, worker, settings, tmp_path, db
):
    await pay(client, shop, "pay-1", "early@example.com")  # before any target: no push hash
    await worker.drain()
    path = tmp_path / "site.htpasswd"
    target = await add_target(client, shop, path)
    await worker.drain()
    assert entries(path) == {}
    shown = await api(client, shop, "GET", f"/provisioning_targets/{target['id']}")
    assert shown["status"] == "ok"
    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["drift"]["without_hash"] == ["early@example.com"] and result["members"] == 0

    reissued = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reissue_credentials")
    assert reissued["members_queued"] == 1
    await worker.drain()
    password = mailed_password(settings.mail_dir, "early@example.com")
    assert sha512_crypt.verify(password, entries(path)["early@example.com"])
    again = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reissue_credentials")
    assert again["members_queued"] == 0  # everybody has a hash now


async def test_push_hashes_are_replaced_when_the_password_changes(client, shop, worker, tmp_path, db):
    await add_target(client, shop, tmp_path / "a.htpasswd", name="a", hash_scheme="apr1")
    await add_target(client, shop, tmp_path / "b.htpasswd", name="b", hash_scheme="apr1")  # same scheme
    created = await api(
        client,
        shop,
        "POST",
        "/members",
        json={"email": "c@example.com", "password": "first-password-1", "send_credentials": False},
    )
    async with db.transaction() as session:
        rows = list(
            await session.scalars(select(MemberPushHash).where(MemberPushHash.member_id == created["id"]))
        )
    assert [row.scheme for row in rows] == ["apr1:0"]
    assert apr_md5_crypt.verify("first-password-1", rows[0].hash)

    await api(
        client, shop, "POST", f"/members/{created['id']}/password", json={"password": "second-password-2"}
    )
    async with db.transaction() as session:
        rows = list(
            await session.scalars(select(MemberPushHash).where(MemberPushHash.member_id == created["id"]))
        )
        member = await session.get(Member, created["id"])
    assert len(rows) == 1 and apr_md5_crypt.verify("second-password-2", rows[0].hash)
    assert member is not None and member.password_hash and member.password_hash.startswith("$argon2id$")


# --- failures ---------------------------------------------------------------------------------


async def test_an_unreachable_target_retries_and_does_not_stop_the_others(
    client, shop, worker, clock, tmp_path
):
    good = tmp_path / "good.htpasswd"
    missing_dir = tmp_path / "not-yet"
    await add_target(client, shop, good, name="good")
    bad = await add_target(client, shop, missing_dir / "site.htpasswd", name="bad")
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()
    assert list(entries(good)) == ["a@example.com"]

    shown = await api(client, shop, "GET", f"/provisioning_targets/{bad['id']}")
    assert shown["status"] == "unreachable" and "does not exist" in shown["last_error"]
    assert shown["consecutive_failures"] >= 1
    async with worker.context.db.transaction() as session:
        job = await session.scalar(
            select(Job).where(Job.kind == "provisioning.sync", Job.status == JOB_PENDING)
        )
    assert job is not None and "bad" in job.last_error and job.run_after > clock.now()

    missing_dir.mkdir()
    clock.advance(timedelta(hours=1))
    await worker.drain()
    assert list(entries(missing_dir / "site.htpasswd")) == ["a@example.com"]
    shown = await api(client, shop, "GET", f"/provisioning_targets/{bad['id']}")
    assert shown["status"] == "ok" and shown["consecutive_failures"] == 0 and shown["last_error"] is None


WEBHOOK = {
    "name": "app",
    "kind": "webhook",
    "config": {"url": "https://shop.example/hooks"},
    "secrets": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    "areas": ["premium"],
}


async def test_webhook_targets_without_their_module_are_skipped_with_a_clear_status(
    client, shop, worker, monkeypatch
):
    from einlass.provisioning import reconciler

    monkeypatch.setattr(reconciler, "_webhook_hook", lambda: None)  # as before webhooks.py existed
    target = await api(client, shop, "POST", "/provisioning_targets", json=WEBHOOK)
    assert target["secrets"] == ["signing_secret"] and "whsec" not in str(target)
    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["status"] == "not_built" and "not built yet" in result["error"]
    await worker.drain()  # not a failure: nothing retries
    shown = await api(client, shop, "GET", f"/provisioning_targets/{target['id']}")
    assert shown["status"] == "not_built"


async def test_the_reconciler_hands_webhook_targets_to_their_hook(client, shop, worker, monkeypatch):
    from einlass.provisioning import reconciler
    from einlass.provisioning.base import Drift

    calls = []

    async def hook(db, settings, target, secrets, desired):
        calls.append((target.name, secrets, [m.email for m in desired]))
        return Drift(missing=[m.username for m in desired])

    monkeypatch.setattr(reconciler, "_webhook_hook", lambda: hook)
    await pay(client, shop, "pay-1", "a@example.com")
    target = await api(client, shop, "POST", "/provisioning_targets", json=WEBHOOK)
    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["status"] == "ok" and result["drift"]["missing"] == ["a@example.com"]
    assert calls == [("app", WEBHOOK["secrets"], ["a@example.com"])]


# --- the API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"kind": "nfs"}, "kind", "kind must be one of"),
        ({"config": {"path": "relative/site.htpasswd"}}, "config.path", "must be an absolute path"),
        ({"config": {}}, "config.path", "config.path is required"),
        ({"config": {"path": "/etc/nginx/"}}, "config.path", "must name a file"),
        ({"config": {"path": "/x", "hash_scheme": "md5"}}, "config.hash_scheme", "must be one of"),
        (
            {"config": {"path": "/x", "hash_scheme": "bcrypt", "hash_cost": 14}},
            "config.hash_cost",
            "between 4 and 12",
        ),
        (
            {"config": {"path": "/x", "hash_scheme": "apr1", "hash_cost": 3}},
            "config.hash_cost",
            "no cost setting",
        ),
        ({"config": {"path": "/x", "colour": "red"}}, "config.colour", "not a setting of htpasswd_file"),
        ({"config": {"path": "/x"}, "secrets": {"password": "p"}}, "secrets.password", "not a secret"),
        ({"config": {"path": "/x"}, "areas": []}, "areas", "at least one area"),
        ({"config": {"path": "/x"}, "areas": ["nope"]}, "areas", "no area 'nope'"),
        ({"name": "  "}, "name", "1 to 64 characters"),
        (
            {"kind": "ftp", "config": {"username": "u", "remote_path": "x"}},
            "config.host",
            "config.host is required",
        ),
        (
            {"kind": "ftp", "config": {"host": "ftp://h", "username": "u", "remote_path": "x"}},
            "config.host",
            "host name or IP address",
        ),
        (
            {"kind": "ftps", "config": {"host": "h", "port": 70000, "username": "u", "remote_path": "x"}},
            "config.port",
            "between 1 and 65535",
        ),
        (
            {"kind": "ftp", "config": {"host": "h", "username": "u", "remote_path": "x"}},
            "secrets.password",
            "need",
        ),
        (
            {"kind": "sftp", "config": {"host": "h", "username": "u"}, "secrets": {"password": "p"}},
            "config.remote_path",
            "required",
        ),
        (
            {"kind": "sftp", "config": {"host": "h", "username": "u", "remote_path": "x"}},
            "secrets",
            "private_key",
        ),
        (
            {
                "kind": "sftp",
                "config": {"host": "h", "username": "u", "remote_path": "x"},
                "secrets": {"private_key": "k"},
            },
            "config.known_host_key",
            "ssh-keyscan",
        ),
        (
            {
                "kind": "ftps",
                "config": {"host": "h", "username": "u", "remote_path": "x", "verify_tls": "no"},
                "secrets": {"password": "p"},
            },
            "config.verify_tls",
            "true or false",
        ),
        ({"kind": "webhook", "config": {"url": "ftp://x"}}, "config.url", "http:// or https://"),
        ({"kind": "webhook", "config": {"url": "https://x"}}, "secrets.signing_secret", "need"),
        (
            {"kind": "webhook", "config": {"url": "https://x"}, "secrets": {"signing_secret": "whsec_!!"}},
            "secrets.signing_secret",
            "base64",
        ),
        (
            {
                "kind": "webhook",
                "config": {"url": "https://x", "timeout": 0},
                "secrets": {"signing_secret": "whsec_AAAA"},
            },
            "config.timeout",
            "between 1 and 300",
        ),
    ],
)
async def test_invalid_targets_get_precise_400s(client, shop, body, param, message):
    document = {
        "name": "t",
        "kind": "htpasswd_file",
        "config": {"path": "/srv/x.htpasswd"},
        "areas": ["premium"],
    }
    document.update(body)
    response = await client.post("/api/v1/provisioning_targets", headers=shop.auth, json=document)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"], error


async def test_crud_secrets_never_shown_and_tenants_separated(client, shop, db, tmp_path):
    from conftest import make_shop

    created = await api(
        client,
        shop,
        "POST",
        "/provisioning_targets",
        json={
            "name": "remote",
            "kind": "sftp",
            "config": {
                "host": "files.example",
                "username": "deploy",
                "remote_path": "/srv/site.htpasswd",
                "known_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLACEHOLDERKEYPLACEHOLDERKEYPLACEHOLD",
            },
            "secrets": {"password": "hunter2-secret"},
            "areas": ["premium", "archive"],
        },
    )
    assert created["secrets"] == ["password"] and "hunter2" not in str(created)
    assert created["config"]["port"] == 22 and created["areas"] == ["archive", "premium"]
    duplicate = await client.post(
        "/api/v1/provisioning_targets",
        headers=shop.auth,
        json={"name": "remote", "kind": "htpasswd_file", "config": {"path": "/x"}, "areas": ["premium"]},
    )
    assert duplicate.status_code == 409

    updated = await api(
        client,
        shop,
        "POST",
        f"/provisioning_targets/{created['id']}",
        json={"config": {"port": 2222, "hash_scheme": "apr1"}, "areas": ["premium"], "enabled": False},
    )
    assert updated["config"]["port"] == 2222 and updated["hash_scheme"] == "apr1:0"
    assert updated["config"]["host"] == "files.example" and updated["enabled"] is False
    assert updated["areas"] == ["premium"] and updated["secrets"] == ["password"]
    listing = await api(client, shop, "GET", "/provisioning_targets")
    assert [t["id"] for t in listing["data"]] == [created["id"]]
    audit = await api(client, shop, "GET", "/audit_entries")
    assert "hunter2" not in str(audit)

    other = await make_shop(db, "other")
    for method, path in [
        ("GET", f"/provisioning_targets/{created['id']}"),
        ("POST", f"/provisioning_targets/{created['id']}/reconcile"),
        ("DELETE", f"/provisioning_targets/{created['id']}"),
    ]:
        response = await client.request(method, f"/api/v1{path}", headers=other.auth)
        assert response.status_code == 404, (method, path)
    assert (await api(client, other, "GET", "/provisioning_targets"))["data"] == []

    deleted = await api(client, shop, "DELETE", f"/provisioning_targets/{created['id']}")
    assert deleted["deleted"] is True
    missing = await client.get(f"/api/v1/provisioning_targets/{created['id']}", headers=shop.auth)
    assert missing.status_code == 404


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_target_add_list_and_reconcile(db, settings, shop, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from einlass import cli

    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    # In-process, structlog must keep logging where the tests log, not to the runner's streams.
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    runner = CliRunner()
    path = tmp_path / "cli.htpasswd"
    added = runner.invoke(
        cli.app,
        ["target", "add", "shop", "www", "--path", str(path), "--area", "premium", "--scheme", "apr1"],
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["hash_scheme"] == "apr1:0"
    listed = runner.invoke(cli.app, ["target", "list", "shop"])
    assert [t["name"] for t in json.loads(listed.stdout)] == ["www"]

    reconciled = runner.invoke(cli.app, ["reconcile", "shop"])
    assert reconciled.exit_code == 0, reconciled.output
    assert "shop/www (htpasswd_file): ok, 0 members, written" in reconciled.stdout
    assert path.exists()

    bad = runner.invoke(
        cli.app,
        ["target", "add", "shop", "bad", "--path", str(tmp_path / "nope" / "x"), "--area", "premium"],
    )
    assert bad.exit_code == 0
    failed = runner.invoke(cli.app, ["reconcile"])
    assert failed.exit_code == 1
    assert "shop/bad (htpasswd_file): unreachable" in failed.stdout
