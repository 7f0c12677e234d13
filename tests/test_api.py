"""The merchant REST API through the ASGI app: auth, tenancy, idempotency, pagination, errors,
members, grants, plans, orders, webhook events, jobs, audit, settings, gateways and operations."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import re
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from conftest import SECRET_KEY, Shop, make_shop
from einlass.app import create_app
from einlass.billing.models import InboxEvent
from einlass.config import Settings
from einlass.crypto import verify_password
from einlass.db.engine import Database
from einlass.members.models import Member
from einlass.outbox.models import Job
from einlass.outbox.registry import build_worker
from einlass.rest.models import IdempotencyRecord
from helpers import has_access, post_generic
from payloads import generic

API = "/api/v1"


# --------------------------------------------------------------------------- helpers


async def call(
    client: httpx.AsyncClient, shop: Shop, method: str, path: str, expected: int = 200, **kwargs: Any
) -> Any:
    headers = {**shop.auth, **kwargs.pop("headers", {})}
    response = await client.request(method, f"{API}{path}", headers=headers, **kwargs)
    assert response.status_code == expected, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


def error_of(response: httpx.Response, status: int, error_type: str, code: str) -> dict[str, Any]:
    """Check the error envelope; return the inner error object."""
    assert response.status_code == status, response.text
    document = response.json()
    assert set(document) == {"error"}, document
    error = document["error"]
    assert error["type"] == error_type and error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    return error  # type: ignore[no-any-return]


async def create_member(client: httpx.AsyncClient, shop: Shop, email_address: str, **fields: Any) -> Any:
    return await call(
        client,
        shop,
        "POST",
        "/members",
        201,
        json={"email": email_address, "send_credentials": False, **fields},
    )


async def get_member(client: httpx.AsyncClient, shop: Shop, member_id: str) -> Any:
    return await call(client, shop, "GET", f"/members/{member_id}")


async def paid_member(
    client: httpx.AsyncClient, shop: Shop, payment_id: str, email_address: str, **kw: Any
) -> Any:
    """A member made by a confirmed generic payment for the 30-day plan."""
    kw.setdefault("product_id", "prod-30")
    response = await post_generic(
        client, shop, generic.payment_confirmed(payment_id, amount=990, email=email_address, **kw)
    )
    assert response.status_code == 200 and response.json()["status"] == "stored", response.text
    listing = await call(client, shop, "GET", "/members", params={"email": email_address})
    assert len(listing["data"]) == 1, listing
    return await get_member(client, shop, listing["data"][0]["id"])


def access(member: dict[str, Any], area: str = "premium") -> dict[str, Any] | None:
    return next((entry for entry in member["access"] if entry["area"] == area), None)


async def jobs_of(client: httpx.AsyncClient, shop: Shop, kind: str | None = None, **params: Any) -> list[Any]:
    listing = await call(client, shop, "GET", "/jobs", params={"limit": 100, **params})
    return [job for job in listing["data"] if kind is None or job["kind"] == kind]


async def api_key_id(client: httpx.AsyncClient, shop: Shop) -> str:
    keys = await call(client, shop, "GET", "/api_keys")
    assert len(keys["data"]) == 1
    return keys["data"][0]["id"]  # type: ignore[no-any-return]


def assert_no_secret_in(payload: dict[str, Any]) -> None:
    """A job's payload shown by the API carries no password, plain or encrypted."""
    assert "secret" not in payload and "password" not in payload, payload
    assert all(not isinstance(value, str) or len(value) < 40 for value in payload.values()), payload


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_mail(path: Path) -> email.message.EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def mailed_password(mail_dir: Path, to: str) -> str:
    passwords = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = read_mail(path)
        if message["To"] == to:
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            found = re.search(r"Passw(?:ord|ort): (\S+)", body.get_content())
            if found:
                passwords.append(found.group(1))
    assert len(passwords) == 1, passwords
    return passwords[0]


async def password_hash(db: Database, member_id: str) -> str | None:
    async with db.transaction() as session:
        return await session.scalar(select(Member.password_hash).where(Member.id == member_id))


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
        ({"authorization": "Bearer "}, "missing_api_key"),
        ({"authorization": "Bearer ek_not-a-real-key"}, "invalid_api_key"),
        ({"authorization": "Bearer sk_live_something"}, "invalid_api_key"),
    ],
    ids=["none", "basic", "empty-bearer", "unknown-key", "foreign-format"],
)
async def test_requests_without_a_valid_key_get_401_with_the_error_envelope(client, shop, headers, code):
    for method, path, body in [
        ("GET", "/members", None),
        ("GET", "/merchant", None),
        ("POST", "/members", {"email": "x@example.com"}),
    ]:
        response = await client.request(method, f"{API}{path}", headers=headers, json=body)
        error_of(response, 401, "authentication_error", code)
    # The key is checked before the body: an anonymous caller learns nothing about validation.
    response = await client.post(f"{API}/members", headers=headers, json={"email": "not an email"})
    error_of(response, 401, "authentication_error", code)
    listing = await call(client, shop, "GET", "/members")
    assert listing["data"] == []


async def test_scheme_is_case_insensitive(client, shop):
    response = await client.get(f"{API}/merchant", headers={"authorization": f"bearer {shop.api_key}"})
    assert response.status_code == 200
    assert response.json()["slug"] == "shop"


async def test_a_revoked_key_gets_401_and_keys_are_never_shown_again(client, shop):
    issued = await call(client, shop, "POST", "/api_keys", 201, json={"name": "ci"})
    assert issued["secret"].startswith("ek_") and issued["prefix"] == issued["secret"][:10]
    second = dataclasses.replace(shop, api_key=issued["secret"])
    assert (await call(client, second, "GET", "/merchant"))["id"] == shop.merchant_id

    keys = await call(client, shop, "GET", "/api_keys")
    assert {key["name"] for key in keys["data"]} == {"default", "ci"}
    assert issued["secret"] not in json.dumps(keys) and shop.api_key not in json.dumps(keys)
    assert all("secret" not in key and "digest" not in key for key in keys["data"])

    revoked = await call(client, shop, "DELETE", f"/api_keys/{issued['id']}")
    assert revoked["revoked_at"] is not None
    for method, path in [("GET", "/merchant"), ("POST", "/members")]:
        response = await client.request(
            method,
            f"{API}{path}",
            headers={**second.auth, "idempotency-key": "after-revocation"},
            json={"email": "late@example.com"},
        )
        error = error_of(response, 401, "authentication_error", "invalid_api_key")
        assert "revoked" in error["message"]
    # The remaining key still works and sees when the revoked one was last used.
    keys = await call(client, shop, "GET", "/api_keys")
    ci = next(key for key in keys["data"] if key["name"] == "ci")
    assert ci["revoked_at"] is not None and ci["last_used_at"] is not None
    assert (await call(client, shop, "GET", "/members"))["data"] == []


# --------------------------------------------------------------------------- tenant scoping


