"""Admin UI: staff login with password and TOTP, lockout, sessions, CSRF, roles and tenant scoping."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pyotp

from admin_support import csrf_token, forget_last_code, login, make_staff
from conftest import Shop, make_shop
from einlass.clock import FrozenClock
from einlass.db.engine import Database


async def _login_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/admin/login")
    assert page.status_code == 200
    return csrf_token(page.text)


async def test_login_with_password_and_code_reaches_the_merchant_dashboard(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    admin = await login(client, staff)
    assert admin.last is not None and admin.last.status_code == 200
    assert str(admin.last.url).endswith(f"/admin/m/{shop.slug}/")
    assert "Shop GmbH" in admin.last.text
    headers = admin.last.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    cookie = next(value for name, value in admin.last.request.headers.items() if name == "cookie")
    assert "einlass_admin=" in cookie


async def test_wrong_code_and_wrong_password_are_the_same_refusal(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    for password, code in ((staff.password, "000000"), ("wrong password!", staff.code())):
        token = await _login_form(client)
        answer = await client.post(
            "/admin/login",
            data={"csrf_token": token, "email": staff.email, "password": password, "code": code},
        )
        assert answer.status_code == 401
        assert "The email address, password or code is not correct." in answer.text
    page = await client.get(f"/admin/m/{shop.slug}/")
    assert page.status_code == 303 and page.headers["location"].startswith("/admin/login")


async def test_a_code_works_once(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    await login(client, staff)
    client.cookies.clear()
    token = await _login_form(client)
    again = await client.post(
        "/admin/login",
        data={"csrf_token": token, "email": staff.email, "password": staff.password, "code": staff.code()},
    )
    assert again.status_code == 401


async def test_five_failures_lock_the_account_for_fifteen_minutes(
    client: httpx.AsyncClient, db: Database, shop: Shop, clock: FrozenClock
) -> None:
    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    for _attempt in range(5):
        token = await _login_form(client)
        answer = await client.post(
            "/admin/login",
            data={"csrf_token": token, "email": staff.email, "password": "wrong password!", "code": "123456"},
        )
    assert answer.status_code == 429
    assert "locked for 15 minutes" in answer.text
    token = await _login_form(client)
    right = {"csrf_token": token, "email": staff.email, "password": staff.password, "code": staff.code()}
    assert (await client.post("/admin/login", data=right)).status_code == 429
    clock.advance(timedelta(minutes=15, seconds=1))
    await forget_last_code(db, staff)
    right["code"] = pyotp.TOTP(staff.totp_secret).at(clock.now())
    right["csrf_token"] = await _login_form(client)
    assert (await client.post("/admin/login", data=right)).status_code == 303


async def test_login_without_the_csrf_cookie_is_refused(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    answer = await client.post(
        "/admin/login",
        data={"csrf_token": "x", "email": staff.email, "password": staff.password, "code": staff.code()},
    )
    assert answer.status_code == 403


async def test_a_post_without_the_csrf_token_changes_nothing(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    admin = await login(client, staff)
    refused = await admin.post("/admin/logout", csrf=False)
    assert refused.status_code == 403
    assert "nothing was changed" in refused.text
    assert (await admin.get(f"/admin/m/{shop.slug}/")).status_code == 200
    done = await admin.post("/admin/logout")
    assert done.status_code == 303
    assert (await admin.get(f"/admin/m/{shop.slug}/")).status_code == 303


async def test_staff_reach_only_their_own_merchant(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    admin = await login(client, staff)
    foreign = await admin.get(f"/admin/m/{other.slug}/")
    unknown = await admin.get("/admin/m/nosuchshop/")
    assert foreign.status_code == unknown.status_code == 404
    assert (await admin.get("/admin/merchants")).status_code == 404


async def test_the_operator_sees_every_merchant(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    other = await make_shop(db, "other")
    operator = await make_staff(db, role="operator")
    admin = await login(client, operator)
    assert admin.last is not None and str(admin.last.url).endswith("/admin/merchants")
    assert "Shop GmbH" in admin.last.text and "Other GmbH" in admin.last.text
    assert (await admin.get(f"/admin/m/{other.slug}/")).status_code == 200


async def test_language_follows_the_browser_and_the_switch(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    german = await client.get("/admin/login", headers={"accept-language": "de-DE,de;q=0.9"})
    assert "Anmeldung Verwaltung" in german.text and 'lang="de"' in german.text
    switched = await client.get("/admin/login?lang=en", headers={"accept-language": "de"})
    assert "Admin login" in switched.text
    remembered = await client.get("/admin/login", headers={"accept-language": "de"})
    assert "Admin login" in remembered.text


async def test_static_files_are_served(client: httpx.AsyncClient) -> None:
    for name, kind in (("htmx.min.js", "javascript"), ("admin.css", "css"), ("page.css", "css")):
        answer = await client.get(f"/admin/static/{name}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"]
    assert (await client.get("/admin/static/../page.py")).status_code == 404
