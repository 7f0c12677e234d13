"""Admin UI: provisioning targets, their status and drift, "reconcile now", and the htmx status poll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from admin_support import AdminClient, login, make_staff
from conftest import Shop, make_shop
from einlass.audit.models import AuditEntry
from einlass.db.engine import Database
from einlass.outbox.models import JOB_PENDING, Job
from einlass.outbox.worker import Worker
from einlass.provisioning import htpasswd
from helpers import api, post_generic
from payloads import generic

HX = {"hx-request": "true"}


async def _admin(client: httpx.AsyncClient, db: Database, shop: Shop, role: str = "admin") -> AdminClient:
    return await login(client, await make_staff(db, role=role, merchant_id=shop.merchant_id))


async def add_target(client: httpx.AsyncClient, shop: Shop, path: Path, name: str = "www") -> dict[str, Any]:
    body = {"name": name, "kind": "htpasswd_file", "config": {"path": str(path)}, "areas": ["premium"]}
    return await api(client, shop, "POST", "/provisioning_targets", json=body)  # type: ignore[no-any-return]


async def test_reconcile_now_shows_the_time_and_the_drift(
    client: httpx.AsyncClient, db: Database, shop: Shop, worker: Worker, tmp_path: Path
) -> None:
    path = tmp_path / "site.htpasswd"
    target = await add_target(client, shop, path)
    admin = await _admin(client, db, shop)

    listing = await admin.get(f"/admin/m/{shop.slug}/targets")
    assert listing.status_code == 200
    assert "www" in listing.text and "htpasswd file" in listing.text and "premium" in listing.text
    assert "waiting for the first reconcile" in listing.text and 'hx-trigger="every 2s"' in listing.text
    detail = await admin.get(f"/admin/m/{shop.slug}/targets/{target['id']}")
    assert "A reconcile is queued" in detail.text and 'hx-trigger="every 2s"' in detail.text
    assert str(path) in detail.text and "sha512_crypt:5000" in detail.text

    # a member pays, the worker reconciles; then someone adds a user by hand
    paid = await post_generic(
        client,
        shop,
        generic.payment_confirmed("pay-1", amount=990, email="erika@example.com", product_id="prod-30"),
    )
    assert paid.status_code == 200
    await worker.drain()
    assert list(htpasswd.parse(path.read_bytes()).entries) == ["erika@example.com"]
    path.write_bytes(path.read_bytes() + b"mallory:$6$salt$hash\n")

    status = await admin.get(f"/admin/m/{shop.slug}/targets/{target['id']}/status", headers=HX)
    assert status.status_code == 200 and "<html" not in status.text
    assert 'id="target-status"' in status.text and "hx-trigger" not in status.text
    assert "in sync" in status.text and "1 added, 0 removed, 0 updated" in status.text

    await admin.get(f"/admin/m/{shop.slug}/targets/{target['id']}")
    answer = await admin.post(f"/admin/m/{shop.slug}/targets/{target['id']}/reconcile")
    assert answer.status_code == 303
    page = await admin.get(answer.headers["location"])
    assert "www reconciled: 1 members listed; 0 added, 1 removed, 0 updated." in page.text
    assert "0 added, 1 removed, 0 updated" in page.text and "<code>mallory</code>" in page.text
    assert "02/03/2026, 09:00" in page.text.split('id="target-last-reconciled">', 1)[1][:40]
    assert "reconciled, drift found" in page.text
    assert "mallory" not in htpasswd.parse(path.read_bytes()).entries

    async with db.transaction() as session:
        drift = await session.scalars(
            select(AuditEntry).where(
                AuditEntry.merchant_id == shop.merchant_id,
                AuditEntry.action == "target.drift",
                AuditEntry.actor_kind == "admin",
            )
        )
        [entry] = list(drift)
    assert entry.actor_id == admin.staff.id and entry.after is not None
    assert entry.after["unexpected"] == ["mallory"]

    listing = await admin.get(f"/admin/m/{shop.slug}/targets")
    assert "0 added, 1 removed, 0 updated" in listing.text and "hx-trigger" not in listing.text


async def test_the_status_polls_while_a_reconcile_is_queued_and_stops_after(
    client: httpx.AsyncClient, db: Database, shop: Shop, worker: Worker, tmp_path: Path
) -> None:
    target = await add_target(client, shop, tmp_path / "site.htpasswd")
    admin = await _admin(client, db, shop)
    status_url = f"/admin/m/{shop.slug}/targets/{target['id']}/status"
    polled = await admin.get(status_url, headers=HX)
    assert f'hx-get="{status_url}"' in polled.text and 'hx-trigger="every 2s"' in polled.text
    without_js = await admin.get(status_url)
    assert without_js.status_code == 303 and without_js.headers["location"].endswith(target["id"])

    await worker.drain()
    done = await admin.get(status_url, headers=HX)
    assert "in sync" in done.text and "hx-trigger" not in done.text


async def test_reconcile_all_and_a_failing_target_is_retried(
    client: httpx.AsyncClient, db: Database, shop: Shop, worker: Worker, tmp_path: Path
) -> None:
    await add_target(client, shop, tmp_path / "site.htpasswd")
    broken = await add_target(client, shop, tmp_path / "missing-dir" / "x.htpasswd", name="broken")
    await worker.drain()
    admin = await _admin(client, db, shop)
    await admin.get(f"/admin/m/{shop.slug}/targets")
    answer = await admin.post(f"/admin/m/{shop.slug}/targets/reconcile")
    page = await admin.get(answer.headers["location"])
    assert "Targets reconciled: 2, of which failed: 1." in page.text
    assert "unreachable" in page.text and "does not exist" in page.text

    answer = await admin.post(f"/admin/m/{shop.slug}/targets/{broken['id']}/reconcile")
    page = await admin.get(answer.headers["location"])
    assert "Reconciling broken failed (unreachable)" in page.text
    async with db.transaction() as session:
        waiting = await session.scalar(
            select(Job).where(Job.merchant_id == shop.merchant_id, Job.status == JOB_PENDING)
        )
    assert waiting is not None and waiting.kind == "provisioning.sync"


async def test_creating_an_htpasswd_target_in_the_ui(
    client: httpx.AsyncClient, db: Database, shop: Shop, tmp_path: Path
) -> None:
    admin = await _admin(client, db, shop)
    await admin.get(f"/admin/m/{shop.slug}/targets")
    bad = await admin.post(
        f"/admin/m/{shop.slug}/targets", {"name": "www", "path": "relative.htpasswd", "areas": "premium"}
    )
    assert bad.status_code == 400 and "config.path must be an absolute path" in bad.text
    assert 'value="relative.htpasswd"' in bad.text
    form = {
        "name": "www",
        "path": str(tmp_path / "a.htpasswd"),
        "areas": "premium, archive",
        "hash_scheme": "bcrypt",
    }
    answer = await admin.post(f"/admin/m/{shop.slug}/targets", form)
    assert answer.status_code == 303
    page = await admin.get(answer.headers["location"])
    assert "Target www created; its first reconcile is queued." in page.text
    assert "bcrypt:5" in page.text and "archive" in page.text and "created" in page.text
    [shown] = (await api(client, shop, "GET", "/provisioning_targets"))["data"]
    assert shown["areas"] == ["archive", "premium"] and shown["hash_scheme"] == "bcrypt:5"
    async with db.transaction() as session:
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.merchant_id == shop.merchant_id, AuditEntry.action == "target.created"
            )
        )
    assert entry is not None and entry.actor_kind == "admin" and entry.actor_id == admin.staff.id


async def test_a_viewer_sees_targets_but_cannot_reconcile(
    client: httpx.AsyncClient, db: Database, shop: Shop, tmp_path: Path
) -> None:
    target = await add_target(client, shop, tmp_path / "site.htpasswd")
    viewer = await _admin(client, db, shop, role="viewer")
    page = await viewer.get(f"/admin/m/{shop.slug}/targets/{target['id']}")
    assert page.status_code == 200 and "Reconcile now" not in page.text
    listing = await viewer.get(f"/admin/m/{shop.slug}/targets")
    assert "www" in listing.text and "New htpasswd file target" not in listing.text
    refused = await viewer.post(f"/admin/m/{shop.slug}/targets/{target['id']}/reconcile")
    assert refused.status_code == 403
    assert (await viewer.post(f"/admin/m/{shop.slug}/targets/reconcile")).status_code == 403
    shown = await api(client, shop, "GET", f"/provisioning_targets/{target['id']}")
    assert shown["last_attempt_at"] is None and shown["status"] == "pending"


async def test_another_merchants_target_is_not_found(
    client: httpx.AsyncClient, db: Database, shop: Shop, tmp_path: Path
) -> None:
    other = await make_shop(db, "other")
    foreign = await add_target(client, other, tmp_path / "other.htpasswd")
    admin = await _admin(client, db, shop)
    await admin.get(f"/admin/m/{shop.slug}/targets")
    base = f"/admin/m/{shop.slug}/targets/{foreign['id']}"
    assert (await admin.get(base)).status_code == 404
    assert (await admin.get(f"{base}/status", headers=HX)).status_code == 404
    assert (await admin.post(f"{base}/reconcile")).status_code == 404
    assert (await admin.get(f"/admin/m/other/targets/{foreign['id']}")).status_code == 404
    shown = await api(client, other, "GET", f"/provisioning_targets/{foreign['id']}")
    assert shown["last_attempt_at"] is None