async def test_a_merchant_cannot_reach_another_merchants_data(client, shop, db):
    # The first merchant: a paid member (payment, grant, jobs), a manual grant, a parked
    # webhook event, an order; the second merchant tries everything on those ids.
    member = await paid_member(client, shop, "pay-t1", "tina@example.com", name="Tina")
    await post_generic(client, shop, generic.payment_refunded("pay-unknown", refund_id="r-1", amount=100))
    areas = {area["slug"]: area["id"] for area in (await call(client, shop, "GET", "/areas"))["data"]}
    manual = await call(
        client, shop, "POST", f"/members/{member['id']}/grants", 201, json={"area": "archive"}
    )
    order = await call(client, shop, "POST", "/orders", 201, json={"plan": "month"})
    payment = (await call(client, shop, "GET", "/payments"))["data"][0]
    events = (await call(client, shop, "GET", "/webhook_events"))["data"]
    parked = next(event for event in events if event["status"] == "parked")
    jobs = await jobs_of(client, shop)
    assert "email.credentials" in {job["kind"] for job in jobs}
    plan = await call(client, shop, "GET", "/plans/month")
    shop_key = await api_key_id(client, shop)

    other = await make_shop(db, "other")
    own = await create_member(client, other, "own@example.com")
    mid = member["id"]
    not_found = [
        ("GET", f"/members/{mid}", None),
        ("POST", f"/members/{mid}", {"name": "Hijacked"}),
        ("POST", f"/members/{mid}/lock", {"reason": "x"}),
        ("POST", f"/members/{mid}/unlock", None),
        ("POST", f"/members/{mid}/password", {"password": "a-long-new-password"}),
        ("POST", f"/members/{mid}/password", None),
        ("DELETE", f"/members/{mid}", None),
        ("GET", f"/members/{mid}/grants", None),
        ("POST", f"/members/{mid}/grants", {"area": "premium"}),
        ("POST", f"/members/{own['id']}/grants", {"area": areas["premium"]}),
        ("POST", f"/grants/{manual['id']}/revoke", None),
        ("GET", f"/payments/{payment['id']}", None),
        ("GET", f"/webhook_events/{parked['id']}", None),
        ("POST", f"/webhook_events/{parked['id']}/reprocess", None),
        ("POST", f"/webhook_events/{events[-1]['id']}/reprocess", None),
        ("GET", f"/orders/{order['id']}", None),
        ("GET", f"/orders/{order['order_no']}", None),
        ("GET", f"/plans/{plan['id']}", None),
        ("GET", f"/areas/{areas['archive']}", None),
        ("POST", "/orders", {"plan": plan["id"]}),
        (
            "POST",
            "/plans",
            {"slug": "steal", "name": "S", "amount": 1, "currency": "EUR", "areas": [areas["premium"]]},
        ),
        ("DELETE", f"/api_keys/{shop_key}", None),
    ] + [("POST", f"/jobs/{job['id']}/retry", None) for job in jobs]
    for method, path, body in not_found:
        response = await client.request(method, f"{API}{path}", headers=other.auth, json=body)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
        error_of(response, 404, "invalid_request_error", "resource_missing")

    # No list of the second merchant shows the first merchant's rows.
    shop_ids = {mid, payment["id"], parked["id"], order["id"], manual["id"], *(job["id"] for job in jobs)}
    shop_ids |= {event["id"] for event in events}
    for path, params in [
        ("/members", {}),
        ("/members", {"email": "tina@example.com"}),
        ("/payments", {}),
        ("/payments", {"member": mid}),
        ("/webhook_events", {}),
        ("/webhook_events", {"status": "parked"}),
        ("/jobs", {}),
        ("/orders", {}),
        ("/audit_entries", {}),
        ("/audit_entries", {"member": mid}),
        ("/api_keys", {}),
        ("/plans", {}),
        ("/areas", {}),
    ]:
        listing = await call(client, other, "GET", path, params={**params, "limit": 100})
        text = json.dumps(listing)
        assert not any(shop_id in text for shop_id in shop_ids), (path, params)
        assert "tina@example.com" not in text and shop.merchant_id not in text, (path, params)
    assert (await call(client, other, "GET", "/payments", params={"member": mid}))["data"] == []
    assert (await call(client, other, "GET", "/audit_entries", params={"member": mid}))["data"] == []

    # Nothing the second merchant tried changed the first merchant's member.
    after = await get_member(client, shop, mid)
    assert after["status"] == "active" and after["name"] == "Tina"
    assert has_access(after, "premium") and has_access(after, "archive")
    assert (await call(client, shop, "GET", f"/webhook_events/{parked['id']}"))["attempts"] == 1
    assert await api_key_id(client, shop) == shop_key


# --------------------------------------------------------------------------- idempotency


async def test_same_idempotency_key_and_body_replays_the_response_and_creates_nothing_twice(client, shop):
    body = {"email": "ida@example.com", "name": "Ida"}
    headers = {"idempotency-key": "create-ida"}
    first = await client.post(f"{API}/members", headers={**shop.auth, **headers}, json=body)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    second = await client.post(f"{API}/members", headers={**shop.auth, **headers}, json=body)
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()

    members = await call(client, shop, "GET", "/members")
    assert [m["id"] for m in members["data"]] == [first.json()["id"]]
    assert len(await jobs_of(client, shop, "email.credentials")) == 1
    created = await call(client, shop, "GET", "/audit_entries", params={"member": first.json()["id"]})
    assert [entry["action"] for entry in created["data"]].count("member.created") == 1

    # An error response is replayed too, rather than run again.
    dup = {"idempotency-key": "dup-ida"}
    conflict = await client.post(
        f"{API}/members", headers={**shop.auth, **dup}, json={"email": "IDA@example.com"}
    )
    error_of(conflict, 409, "invalid_request_error", "member_exists")
    again = await client.post(
        f"{API}/members", headers={**shop.auth, **dup}, json={"email": "IDA@example.com"}
    )
    assert again.status_code == 409 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == conflict.json()


async def test_same_idempotency_key_with_another_body_or_path_is_refused(client, shop):
    headers = {**shop.auth, "idempotency-key": "key-1"}
    first = await client.post(f"{API}/members", headers=headers, json={"email": "one@example.com"})
    assert first.status_code == 201
    for path, body in [
        ("/members", {"email": "two@example.com"}),
        ("/members", {"email": "one@example.com", "name": "changed"}),
        ("/areas", {"email": "one@example.com"}),
    ]:
        response = await client.post(f"{API}{path}", headers=headers, json=body)
        error = error_of(response, 400, "idempotency_error", "idempotency_key_reused")
        assert "Idempotency-Key" in error["message"]
    members = await call(client, shop, "GET", "/members")
    assert [m["email"] for m in members["data"]] == ["one@example.com"]

    too_long = await client.post(
        f"{API}/members", headers={**shop.auth, "idempotency-key": "k" * 256}, json={"email": "x@example.com"}
    )
    error_of(too_long, 400, "idempotency_error", "idempotency_key_too_long")


async def test_idempotency_keys_belong_to_one_merchant(client, shop, db):
    other = await make_shop(db, "other")
    body = {"email": "same@example.com"}
    mine = await client.post(f"{API}/members", headers={**shop.auth, "idempotency-key": "shared"}, json=body)
    theirs = await client.post(
        f"{API}/members", headers={**other.auth, "idempotency-key": "shared"}, json=body
    )
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert [m["id"] for m in (await call(client, other, "GET", "/members"))["data"]] == [theirs.json()["id"]]
    assert [m["id"] for m in (await call(client, shop, "GET", "/members"))["data"]] == [mine.json()["id"]]


