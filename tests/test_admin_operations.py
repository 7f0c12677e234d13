"""Admin UI: audit log, API keys, failed jobs and staff accounts of a merchant."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from admin_support import AdminClient, Staff, login, make_staff
from conftest import Shop, make_shop
from einlass.admin import operations
from einlass.app import create_app
from einlass.audit.models import AuditEntry
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.outbox.models import JOB_FAILED, JOB_PENDING, Job
from einlass.outbox.service import enqueue
from einlass.outbox.worker import Worker
from einlass.tenants.models import ApiKey, StaffAccount

API = "/api/v1"


async def admin_of(client: httpx.AsyncClient, db: Database, shop: Shop, role: str = "admin") -> AdminClient:
    return await login(client, await make_staff(db, role=role, merchant_id=shop.merchant_id))


@pytest.fixture
async def fresh_client(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser: the same app and database, its own cookie jar."""
    app = create_app(settings, db, run_worker=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://einlass.test"
    ) as http:
        yield http


def row_with(page: str, text: str) -> str:
    """The table row of the page that contains ``text``."""
    rows = [row for row in page.split("<tr>")[1:] if text in row]
    assert rows, f"no row with {text!r}"
    return rows[0].split("</tr>", 1)[0]


def shown(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert found, f"no #{element_id} on the page"
    return html.unescape(found.group(1))


async def count(db: Database, model: type[ApiKey] | type[StaffAccount] | type[AuditEntry]) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --------------------------------------------------------------------------- audit log


def test_changes_are_only_the_changed_keys() -> None:
    before = {"email": "a@example.com", "name": "Old", "settings": {"locale": "en", "x": 1}}
    after = {"email": "a@example.com", "name": "New", "settings": {"locale": "de", "x": 1}, "note": None}
    assert operations.changes(before, after) == [("name", "Old", "New"), ("settings.locale", "en", "de")]
    assert operations.changes(None, {"reason": "fraud"}) == [("reason", "\u2013", "fraud")]


async def test_audit_log_shows_who_did_what_to_whom_for_this_merchant_only(
    client: httpx.AsyncClient, db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await make_shop(db, "other")
    admin = await admin_of(client, db, shop)
    member = (
        await client.post(
            f"{API}/members", headers=shop.auth, json={"email": "m@example.com", "name": "Old Name"}
        )
    ).json()
    await client.post(f"{API}/members/{member['id']}", headers=shop.auth, json={"name": "New Name"})
    foreign = (
        await client.post(f"{API}/members", headers=other.auth, json={"email": "x@example.com"})
    ).json()
    await admin.post(f"/admin/m/{shop.slug}/api-keys", {"name": "backend"})

    page = (await admin.get(f"/admin/m/{shop.slug}/audit")).text
    assert foreign["id"] not in page and other.merchant_id not in page
    updated = row_with(page, "member.updated")
    assert f'href="/admin/m/{shop.slug}/members/{member["id"]}"' in updated
    assert "<details>" in updated and "Old Name" in updated and "New Name" in updated
    assert "m@example.com" not in updated  # unchanged keys are left out
    assert 'API key: <span class="actor">default (ek_' in updated  # the key that made the change, by name
    created = row_with(page, "api_key.created")
    assert "admin-shop@example.com" in created and "backend" in created
    assert '<th scope="col">' in page and 'class="table-wrap"' in page

    only_keys = (await admin.get(f"/admin/m/{shop.slug}/audit", params={"action": "api_key"})).text
    assert "api_key.created" in only_keys and "member.updated" not in only_keys
    by_staff = (await admin.get(f"/admin/m/{shop.slug}/audit", params={"actor": "admin"})).text
    assert "api_key.created" in by_staff and "member.created" not in by_staff
    of_member = (await admin.get(f"/admin/m/{shop.slug}/audit", params={"member": member["id"]})).text
    assert "member.updated" in of_member and "api_key.created" not in of_member
    assert "merchant.created" not in of_member
    nobody = (await admin.get(f"/admin/m/{shop.slug}/audit", params={"member": foreign["id"]})).text
    assert "No entries." in nobody and "x@example.com" not in nobody

    # Keyset pagination: the next page starts after the last entry shown.
    monkeypatch.setattr(operations, "PAGE_SIZE", 3)
    async with db.transaction() as session:
        ids = list(
            await session.scalars(
                select(AuditEntry.id)
                .where(AuditEntry.merchant_id == shop.merchant_id)
                .order_by(AuditEntry.id.desc())
            )
        )
    assert len(ids) > 6
    first = (await admin.get(f"/admin/m/{shop.slug}/audit")).text
    assert first.count("<tr>") == 1 + 3 and "First page" not in first
    assert f"after={ids[2]}" in next_link(first)
    second = (await admin.get(next_link(first))).text
    assert second.count("<tr>") == 1 + 3 and "First page" in second
    assert f"after={ids[5]}" in next_link(second)


def next_link(page: str) -> str:
    found = re.search(r'href="([^"]+)" rel="next"', page)
    assert found is not None, "no next page link"
    return html.unescape(found.group(1))


# --------------------------------------------------------------------------- API keys


async def test_a_new_api_key_is_shown_once_and_works_until_revoked(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    admin = await admin_of(client, db, shop)
    answer = await admin.post(f"/admin/m/{shop.slug}/api-keys", {"name": "shop backend"})
    assert answer.status_code == 200 and "location" not in answer.headers
    assert "will not be shown again" in answer.text
    found = re.search(r'id="new-key-secret"[^>]*value="([^"]+)"', answer.text)
    assert found is not None
    secret = html.unescape(found.group(1))
    assert secret.startswith("ek_")
    assert secret not in answer.headers.get("set-cookie", "")
    auth = {"authorization": f"Bearer {secret}"}
    assert (await client.get(f"{API}/merchant", headers=auth)).json()["slug"] == shop.slug

    listing = (await admin.get(f"/admin/m/{shop.slug}/api-keys")).text
    assert secret not in listing and "shop backend" in listing and secret[:10] in listing
    assert f'href="/admin/m/{shop.slug}/staff"' in listing
    async with db.transaction() as session:
        key = await session.scalar(select(ApiKey).where(ApiKey.name == "shop backend"))
    assert key is not None
    revoked = await admin.post(f"/admin/m/{shop.slug}/api-keys/{key.id}/revoke")
    assert revoked.status_code == 303
    assert (await client.get(f"{API}/merchant", headers=auth)).status_code == 401
    after = await admin.get(f"/admin/m/{shop.slug}/api-keys")
    assert "The API key was revoked." in after.text
    assert "revoked" in row_with(after.text, "shop backend")
    audit = (await admin.get(f"/admin/m/{shop.slug}/audit", params={"action": "api_key"})).text
    assert "api_key.revoked" in audit and "api_key.created" in audit


async def test_forms_refuse_foreign_ids_csrf_less_posts_and_bad_input(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    async with db.transaction() as session:
        foreign = await session.scalar(select(ApiKey).where(ApiKey.merchant_id == other.merchant_id))
    assert foreign is not None
    admin = await admin_of(client, db, shop)
    listing = (await admin.get(f"/admin/m/{shop.slug}/api-keys")).text
    assert other.api_key[:10] not in listing and shop.api_key[:10] in listing
    keys, accounts = await count(db, ApiKey), await count(db, StaffAccount)

    assert (await admin.post(f"/admin/m/{shop.slug}/api-keys/{foreign.id}/revoke")).status_code == 404
    assert (await admin.post(f"/admin/m/{other.slug}/api-keys", {"name": "x"})).status_code == 404
    assert (await client.get(f"{API}/merchant", headers=other.auth)).status_code == 200

    refused = await admin.post(f"/admin/m/{shop.slug}/api-keys", {"name": "x"}, csrf=False)
    assert refused.status_code == 403 and "ek_" not in refused.text
    staff_form = {"email": "a@b.example", "role": "admin"}
    assert (await admin.post(f"/admin/m/{shop.slug}/staff", staff_form, csrf=False)).status_code == 403

    operator = await admin.post(f"/admin/m/{shop.slug}/staff", {"email": "o@example.com", "role": "operator"})
    assert "the role must be admin or viewer" in (await admin.get(operator.headers["location"])).text
    taken = await admin.post(f"/admin/m/{shop.slug}/staff", {"email": admin.staff.email, "role": "viewer"})
    assert "exists already" in (await admin.get(taken.headers["location"])).text
    long_name = await admin.post(f"/admin/m/{shop.slug}/api-keys", {"name": "x" * 201})
    assert "at most 200 characters" in (await admin.get(long_name.headers["location"])).text
    assert await count(db, ApiKey) == keys and await count(db, StaffAccount) == accounts


# --------------------------------------------------------------------------- jobs


async def failed_job(db: Database, worker: Worker, merchant_id: str, kind: str) -> str:
    """A job whose kind has no handler and one attempt: the worker gives up on it."""
    async with db.transaction() as session:
        await enqueue(session, kind, {"n": 1}, merchant_id=merchant_id, max_attempts=1)
        job_id = await session.scalar(select(Job.id).where(Job.kind == kind))
    await worker.drain()
    assert job_id is not None
    return job_id


async def test_failed_jobs_come_first_with_their_error_and_can_be_retried(
    client: httpx.AsyncClient, db: Database, shop: Shop, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await make_shop(db, "other")
    job_id = await failed_job(db, worker, shop.merchant_id, "test.no_handler")
    await failed_job(db, worker, shop.merchant_id, "test.second")
    foreign_id = await failed_job(db, worker, other.merchant_id, "test.foreign")
    async with db.transaction() as session:
        await enqueue(session, "test.waiting", {}, merchant_id=shop.merchant_id)
    admin = await admin_of(client, db, shop)

    page = (await admin.get(f"/admin/m/{shop.slug}/jobs")).text
    assert foreign_id not in page and "test.foreign" not in page
    row = row_with(page, job_id)
    assert "failed" in row and "no handler for job kind" in row and "1 of 1" in row
    assert page.index("test.no_handler") < page.index("test.waiting")
    waiting = (await admin.get(f"/admin/m/{shop.slug}/jobs", params={"status": "pending"})).text
    assert "test.waiting" in waiting and "test.no_handler" not in waiting

    # One job a page: the failed ones newest first, then the others.
    monkeypatch.setattr(operations, "PAGE_SIZE", 1)
    kinds, href = [], f"/admin/m/{shop.slug}/jobs"
    while href and len(kinds) < 10:
        one = (await admin.get(href)).text
        kinds += re.findall(r"<td><code>([^<]+)</code>", one)
        href = next_link(one) if 'rel="next"' in one else ""
    assert kinds[:3] == ["test.second", "test.no_handler", "test.waiting"]
    monkeypatch.setattr(operations, "PAGE_SIZE", 50)

    assert (await admin.post(f"/admin/m/{shop.slug}/jobs/{foreign_id}/retry")).status_code == 404
    retried = await admin.post(f"/admin/m/{shop.slug}/jobs/{job_id}/retry")
    assert retried.status_code == 303
    async with db.transaction() as session:
        job = await session.get_one(Job, job_id)
        foreign = await session.get_one(Job, foreign_id)
    assert job.status == JOB_PENDING and job.attempts == 0 and foreign.status == JOB_FAILED
    async with db.transaction() as session:
        audited = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "job.retried", AuditEntry.entity_id == job_id)
        )
    assert audited is not None and (audited.actor_kind, audited.actor_id) == ("admin", admin.staff.id)
    after = (await admin.get(retried.headers["location"])).text
    assert f"The job {job_id} will run again shortly." in after
    assert "waiting" in row_with(after, job_id) and "will be retried" in row_with(after, job_id)
    again = await admin.post(f"/admin/m/{shop.slug}/jobs/{job_id}/retry")
    assert "only a failed job can be retried" in (await admin.get(again.headers["location"])).text


# --------------------------------------------------------------------------- staff


async def test_staff_created_on_the_page_can_log_in_and_be_disabled(
    client: httpx.AsyncClient, fresh_client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    await make_staff(db, role="operator")
    foreign = await make_staff(db, role="admin", merchant_id=other.merchant_id)
    admin = await admin_of(client, db, shop)
    listing = (await admin.get(f"/admin/m/{shop.slug}/staff")).text
    assert "admin-shop@example.com" in listing
    assert foreign.email not in listing and "operator-op@example.com" not in listing

    answer = await admin.post(
        f"/admin/m/{shop.slug}/staff",
        {"email": "New.Viewer@Example.com", "name": "Nora", "role": "viewer", "locale": "de"},
    )
    assert answer.status_code == 200 and "will not be shown again" in answer.text
    email, password = shown(answer.text, "new-staff-email"), shown(answer.text, "new-staff-password")
    secret, uri = shown(answer.text, "new-staff-totp"), shown(answer.text, "new-staff-uri")
    assert email == "new.viewer@example.com" and uri.startswith("otpauth://totp/") and secret in uri
    assert password not in answer.headers.get("set-cookie", "")
    listing = (await admin.get(f"/admin/m/{shop.slug}/staff")).text
    assert email in listing and password not in listing and secret not in listing

    async with db.transaction() as session:
        account = await session.scalar(select(StaffAccount).where(StaffAccount.email == email))
    assert account is not None and account.merchant_id == shop.merchant_id and account.locale == "de"
    viewer = await login(fresh_client, Staff(account.id, email, password, secret, "viewer"))
    assert viewer.last is not None and viewer.last.status_code == 200
    assert (await viewer.get(f"/admin/m/{shop.slug}/staff")).status_code == 200

    # Disabling: not another merchant's account, not oneself; the disabled account is logged out.
    assert (await admin.post(f"/admin/m/{shop.slug}/staff/{foreign.id}/disable")).status_code == 404
    own = await admin.post(f"/admin/m/{shop.slug}/staff/{admin.staff.id}/disable")
    assert "cannot disable your own account" in (await admin.get(own.headers["location"])).text
    done = await admin.post(f"/admin/m/{shop.slug}/staff/{account.id}/disable")
    assert done.status_code == 303
    assert f"The account {email} was disabled" in (await admin.get(done.headers["location"])).text
    assert (await fresh_client.get(f"/admin/m/{shop.slug}/staff")).status_code == 303
    audit = (await admin.get(f"/admin/m/{shop.slug}/audit", params={"action": "staff."})).text
    assert "staff.created" in audit and "staff.disabled" in audit


async def test_a_viewer_reads_every_page_but_changes_nothing(
    client: httpx.AsyncClient, db: Database, shop: Shop, worker: Worker
) -> None:
    job_id = await failed_job(db, worker, shop.merchant_id, "test.no_handler")
    colleague = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    viewer = await admin_of(client, db, shop, role="viewer")
    for path in ("audit", "api-keys", "jobs", "staff"):
        german = await viewer.get(f"/admin/m/{shop.slug}/{path}", params={"lang": "de"})
        assert german.status_code == 200 and '<html lang="de">' in german.text
    keys_page = (await viewer.get(f"/admin/m/{shop.slug}/api-keys", params={"lang": "en"})).text
    assert shop.api_key[:10] in keys_page and "Create key" not in keys_page
    assert "disabled>Revoke</button>" in keys_page
    jobs_page = (await viewer.get(f"/admin/m/{shop.slug}/jobs")).text
    assert "disabled>Retry</button>" in row_with(jobs_page, job_id)
    staff_page = (await viewer.get(f"/admin/m/{shop.slug}/staff")).text
    assert colleague.email in staff_page and "Create account" not in staff_page

    keys, accounts, entries = (
        await count(db, ApiKey),
        await count(db, StaffAccount),
        await count(db, AuditEntry),
    )
    async with db.transaction() as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.merchant_id == shop.merchant_id))
    for path, form in (
        ("api-keys", {"name": "x"}),
        (f"api-keys/{key_id}/revoke", {}),
        (f"jobs/{job_id}/retry", {}),
        ("staff", {"email": "z@example.com", "role": "admin"}),
        (f"staff/{colleague.id}/disable", {}),
    ):
        refused = await viewer.post(f"/admin/m/{shop.slug}/{path}", form)
        assert refused.status_code == 403 and "Your role may only read" in refused.text, path
    assert (keys, accounts, entries) == (
        await count(db, ApiKey),
        await count(db, StaffAccount),
        await count(db, AuditEntry),
    )
    async with db.transaction() as session:
        assert (await session.get_one(Job, job_id)).status == JOB_FAILED
        assert (await session.get_one(StaffAccount, colleague.id)).disabled_at is None
    assert (await client.get(f"{API}/merchant", headers=shop.auth)).status_code == 200