async def test_idempotency_records_do_not_keep_an_issued_api_key_in_plain_text(client, shop, db):
    response = await client.post(
        f"{API}/api_keys", headers={**shop.auth, "idempotency-key": "new-key"}, json={"name": "ci"}
    )
    assert response.status_code == 201
    secret = response.json()["secret"]
    async with db.transaction() as session:
        stored = list(await session.scalars(select(IdempotencyRecord.response_body)))
    assert secret not in json.dumps(stored)


# --------------------------------------------------------------------------- pagination


async def test_cursor_pagination_over_members_returns_every_member_once(client, shop, clock):
    created = []
    for number in range(25):
        created.append((await create_member(client, shop, f"m{number:02d}@example.com"))["id"])
        clock.advance(timedelta(seconds=1))

    seen: list[str] = []
    pages = []
    params: dict[str, Any] = {"limit": 10}
    while True:
        page = await call(client, shop, "GET", "/members", params=params)
        assert page["object"] == "list" and page["url"] == "/api/v1/members"
        pages.append((len(page["data"]), page["has_more"]))
        seen += [member["id"] for member in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert page["next_cursor"] == page["data"][-1]["id"]
        params = {"limit": 10, "starting_after": page["next_cursor"]}
    assert pages == [(10, True), (10, True), (5, False)]
    assert seen == list(reversed(created))  # newest first, each exactly once

    everything = await call(client, shop, "GET", "/members", params={"limit": 25})
    assert len(everything["data"]) == 25 and everything["has_more"] is False
    one = await call(client, shop, "GET", "/members", params={"limit": 24})
    assert one["has_more"] is True
    after_last = await call(client, shop, "GET", "/members", params={"starting_after": created[0]})
    assert after_last == {**after_last, "data": [], "has_more": False}
    clamped = await call(client, shop, "GET", "/members", params={"limit": 1000})
    assert len(clamped["data"]) == 25


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("method", "path", "body", "param", "message"),
    [
        ("POST", "/members", {}, "email", "email: Field required"),
        ("POST", "/members", {"email": "not-an-email"}, "email", "email: value is not a valid email address"),
        (
            "POST",
            "/members",
            {"email": "a@example.com", "locale": "fr"},
            "locale",
            "locale: String should match",
        ),
        (
            "POST",
            "/members",
            {"email": "a@example.com", "password": "short"},
            "password",
            "password must have at least 10 characters",
        ),
        (
            "POST",
            "/members",
            {"email": "a@example.com", "send_credentials": "maybe"},
            "send_credentials",
            "send_credentials: Input should be a valid boolean",
        ),
        ("GET", "/members?limit=ten", None, "limit", "limit: Input should be a valid integer"),
        (
            "POST",
            "/areas",
            {"slug": "Not A Slug", "name": "x"},
            "slug",
            "slug must be 1-64 lower-case letters",
        ),
        (
            "POST",
            "/plans",
            {"slug": "p", "name": "P", "amount": -1, "currency": "EUR", "areas": ["premium"]},
            "amount",
            "amount: Input should be greater than or equal to 0",
        ),
        (
            "POST",
            "/plans",
            {"slug": "p", "name": "P", "amount": 1, "currency": "E1R", "areas": ["premium"]},
            "currency",
            "currency 'E1R' must be an ISO 4217 code",
        ),
        (
            "POST",
            "/plans",
            {"slug": "p", "name": "P", "amount": 1, "currency": "EUR", "areas": []},
            "areas",
            "areas: List should have at least 1 item",
        ),
        (
            "POST",
            "/plans",
            {
                "slug": "p",
                "name": "P",
                "amount": 1,
                "currency": "EUR",
                "areas": ["premium"],
                "gateway_refs": {"paypal": ["x"]},
            },
            "gateway_refs",
            "unknown gateway 'paypal'",
        ),
        (
            "POST",
            "/orders",
            {"plan": "month", "customer_email": "nope"},
            "email",
            "invalid email address 'nope'",
        ),
        (
            "POST",
            "/merchant",
            {"settings": {"partial_refund": "sometimes"}},
            "settings.partial_refund",
            "settings.partial_refund must be 'keep_access' or 'revoke_access'",
        ),
        ("POST", "/merchant", {"settings": {"colour": "red"}}, "settings", "unknown setting(s): colour"),
        ("POST", "/merchant", {"settings": {"locale": "fr"}}, "settings.locale", "settings.locale must be"),
    ],
)
async def test_validation_errors_are_400_with_a_precise_message_and_param(
    client, shop, method, path, body, param, message
):
    before = await call(client, shop, "GET", "/merchant")
    response = await client.request(method, f"{API}{path}", headers=shop.auth, json=body)
    error = error_of(response, 400, "invalid_request_error", "parameter_invalid")
    assert error["param"] == param
    assert message in error["message"]
    assert await call(client, shop, "GET", "/merchant") == before
    assert (await call(client, shop, "GET", "/members"))["data"] == []


async def test_grant_validation_errors_name_the_parameter(client, shop, clock):
    member = await create_member(client, shop, "g@example.com")
    path = f"{API}/members/{member['id']}/grants"
    naive = await client.post(
        path, headers=shop.auth, json={"area": "premium", "ends_at": "2026-04-01T00:00:00"}
    )
    error = error_of(naive, 400, "invalid_request_error", "parameter_invalid")
    assert error["param"] == "ends_at" and "timezone" in error["message"]
    backwards = await client.post(
        path,
        headers=shop.auth,
        json={"area": "premium", "starts_at": "2026-04-01T00:00:00Z", "ends_at": "2026-03-01T00:00:00Z"},
    )
    error = error_of(backwards, 400, "invalid_request_error", "parameter_invalid")
    assert error == {**error, "param": "ends_at", "message": "ends_at must be after starts_at"}
    unknown = await client.post(path, headers=shop.auth, json={"area": "vip"})
    assert "vip" in error_of(unknown, 404, "invalid_request_error", "resource_missing")["message"]
    assert (await call(client, shop, "GET", f"/members/{member['id']}/grants"))["data"] == []


async def test_unknown_routes_and_methods_use_the_error_envelope(client, shop):
    error_of(
        await client.get(f"{API}/nothing-here", headers=shop.auth), 404, "invalid_request_error", "not_found"
    )
    error_of(
        await client.put(f"{API}/members", headers=shop.auth),
        405,
        "invalid_request_error",
        "method_not_allowed",
    )


# --------------------------------------------------------------------------- members


async def test_create_member_emails_a_generated_password(client, shop, worker, settings, db):
    member = await call(
        client,
        shop,
        "POST",
        "/members",
        201,
        json={"email": "Erika@Example.com", "name": "Erika", "locale": "de"},
    )
    assert member["id"].startswith("mem_") and member["object"] == "member"
    # EmailStr lower-cases the domain part; the local part keeps its case.
    assert member == {
        **member,
        "email": "Erika@example.com",
        "username": "erika@example.com",
        "name": "Erika",
        "locale": "de",
        "status": "active",
        "access": [],
    }
    assert "password" not in member

    [job] = await jobs_of(client, shop, "email.credentials")
    assert job["status"] == "pending" and job["payload"]["member_id"] == member["id"]
    assert_no_secret_in(job["payload"])
    await worker.drain()
    [job] = await jobs_of(client, shop, "email.credentials")
    assert job["status"] == "done" and job["finished_at"] is not None

    password = mailed_password(settings.mail_dir, "Erika@example.com")
    hashed = await password_hash(db, member["id"])
    assert hashed is not None and verify_password(password, hashed)
    [mail] = settings.mail_dir.glob("*.eml")
    assert "Zugangsdaten" in read_mail(mail)["Subject"]


async def test_create_member_without_sending_returns_the_password_once(client, shop, db):
    member = await create_member(client, shop, "quiet@example.com")
    password = member["password"]
    assert len(password) >= 16
    hashed = await password_hash(db, member["id"])
    assert hashed is not None and verify_password(password, hashed)
    assert "password" not in await get_member(client, shop, member["id"])
    assert await jobs_of(client, shop, "email.credentials") == []

    chosen = await create_member(client, shop, "chosen@example.com", password="my-own-password-1")
    assert "password" not in chosen
    hashed = await password_hash(db, chosen["id"])
    assert hashed is not None and verify_password("my-own-password-1", hashed)


async def test_duplicate_email_is_a_409(client, shop):
    first = await create_member(client, shop, "dup@example.com")
    response = await client.post(f"{API}/members", headers=shop.auth, json={"email": " DUP@example.COM "})
    error = error_of(response, 409, "invalid_request_error", "member_exists")
    assert first["id"] in error["message"]
    second = await create_member(client, shop, "other@example.com")
    clash = await client.post(
        f"{API}/members/{second['id']}", headers=shop.auth, json={"email": "Dup@Example.com"}
    )
    error_of(clash, 409, "invalid_request_error", "member_exists")
    assert len((await call(client, shop, "GET", "/members"))["data"]) == 2


async def test_update_member(client, shop):
    member = await create_member(client, shop, "old@example.com", name="Old Name")
    updated = await call(
        client,
        shop,
        "POST",
        f"/members/{member['id']}",
        json={"email": "New@Example.com", "name": "New Name"},
    )
    assert updated == {
        **updated,
        "email": "New@example.com",
        "username": "new@example.com",
        "name": "New Name",
    }
    assert (await get_member(client, shop, member["id"]))["name"] == "New Name"
    found = await call(client, shop, "GET", "/members", params={"email": "new@EXAMPLE.com"})
    assert [m["id"] for m in found["data"]] == [member["id"]]
    assert (await call(client, shop, "GET", "/members", params={"email": "old@example.com"}))["data"] == []
    # A partial update leaves the other fields alone.
    renamed = await call(client, shop, "POST", f"/members/{member['id']}", json={"name": "Newer"})
    assert renamed["email"] == "New@example.com" and renamed["name"] == "Newer"
    audit = await call(client, shop, "GET", "/audit_entries", params={"member": member["id"]})
    change = next(
        entry for entry in audit["data"] if entry["after"] and entry["after"].get("name") == "New Name"
    )
    assert change["action"] == "member.updated"
    assert change["before"]["email"] == "old@example.com" and change["after"]["email"] == "New@example.com"


async def test_lock_closes_access_and_unlock_opens_it_again(client, shop, clock):
    member = await create_member(client, shop, "lock@example.com")
    mid = member["id"]
    clock.advance(timedelta(seconds=1))  # ids (and so the audit order) follow the clock
    grant = await call(client, shop, "POST", f"/members/{mid}/grants", 201, json={"area": "premium"})
    assert grant["ends_at"] is None and grant["source"] == {"kind": "manual", "id": grant["id"]}
    assert access(await get_member(client, shop, mid)) == {
        "area": "premium",
        "area_id": grant["area"],
        "active": True,
        "until": None,
    }

    clock.advance(timedelta(seconds=1))
    locked = await call(client, shop, "POST", f"/members/{mid}/lock", json={"reason": "shared the password"})
    assert locked["status"] == "locked" and locked["lock_reason"] == "shared the password"
    assert locked["locked_at"] is not None and not has_access(locked)
    assert not has_access(await get_member(client, shop, mid))
    again = await call(client, shop, "POST", f"/members/{mid}/lock", json={"reason": "other reason"})
    assert again["lock_reason"] == "shared the password"  # locking twice changes nothing

    clock.advance(timedelta(seconds=1))
    unlocked = await call(client, shop, "POST", f"/members/{mid}/unlock")
    assert (
        unlocked["status"] == "active" and unlocked["locked_at"] is None and unlocked["lock_reason"] is None
    )
    assert has_access(unlocked) and has_access(await get_member(client, shop, mid))
    # Each change asks the push targets to converge.
    assert any(job["kind"].startswith("provisioning") for job in await jobs_of(client, shop))
    audit = await call(client, shop, "GET", "/audit_entries", params={"member": mid})
    actions = [entry["action"] for entry in reversed(audit["data"])]
    wanted = {"member.created", "grant.created", "member.locked", "member.unlocked"}
    assert [action for action in actions if action in wanted] == [
        "member.created",
        "grant.created",
        "member.locked",
        "member.unlocked",
    ]


async def test_set_password_and_reset_password(client, shop, worker, settings, db):
    member = await create_member(client, shop, "pw@example.com")
    mid = member["id"]
    result = await call(
        client, shop, "POST", f"/members/{mid}/password", json={"password": "chosen-password-42"}
    )
    assert result["credentials_emailed"] is False and "password" not in result
    hashed = await password_hash(db, mid)
    assert hashed is not None and verify_password("chosen-password-42", hashed)
    assert await jobs_of(client, shop, "email.credentials") == []

    short = await client.post(f"{API}/members/{mid}/password", headers=shop.auth, json={"password": "2short"})
    assert error_of(short, 400, "invalid_request_error", "parameter_invalid")["param"] == "password"

    reset = await call(client, shop, "POST", f"/members/{mid}/password")
    assert reset["credentials_emailed"] is True and "password" not in reset
    [job] = await jobs_of(client, shop, "email.credentials")
    assert job["payload"]["member_id"] == mid
    assert_no_secret_in(job["payload"])
    await worker.drain()
    new_password = mailed_password(settings.mail_dir, "pw@example.com")
    hashed = await password_hash(db, mid)
    assert hashed is not None and verify_password(new_password, hashed)
    assert not verify_password("chosen-password-42", hashed)
    actions = {
        e["action"]
        for e in (await call(client, shop, "GET", "/audit_entries", params={"member": mid}))["data"]
    }
    assert {"member.password_set", "member.password_reset"} <= actions


async def test_delete_erases_personal_data_and_keeps_a_pseudonymous_ledger(client, shop, db):
    order = await call(
        client,
        shop,
        "POST",
        "/orders",
        201,
        json={"plan": "month", "customer_email": "Erika@Example.com", "customer_name": "Erika M."},
    )
    member = await paid_member(
        client,
        shop,
        "pay-e1",
        "Erika@Example.com",
        name="Erika Mustermann",
        order_no=order["order_no"],
        product_id=None,
    )
    mid = member["id"]
    assert has_access(member)
    [event] = (await call(client, shop, "GET", "/webhook_events"))["data"]
    raw = await call(client, shop, "GET", f"/webhook_events/{event['id']}")
    assert "Erika Mustermann" in raw["body"]

    deleted = await call(client, shop, "DELETE", f"/members/{mid}")
    assert deleted == {**deleted, "status": "deleted", "email": None, "name": None, "username": None}
    assert deleted["deleted_at"] is not None
    shown = await get_member(client, shop, mid)
    assert shown["status"] == "deleted" and not has_access(shown)
    assert "Erika" not in json.dumps(shown) and "erika" not in json.dumps(shown)
    assert (await call(client, shop, "GET", "/members"))["data"] == []
    assert (await call(client, shop, "GET", "/members", params={"email": "erika@example.com"}))["data"] == []
    assert await password_hash(db, mid) is None

    [payment] = (await call(client, shop, "GET", "/payments", params={"member": mid}))["data"]
    assert payment["customer_email"].startswith("erased:")
    assert payment["status"] == "confirmed" and payment["amount"] == 990  # the ledger stays
    raw = await call(client, shop, "GET", f"/webhook_events/{event['id']}")
    assert raw["body"] == '{"erased": true}' and raw["headers"] == {}
    erased_order = await call(client, shop, "GET", f"/orders/{order['id']}")
    assert erased_order["customer_email"] is None and erased_order["customer_name"] is None
    [grant] = (await call(client, shop, "GET", f"/members/{mid}/grants"))["data"]
    assert grant["revoked_reason"] == "member deleted"

    # A deleted member stays deleted; the same email can become a new member.
    for method, path, body in [
        ("POST", f"/members/{mid}/lock", None),
        ("POST", f"/members/{mid}", {"name": "Back"}),
        ("POST", f"/members/{mid}/grants", {"area": "premium"}),
    ]:
        response = await client.request(method, f"{API}{path}", headers=shop.auth, json=body)
        error_of(response, 409, "invalid_request_error", "member_deleted")
    again = await call(client, shop, "DELETE", f"/members/{mid}")
    assert again["deleted_at"] == deleted["deleted_at"]
    fresh = await create_member(client, shop, "erika@example.com")
    assert fresh["id"] != mid


async def test_erasure_leaves_no_personal_data_in_the_audit_log(client, shop):
    member = await create_member(client, shop, "Hanna@Example.com", name="Hanna Schmidt")
    await call(client, shop, "POST", f"/members/{member['id']}", json={"name": "Hanna Schmidt-Meier"})
    await call(client, shop, "DELETE", f"/members/{member['id']}")
    audit = json.dumps(await call(client, shop, "GET", "/audit_entries", params={"limit": 100}))
    assert "hanna" not in audit.lower()


async def test_erasure_clears_the_members_order_whatever_the_case_of_its_email(client, shop):
    member = await create_member(client, shop, "Paul@example.com")  # a customer already
    order = await call(
        client,
        shop,
        "POST",
        "/orders",
        201,
        json={"plan": "month", "customer_email": "paul@example.com", "customer_name": "Paul"},
    )
    paid = await paid_member(client, shop, "pay-c1", "paul@example.com", order_no=order["order_no"])
    assert paid["id"] == member["id"] and has_access(paid)
    assert (await call(client, shop, "GET", f"/orders/{order['id']}"))["payment"] is not None
    await call(client, shop, "DELETE", f"/members/{member['id']}")
    erased = await call(client, shop, "GET", f"/orders/{order['id']}")
    assert erased["customer_email"] is None and erased["customer_name"] is None


async def test_erasure_replaces_every_raw_webhook_body_of_the_member(client, shop):
    payload = generic.payment_confirmed("pay-r1", amount=990, email="rita@example.com", product_id="prod-30")
    await post_generic(client, shop, payload, msg_id="msg_first")
    await post_generic(client, shop, payload, msg_id="msg_resent")  # same fact, new delivery id
    member = (await call(client, shop, "GET", "/members", params={"email": "rita@example.com"}))["data"][0]
    await call(client, shop, "DELETE", f"/members/{member['id']}")
    events = (await call(client, shop, "GET", "/webhook_events"))["data"]
    assert len(events) == 2
    for event in events:
        detail = await call(client, shop, "GET", f"/webhook_events/{event['id']}")
        assert "rita" not in detail["body"], detail


async def test_manual_grants_with_and_without_end_and_revocation(client, shop, clock):
    member = await create_member(client, shop, "grant@example.com")
    mid = member["id"]
    forever = await call(
        client, shop, "POST", f"/members/{mid}/grants", 201, json={"area": "premium", "note": "press"}
    )
    assert forever == {
        **forever,
        "object": "grant",
        "member": mid,
        "ends_at": None,
        "note": "press",
        "starts_at": clock.now().isoformat(),
        "revoked_at": None,
    }
    ends = clock.now() + timedelta(days=10)
    areas = {area["slug"]: area["id"] for area in (await call(client, shop, "GET", "/areas"))["data"]}
    limited = await call(
        client,
        shop,
        "POST",
        f"/members/{mid}/grants",
        201,
        json={"area": areas["archive"], "ends_at": ends.isoformat()},
    )
    assert limited["area"] == areas["archive"] and limited["ends_at"] == ends.isoformat()
    later = clock.now() + timedelta(days=20)
    future = await call(
        client,
        shop,
        "POST",
        f"/members/{mid}/grants",
        201,
        json={
            "area": "archive",
            "starts_at": later.isoformat(),
            "ends_at": (later + timedelta(days=1)).isoformat(),
        },
    )

    shown = await get_member(client, shop, mid)
    assert access(shown, "premium") == {
        "area": "premium",
        "area_id": areas["premium"],
        "active": True,
        "until": None,
    }
    assert access(shown, "archive") == {
        "area": "archive",
        "area_id": areas["archive"],
        "active": True,
        "until": ends.isoformat(),
    }

    clock.advance(timedelta(days=10) - timedelta(seconds=1))
    assert has_access(await get_member(client, shop, mid), "archive")
    clock.advance(timedelta(seconds=1))
    shown = await get_member(client, shop, mid)
    assert not has_access(shown, "archive") and access(shown, "archive") == {
        "area": "archive",
        "area_id": areas["archive"],
        "active": False,
        "until": None,
    }
    assert has_access(shown, "premium")
    clock.advance(timedelta(days=10))
    assert access(await get_member(client, shop, mid), "archive")["until"] == future["ends_at"]

    revoked = await call(
        client, shop, "POST", f"/grants/{forever['id']}/revoke", json={"reason": "press trip over"}
    )
    assert revoked["revoked_at"] == clock.now().isoformat() and revoked["revoked_reason"] == "press trip over"
    assert not has_access(await get_member(client, shop, mid), "premium")
    twice = await call(client, shop, "POST", f"/grants/{forever['id']}/revoke")
    assert twice["revoked_reason"] == "press trip over"
    grants = (await call(client, shop, "GET", f"/members/{mid}/grants"))["data"]
    assert [grant["id"] for grant in grants] == [forever["id"], limited["id"], future["id"]]
    error_of(
        await client.post(f"{API}/grants/grt_nope/revoke", headers=shop.auth),
        404,
        "invalid_request_error",
        "resource_missing",
    )


async def test_access_until_follows_an_adjacent_grant(client, shop, clock):
    """A grant that starts where another ends (an extension): the access lasts to the second's end."""
    member = await create_member(client, shop, "extended@example.com")
    first_end = clock.now() + timedelta(days=10)
    second_end = first_end + timedelta(days=30)
    for starts, ends in ((clock.now(), first_end), (first_end, second_end)):
        await call(
            client,
            shop,
            "POST",
            f"/members/{member['id']}/grants",
            201,
            json={"area": "premium", "starts_at": starts.isoformat(), "ends_at": ends.isoformat()},
        )
    shown = access(await get_member(client, shop, member["id"]), "premium")
    assert shown is not None and shown["active"] and shown["until"] == second_end.isoformat()


# --------------------------------------------------------------------------- plans


async def test_plans_take_iso_8601_periods(client, shop, clock):
    made = {}
    for slug, period, shown in [
        ("half-day", "PT12H", "PT12H"),
        ("week", "P1W", "P1W"),
        ("month-iso", "P1M", "P1M"),
        ("year", "P1Y", "P1Y"),
        ("forever", None, "lifetime"),
        ("forever-2", "lifetime", "lifetime"),
    ]:
        body = {
            "slug": slug,
            "name": slug,
            "amount": 500,
            "currency": "eur",
            "areas": ["premium"],
            "gateway_refs": {"generic": [f"prod-{slug}"]},
        }
        if period is not None:
            body["access_period"] = period
        plan = await call(client, shop, "POST", "/plans", 201, json=body)
        assert plan == {
            **plan,
            "object": "plan",
            "slug": slug,
            "access_period": shown,
            "currency": "EUR",
            "amount": 500,
            "kind": "one_time",
            "active": True,
            "areas": ["premium"],
            "gateway_refs": {"generic": [f"prod-{slug}"]},
        }
        made[slug] = plan
    assert (await call(client, shop, "GET", "/plans/half-day")) == made["half-day"]
    assert (await call(client, shop, "GET", f"/plans/{made['week']['id']}")) == made["week"]
    listed = {plan["slug"] for plan in (await call(client, shop, "GET", "/plans"))["data"]}
    assert listed == {"month", "lifetime", *made}

    for payment_id, product, until in [
        ("pay-h", "prod-half-day", clock.now() + timedelta(hours=12)),
        ("pay-m", "prod-month-iso", clock.now() + timedelta(days=30)),
        ("pay-f", "prod-forever", None),
    ]:
        member = await paid_member(client, shop, payment_id, f"{payment_id}@example.com", product_id=product)
        assert access(member)["until"] == (until.isoformat() if until else None)


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("30 days", "access_period '30 days' is not an ISO 8601 duration such as P30D"),
        ("P", "is not an ISO 8601 duration"),
        ("30D", "is not an ISO 8601 duration"),
        ("P0D", "access_period must be positive"),
        ("-P1D", "access_period must be positive"),
        ("PT0S", "access_period must be positive"),
    ],
)
async def test_bad_plan_periods_are_400(client, shop, period, message):
    body = {
        "slug": "bad",
        "name": "Bad",
        "amount": 100,
        "currency": "EUR",
        "areas": ["premium"],
        "access_period": period,
    }
    response = await client.post(f"{API}/plans", headers=shop.auth, json=body)
    error = error_of(response, 400, "invalid_request_error", "parameter_invalid")
    assert error["param"] == "access_period" and message in error["message"]
    error_of(
        await client.get(f"{API}/plans/bad", headers=shop.auth),
        404,
        "invalid_request_error",
        "resource_missing",
    )


async def test_an_absurdly_long_period_is_a_400_not_a_500(client, shop):
    body = {
        "slug": "huge",
        "name": "Huge",
        "amount": 100,
        "currency": "EUR",
        "areas": ["premium"],
        "access_period": "P9999999999D",
    }
    try:
        response = await client.post(f"{API}/plans", headers=shop.auth, json=body)
    except OverflowError:
        pytest.fail("the OverflowError escaped the app (HTTP 500)")
    error = error_of(response, 400, "invalid_request_error", "parameter_invalid")
    assert error["param"] == "access_period"


async def test_a_period_that_cannot_be_applied_is_refused_when_the_plan_is_made(client, shop):
    body = {
        "slug": "ages",
        "name": "Ages",
        "amount": 100,
        "currency": "EUR",
        "areas": ["premium"],
        "access_period": "P3000000D",
        "gateway_refs": {"generic": ["prod-ages"]},
    }
    response = await client.post(f"{API}/plans", headers=shop.auth, json=body)
    if response.status_code == 201:
        # Show the consequence: the payment is acknowledged but never applied.
        await post_generic(
            client,
            shop,
            generic.payment_confirmed("pay-ages", amount=100, email="a@example.com", product_id="prod-ages"),
        )
        [event] = (await call(client, shop, "GET", "/webhook_events"))["data"]
        assert event["status"] == "applied", event
    error = error_of(response, 400, "invalid_request_error", "parameter_invalid")
    assert error["param"] == "access_period"


async def test_plan_conflicts(client, shop):
    body = {"slug": "month", "name": "Again", "amount": 1, "currency": "EUR", "areas": ["premium"]}
    error_of(
        await client.post(f"{API}/plans", headers=shop.auth, json=body),
        409,
        "invalid_request_error",
        "plan_exists",
    )
    taken = {**body, "slug": "month-2", "gateway_refs": {"generic": ["prod-30"]}}
    error_of(
        await client.post(f"{API}/plans", headers=shop.auth, json=taken),
        409,
        "invalid_request_error",
        "reference_taken",
    )
    assert {p["slug"] for p in (await call(client, shop, "GET", "/plans"))["data"]} == {"month", "lifetime"}


# --------------------------------------------------------------------------- orders


@pytest.mark.parametrize("customer_in_event", [True, False], ids=["email-in-event", "email-from-order"])
async def test_order_paid_by_a_generic_event_with_its_order_no(client, shop, clock, customer_in_event):
    order = await call(
        client,
        shop,
        "POST",
        "/orders",
        201,
        json={"plan": "month", "customer_email": "olga@example.com", "metadata": {"cart": "c-7"}},
    )
    assert order["order_no"].startswith("ein-") and order["status"] == "pending"
    assert order == {
        **order,
        "object": "order",
        "amount": 990,
        "currency": "EUR",
        "payment": None,
        "metadata": {"cart": "c-7"},
    }
    payload = generic.payment_confirmed(
        "pay-o1",
        amount=990,
        order_no=order["order_no"],
        email="olga@example.com" if customer_in_event else None,
    )
    assert "product_id" not in payload["data"]
    response = await post_generic(client, shop, payload)
    assert response.status_code == 200 and response.json()["status"] == "stored"

    paid = await call(client, shop, "GET", f"/orders/{order['order_no']}")
    assert paid["status"] == "paid" and paid["payment"] is not None
    payment = await call(client, shop, "GET", f"/payments/{paid['payment']}")
    plan = await call(client, shop, "GET", "/plans/month")
    assert payment == {
        **payment,
        "order": order["id"],
        "plan": plan["id"],
        "status": "confirmed",
        "amount": 990,
        "amount_paid": 990,
    }
    assert [change["to"] for change in payment["status_history"]] == ["confirmed"]
    member = await get_member(client, shop, payment["member"])
    assert member["email"] == "olga@example.com"
    assert access(member)["until"] == (clock.now() + timedelta(days=30)).isoformat()
    assert access(member, "archive") is None
    assert len(await jobs_of(client, shop, "email.credentials")) == 1

    listed = await call(client, shop, "GET", "/orders")
    assert [o["id"] for o in listed["data"]] == [order["id"]]
    dup = await client.post(
        f"{API}/orders", headers=shop.auth, json={"plan": "month", "order_no": order["order_no"]}
    )
    error_of(dup, 409, "invalid_request_error", "order_exists")
    error_of(
        await client.post(f"{API}/orders", headers=shop.auth, json={"plan": "gold"}),
        404,
        "invalid_request_error",
        "resource_missing",
    )


# --------------------------------------------------------------------------- webhook events


async def test_webhook_events_list_detail_and_reprocess_of_a_parked_event(client, shop, db):
    refund = generic.payment_refunded("pay-p1", refund_id="rf-1", amount=990)
    response = await post_generic(client, shop, refund, msg_id="msg_refund")
    assert response.status_code == 200 and response.json()["status"] == "stored"
    event_id = response.json()["id"]

    [listed] = (await call(client, shop, "GET", "/webhook_events", params={"status": "parked"}))["data"]
    assert listed == {
        **listed,
        "id": event_id,
        "object": "webhook_event",
        "gateway": "generic",
        "type": "payment.refunded",
        "event_key": "msg_refund",
        "status": "parked",
        "parked_on": "pay-p1",
        "attempts": 1,
    }
    assert "body" not in listed and "headers" not in listed
    detail = await call(client, shop, "GET", f"/webhook_events/{event_id}")
    assert json.loads(detail["body"]) == refund
    assert detail["headers"]["webhook-id"] == "msg_refund" and "webhook-signature" in detail["headers"]

    # The payment is still unknown: reprocessing leaves the event parked.
    again = await call(client, shop, "POST", f"/webhook_events/{event_id}/reprocess")
    assert again["status"] == "parked" and again["attempts"] == 2

    # The race this endpoint exists for: the refund is parked in a transaction that commits
    # after the payment's own transaction looked for parked events.
    async with db.transaction() as session:
        await session.execute(update(InboxEvent).where(InboxEvent.id == event_id).values(status="received"))
    member = await paid_member(client, shop, "pay-p1", "pia@example.com")
    async with db.transaction() as session:
        await session.execute(update(InboxEvent).where(InboxEvent.id == event_id).values(status="parked"))
    assert has_access(member)

    applied = await call(client, shop, "POST", f"/webhook_events/{event_id}/reprocess")
    assert applied["status"] == "applied" and applied["parked_on"] is None and applied["applied_at"]
    assert not has_access(await get_member(client, shop, member["id"]))
    [payment] = (await call(client, shop, "GET", "/payments"))["data"]
    assert payment["status"] == "refunded" and payment["amount_refunded"] == 990

    # Reprocessing an applied event changes nothing.
    twice = await call(client, shop, "POST", f"/webhook_events/{event_id}/reprocess")
    assert twice["status"] == "applied"
    [payment] = (await call(client, shop, "GET", "/payments"))["data"]
    assert payment["amount_refunded"] == 990
    assert (await call(client, shop, "GET", "/webhook_events", params={"status": "parked"}))["data"] == []
    audit = await call(client, shop, "GET", "/audit_entries")
    reprocessed = [e for e in audit["data"] if e["action"] == "webhook_event.reprocessed"]
    assert len(reprocessed) == 3 and all(
        e["entity"] == {"kind": "webhook_event", "id": event_id} for e in reprocessed
    )
    error_of(
        await client.post(f"{API}/webhook_events/whe_nope/reprocess", headers=shop.auth),
        404,
        "invalid_request_error",
        "resource_missing",
    )


# --------------------------------------------------------------------------- jobs


def failing_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={"smtp_url": f"smtp://127.0.0.1:{closed_port()}?timeout=5", **overrides}
    )


async def test_a_failed_job_is_listed_and_can_be_retried(client, shop, db, settings, worker):
    failing = build_worker(db, failing_settings(settings))
    member = await call(client, shop, "POST", "/members", 201, json={"email": "job@example.com"})
    [job] = await jobs_of(client, shop, "email.credentials")
    async with db.transaction() as session:
        await session.execute(update(Job).where(Job.id == job["id"]).values(max_attempts=1))

    await failing.drain()
    [failed] = await jobs_of(client, shop, status="failed")
    assert failed["id"] == job["id"] and failed["attempts"] == 1 and failed["max_attempts"] == 1
    assert "EmailDeliveryError" in failed["last_error"] and "127.0.0.1" in failed["last_error"]
    assert failed["finished_at"] is not None
    await failing.drain()  # a failed job is not picked up again on its own
    assert [job["id"] for job in await jobs_of(client, shop, status="failed")] == [failed["id"]]

    retried = await call(client, shop, "POST", f"/jobs/{job['id']}/retry")
    assert retried["status"] == "pending" and retried["attempts"] == 0
    assert await jobs_of(client, shop, status="failed") == []
    await worker.drain()
    [done] = await jobs_of(client, shop, "email.credentials")
    assert done["status"] == "done" and done["attempts"] == 1
    mailed_password(settings.mail_dir, "job@example.com")
    # Retrying a job that is done changes nothing.
    assert (await call(client, shop, "POST", f"/jobs/{job['id']}/retry"))["status"] == "done"
    error_of(
        await client.post(f"{API}/jobs/job_nope/retry", headers=shop.auth),
        404,
        "invalid_request_error",
        "resource_missing",
    )
    assert member["id"] == done["payload"]["member_id"]


async def test_a_job_backs_off_and_fails_after_its_last_attempt(client, shop, db, settings, clock):
    failing = build_worker(db, failing_settings(settings))
    await call(client, shop, "POST", "/members", 201, json={"email": "backoff@example.com"})
    [job] = await jobs_of(client, shop, "email.credentials")
    for attempt in range(1, job["max_attempts"] + 1):
        await failing.drain()
        [current] = await jobs_of(client, shop, "email.credentials")
        assert current["attempts"] == attempt
        if attempt < job["max_attempts"]:
            assert current["status"] == "pending"
            assert datetime.fromisoformat(current["run_after"]) > clock.now()
            await failing.drain()  # not due before its backoff
            assert (await jobs_of(client, shop, "email.credentials"))[0]["attempts"] == attempt
            clock.advance(timedelta(hours=1, seconds=1))
    assert current["status"] == "failed"


async def test_audit_entries_per_member_and_per_merchant_name_the_actor(client, shop):
    member = await paid_member(client, shop, "pay-a1", "audit@example.com")
    mid = member["id"]
    key_id = await api_key_id(client, shop)
    await call(client, shop, "POST", f"/members/{mid}/lock", json={"reason": "test"})
    await call(client, shop, "POST", f"/members/{mid}/unlock")
    other_member = await create_member(client, shop, "bystander@example.com")
    [event] = (await call(client, shop, "GET", "/webhook_events"))["data"]

    entries = (await call(client, shop, "GET", "/audit_entries", params={"member": mid}))["data"]
    assert all(entry["member"] == mid and entry["object"] == "audit_entry" for entry in entries)
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["member.created"]["actor"] == {"kind": "gateway_event", "id": event["id"]}
    assert by_action["grant.created"]["actor"] == {"kind": "gateway_event", "id": event["id"]}
    assert by_action["member.locked"]["actor"] == {"kind": "api_key", "id": key_id}
    assert by_action["member.locked"]["after"] == {"reason": "test"}
    assert by_action["member.unlocked"]["actor"] == {"kind": "api_key", "id": key_id}
    assert by_action["member.created"]["entity"] == {"kind": "member", "id": mid}
    assert all(entry["at"] for entry in entries)

    everything = (await call(client, shop, "GET", "/audit_entries", params={"limit": 100}))["data"]
    kinds = {entry["actor"]["kind"] for entry in everything}
    assert {"cli", "gateway_event", "api_key"} <= kinds
    actions = {entry["action"] for entry in everything}
    assert {
        "merchant.created",
        "area.created",
        "plan.created",
        "gateway.secrets_set",
        "payment.status_changed",
        "member.created",
    } <= actions
    assert any(entry["member"] == other_member["id"] for entry in everything)
    cli = next(entry for entry in everything if entry["action"] == "merchant.created")
    assert cli["actor"] == {"kind": "cli", "id": None}
    # Secrets never reach the audit log, only the names of the fields.
    text = json.dumps(everything)
    assert (
        shop.generic_secret not in text and shop.novalnet_key not in text and shop.stripe_secret not in text
    )

    # Newest first, paginated like every list.
    first = await call(client, shop, "GET", "/audit_entries", params={"limit": 3})
    assert first["has_more"] is True and len(first["data"]) == 3
    rest = await call(
        client, shop, "GET", "/audit_entries", params={"limit": 100, "starting_after": first["next_cursor"]}
    )
    assert [e["id"] for e in first["data"] + rest["data"]] == [e["id"] for e in everything]


# --------------------------------------------------------------------------- merchant settings


@pytest.mark.parametrize(
    ("setting", "keeps"), [(None, True), ("keep_access", True), ("revoke_access", False)]
)
async def test_partial_refund_keeps_or_revokes_access_per_merchant_setting(client, shop, setting, keeps):
    merchant = await call(client, shop, "GET", "/merchant")
    assert merchant["settings"]["partial_refund"] == "keep_access"
    if setting is not None:
        updated = await call(
            client, shop, "POST", "/merchant", json={"settings": {"partial_refund": setting}}
        )
        assert updated["settings"]["partial_refund"] == setting and updated["settings"]["locale"] == "en"
        assert (await call(client, shop, "GET", "/merchant"))["settings"]["partial_refund"] == setting
    member = await paid_member(client, shop, "pay-pr", "partial@example.com")
    assert has_access(member)
    await post_generic(client, shop, generic.payment_refunded("pay-pr", refund_id="rf-part", amount=300))
    [payment] = (await call(client, shop, "GET", "/payments"))["data"]
    assert payment["status"] == "partially_refunded" and payment["amount_refunded"] == 300
    assert has_access(await get_member(client, shop, member["id"])) is keeps
    # The rest of the money back closes the door whatever the setting.
    await post_generic(client, shop, generic.payment_refunded("pay-pr", refund_id="rf-rest", amount=690))
    assert not has_access(await get_member(client, shop, member["id"]))


async def test_merchant_name_update(client, shop):
    updated = await call(client, shop, "POST", "/merchant", json={"name": "Shop AG"})
    assert updated["name"] == "Shop AG" and updated["slug"] == "shop"
    assert updated["settings"]["partial_refund"] == "keep_access" and updated["settings"]["locale"] == "en"
    response = await client.post(f"{API}/merchant", headers=shop.auth, json={"name": ""})
    assert error_of(response, 400, "invalid_request_error", "parameter_invalid")["param"] == "name"


# --------------------------------------------------------------------------- gateways


async def test_gateway_secrets_are_write_only(client, shop):
    new_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    result = await call(
        client, shop, "PUT", "/gateways/generic", json={"secrets": {"signing_secret": new_secret}}
    )
    assert result == {
        "object": "gateway",
        "id": "generic",
        "configured_secrets": ["signing_secret"],
        "webhook_url": "http://einlass.test/webhooks/shop/generic",
    }
    stripe = await call(
        client,
        shop,
        "PUT",
        "/gateways/stripe",
        json={"secrets": {"webhook_secret": "whsec_new_stripe", "api_key": "sk_test_123"}},
    )
    assert stripe["configured_secrets"] == ["api_key", "webhook_secret"]
    listing = await call(client, shop, "GET", "/gateways")
    assert {g["id"]: g["configured_secrets"] for g in listing["data"]} == {
        "generic": ["signing_secret"],
        "novalnet": ["payment_access_key"],
        "stripe": ["api_key", "webhook_secret"],
    }
    text = json.dumps(listing) + json.dumps(
        await call(client, shop, "GET", "/audit_entries", params={"limit": 100})
    )
    for secret in (new_secret, "whsec_new_stripe", "sk_test_123", shop.novalnet_key, shop.generic_secret):
        assert secret not in text

    # The new secret is the one webhooks are checked with.
    payload = generic.payment_confirmed("pay-g1", amount=990, email="gw@example.com", product_id="prod-30")
    assert (await post_generic(client, shop, payload)).status_code == 401
    rotated = dataclasses.replace(shop, generic_secret=new_secret)
    assert (await post_generic(client, rotated, payload)).status_code == 200

    unknown = await client.put(
        f"{API}/gateways/generic",
        headers=shop.auth,
        json={"secrets": {"signing_secret": new_secret, "password": "x"}},
    )
    error = error_of(unknown, 400, "invalid_request_error", "parameter_invalid")
    assert (
        error["param"] == "secrets" and "password" in error["message"] and "x" not in error["message"].split()
    )
    missing = await client.put(
        f"{API}/gateways/stripe", headers=shop.auth, json={"secrets": {"api_key": "sk_1"}}
    )
    assert (
        error_of(missing, 400, "invalid_request_error", "parameter_invalid")["param"]
        == "secrets.webhook_secret"
    )
    error_of(
        await client.put(f"{API}/gateways/paypal", headers=shop.auth, json={"secrets": {"a": "b"}}),
        404,
        "invalid_request_error",
        "resource_missing",
    )
    listing_after = await call(client, shop, "GET", "/gateways")
    assert listing_after == listing


# --------------------------------------------------------------------------- operations and OpenAPI


async def test_health_readiness_and_metrics(client, shop):
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {**ready.json(), "status": "ok", "database": "reachable"}

    await paid_member(client, shop, "pay-metrics", "metrics@example.com")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert re.search(
        r'^einlass_webhooks_total\{gateway="generic",outcome="stored"\} [1-9]', metrics.text, re.M
    )


async def test_readyz_is_503_before_migrations(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    settings = Settings(database_url=db.url, secret_key=SECRET_KEY, run_worker_in_process=False)
    app = create_app(settings, db, run_worker=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            response = await http.get("/readyz")
            assert response.status_code == 503 and response.json()["status"] == "unavailable"
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await db.dispose()


async def test_openapi_lists_the_member_paths(client):
    response = await client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    for path, methods in {
        "/members": {"get", "post"},
        "/members/{member_id}": {"get", "post", "delete"},
        "/members/{member_id}/lock": {"post"},
        "/members/{member_id}/unlock": {"post"},
        "/members/{member_id}/password": {"post"},
        "/members/{member_id}/grants": {"get", "post"},
        "/grants/{grant_id}/revoke": {"post"},
    }.items():
        assert methods <= set(paths[path]), (path, set(paths.get(path, {})))
    assert "MemberCreate" in spec["components"]["schemas"]
    assert not any(path.startswith("/webhooks") for path in paths)
