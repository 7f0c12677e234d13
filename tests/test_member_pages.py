"""Member pages /m/{merchant}/login, /logout, /account: sessions, CSRF, throttling, redirects, languages."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from datetime import timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from einlass.access import sessions
from einlass.access.i18n import LANGUAGES, MESSAGES, from_accept_language
from einlass.access.models import LoginFailure, MemberSession
from einlass.access.pages import client_address, forwarded_prefix, safe_next
from helpers import api

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a much better passphrase"
LOGIN_CSRF = "einlass_login_csrf"
SESSION = "einlass_session"


# --------------------------------------------------------------------------- helpers


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """name -> the whole Set-Cookie header."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def cookie_value(response: httpx.Response, name: str) -> str | None:
    header = set_cookies(response).get(name)
    return None if header is None else header.split("=", 1)[1].split(";", 1)[0].strip('"')


def attributes(header: str) -> dict[str, str]:
    result = {}
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        result[key.lower()] = value
    return result


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return html.unescape(match.group(1))


async def request(client: httpx.AsyncClient, method: str, url: str, **kwargs) -> httpx.Response:
    """Every request names its cookies itself; the client's jar is kept empty."""
    client.cookies.clear()
    response = await client.request(method, url, **kwargs)
    client.cookies.clear()
    return response


async def make_member(client, shop, email="m@example.com", password=PASSWORD, grant=True, **extra):
    member = await api(
        client,
        shop,
        "POST",
        "/members",
        json={"email": email, "password": password, "send_credentials": False, **extra},
    )
    if grant:
        body = grant if isinstance(grant, dict) else {"area": "premium"}
        await api(client, shop, "POST", f"/members/{member['id']}/grants", json=body)
    return member


async def login_form(client, shop, params=None, headers=None) -> tuple[str, str]:
    """The CSRF field and cookie of a fresh login form."""
    response = await request(client, "GET", f"/m/{shop.slug}/login", params=params, headers=headers)
    assert response.status_code == 200
    field, cookie = hidden(response.text, "csrf_token"), cookie_value(response, LOGIN_CSRF)
    assert cookie == field
    return field, cookie


async def login(
    client, shop, username="m@example.com", password=PASSWORD, *, next=None, headers=None, params=None
) -> httpx.Response:
    field, cookie = await login_form(client, shop, headers=headers)
    form = {"username": username, "password": password, "csrf_token": field}
    if next is not None:
        form["next"] = next
    return await request(
        client,
        "POST",
        f"/m/{shop.slug}/login",
        data=form,
        params=params,
        headers={
            **(headers or {}),
            "cookie": "; ".join(filter(None, [(headers or {}).get("cookie"), f"{LOGIN_CSRF}={cookie}"])),
        },
    )


async def logged_in(client, shop, username="m@example.com", password=PASSWORD, **kwargs) -> str:
    response = await login(client, shop, username, password, **kwargs)
    assert response.status_code == 303, response.text
    token = cookie_value(response, SESSION)
    assert token
    return token


def with_session(token: str, **headers: str) -> dict[str, str]:
    return {"cookie": f"{SESSION}={token}", **headers}


async def auth(client, shop, token: str, area="premium") -> int:
    response = await request(client, "GET", f"/auth/{shop.slug}/{area}", headers=with_session(token))
    return response.status_code


def basic(username: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def poll(client):
    await client._transport.app.state.access_cache.poll_changes()


async def account(client, shop, token: str, headers=None, **kwargs) -> httpx.Response:
    return await request(
        client, "GET", f"/m/{shop.slug}/account", headers=with_session(token, **(headers or {})), **kwargs
    )


async def change_password(client, shop, token, current=PASSWORD, new=NEW_PASSWORD, repeat=None, csrf=None):
    if csrf is None:
        csrf = hidden((await account(client, shop, token)).text, "csrf_token")
    return await request(
        client,
        "POST",
        f"/m/{shop.slug}/account",
        headers=with_session(token),
        data={
            "csrf_token": csrf,
            "current_password": current,
            "new_password": new,
            "new_password_repeat": new if repeat is None else repeat,
        },
    )


async def update_settings(client, shop, **values):
    return await api(client, shop, "POST", "/merchant", json={"settings": values})


# --------------------------------------------------------------------------- login and sessions


async def test_login_sets_the_session_cookie_and_the_forward_auth_check_accepts_it(client, shop, db):
    member = await make_member(client, shop)
    response = await login(client, shop)
    assert response.status_code == 303
    assert response.headers["location"] == "account"
    token = cookie_value(response, SESSION)
    attrs = attributes(set_cookies(response)[SESSION])
    assert attrs["path"] == "/" and "httponly" in attrs and attrs["samesite"].lower() == "lax"
    assert "secure" not in attrs and "domain" not in attrs
    assert int(attrs["max-age"]) == 30 * 24 * 3600

    check = await request(client, "GET", f"/auth/{shop.slug}/premium", headers=with_session(token))
    assert check.status_code == 200 and check.headers["x-einlass-member"] == member["id"]
    assert await auth(client, shop, token, "archive") == 403

    # Only the digest is stored.
    async with db.transaction() as session:
        [row] = (await session.scalars(select(MemberSession))).all()
    assert row.token_digest == hashlib.sha256(token.encode()).hexdigest() != token
    assert row.member_id == member["id"] and row.revoked_at is None
    assert row.expires_at - row.created_at == timedelta(days=30)


async def test_account_page_shows_who_you_are_and_your_access_per_area(client, shop, clock):
    ends = clock.now() + timedelta(days=10)
    await make_member(
        client, shop, name="Erika Muster", grant={"area": "premium", "ends_at": ends.isoformat()}
    )
    member = (await api(client, shop, "GET", "/members"))["data"][0]
    await api(
        client,
        shop,
        "POST",
        f"/members/{member['id']}/grants",
        json={
            "area": "archive",
            "starts_at": (clock.now() - timedelta(days=5)).isoformat(),
            "ends_at": (clock.now() - timedelta(days=1)).isoformat(),
        },
    )
    token = await logged_in(client, shop)
    response = await account(client, shop, token)
    assert response.status_code == 200
    page = response.text
    assert "Erika Muster" in page and "m@example.com" in page
    premium = re.search(r"<tr><th scope=\"row\">Premium</th><td>(.*?)</td><td>(.*?)</td></tr>", page)
    assert premium and premium.groups() == ("active", "March 12, 2026, 9:00\u202fAM UTC")
    archive = re.search(r"<tr><th scope=\"row\">Archive</th><td>(.*?)</td><td>(.*?)</td></tr>", page)
    assert archive and archive.groups() == ("ended", "March 1, 2026, 9:00\u202fAM UTC")
    assert 'name="current_password"' in page and 'action="logout"' in page


async def test_account_without_session_redirects_to_login(client, shop):
    response = await request(client, "GET", f"/m/{shop.slug}/account")
    assert response.status_code == 303 and response.headers["location"] == "login"
    response = await request(client, "GET", f"/m/{shop.slug}/account", params={"lang": "de"})
    assert response.headers["location"] == "login?lang=de"


async def test_pages_send_security_headers_and_accessible_html(client, shop):
    await make_member(client, shop)
    token = await logged_in(client, shop)
    for path, headers in [
        ("login", {}),
        ("logout", with_session(token)),
        ("account", with_session(token)),
        ("logout", {}),
    ]:
        response = await request(client, "GET", f"/m/{shop.slug}/{path}", headers=headers)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert csp.startswith("default-src 'self'") and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert '<html lang="en">' in page and 'name="viewport"' in page
        assert "<script" not in page and "http://" not in page and "https://" not in page
        # Every input but the hidden ones has a label.
        for field in re.findall(r'<input id="([^"]+)"', page):
            assert f'<label for="{field}">' in page
        # The one inline style is allowed by its hash.
        style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp


async def test_locked_or_unknown_members_get_the_same_answer_as_a_wrong_password(client, shop, monkeypatch):
    checks = []
    real = sessions.verify_password

    def counting(password, password_hash):
        checks.append(password_hash)
        return real(password, password_hash)

    monkeypatch.setattr(sessions, "verify_password", counting)
    member = await make_member(client, shop)
    wrong = await login(client, shop, password="wrong password!")
    unknown = await login(client, shop, username="nobody@example.com")
    await api(client, shop, "POST", f"/members/{member['id']}/lock", json={"reason": "fraud"})
    locked = await login(client, shop)
    messages = set()
    for response in (wrong, unknown, locked):
        assert response.status_code == 401
        assert SESSION not in set_cookies(response)
        messages.add(
            re.search(r'<p class="error" role="alert" id="form-error">(.*?)</p>', response.text).group(1)
        )
    assert messages == {"The username or password is not correct."}
    # Each of the three cost one argon2 check, the unknown user's against a dummy hash.
    assert len(checks) == 3 and all(h.startswith("$argon2id$") for h in checks)


async def test_locking_a_member_ends_their_pages_session(client, shop):
    member = await make_member(client, shop)
    token = await logged_in(client, shop)
    await api(client, shop, "POST", f"/members/{member['id']}/lock")
    assert (await account(client, shop, token)).status_code == 303


async def test_sessions_expire_after_the_merchant_setting(client, shop, clock):
    await make_member(client, shop)
    await update_settings(client, shop, session_lifetime_days=2)
    token = await logged_in(client, shop)
    clock.advance(timedelta(days=2) - timedelta(seconds=1))
    assert (await account(client, shop, token)).status_code == 200
    assert await auth(client, shop, token) == 200
    clock.advance(timedelta(seconds=1))
    assert (await account(client, shop, token)).status_code == 303
    assert await auth(client, shop, token) == 401


async def test_logging_in_again_ends_the_previous_session_of_that_browser(client, shop):
    await make_member(client, shop)
    first = await logged_in(client, shop)
    second = await logged_in(client, shop, headers=with_session(first))
    await poll(client)
    assert await auth(client, shop, first) == 401
    assert await auth(client, shop, second) == 200


async def test_a_logged_in_member_sees_the_login_form_with_a_link_to_the_account(client, shop):
    await make_member(client, shop)
    token = await logged_in(client, shop)
    response = await request(client, "GET", f"/m/{shop.slug}/login", headers=with_session(token))
    assert response.status_code == 200
    assert "You are logged in as m@example.com." in response.text and 'href="account"' in response.text


# --------------------------------------------------------------------------- logout


async def test_logout_revokes_the_session_in_every_process(client, shop, db):
    await make_member(client, shop)
    token = await logged_in(client, shop)
    assert await auth(client, shop, token) == 200

    confirm = await request(client, "GET", f"/m/{shop.slug}/logout", headers=with_session(token))
    assert confirm.status_code == 200 and "Do you want to log out?" in confirm.text
    assert 'action="logout"' in confirm.text
    response = await request(
        client,
        "POST",
        f"/m/{shop.slug}/logout",
        headers=with_session(token),
        data={"csrf_token": hidden(confirm.text, "csrf_token")},
    )
    assert response.status_code == 200 and "You have been logged out." in response.text
    cleared = attributes(set_cookies(response)[SESSION])
    assert cleared["max-age"] == "0" and cleared["path"] == "/"

    await poll(client)
    assert await auth(client, shop, token) == 401
    assert (await account(client, shop, token)).status_code == 303
    async with db.transaction() as session:
        [row] = (await session.scalars(select(MemberSession))).all()
    assert row.revoked_at is not None


async def test_logout_without_a_session_just_clears_the_cookie(client, shop):
    response = await request(client, "GET", f"/m/{shop.slug}/logout")
    assert response.status_code == 200 and "You are not logged in." in response.text
    response = await request(
        client, "POST", f"/m/{shop.slug}/logout", headers={"cookie": f"{SESSION}=stale-token-1234567890abc"}
    )
    assert response.status_code == 200 and SESSION in set_cookies(response)


# --------------------------------------------------------------------------- CSRF


async def test_login_posts_without_a_valid_csrf_token_are_refused(client, shop, clock):
    await make_member(client, shop)
    field, cookie = await login_form(client, shop)
    other_field, _ = await login_form(client, shop)
    forged = field.rsplit(".", 1)[0] + "." + "0" * 64
    url = f"/m/{shop.slug}/login"
    credentials = {"username": "m@example.com", "password": PASSWORD}
    for form, cookies in [
        (credentials, f"{LOGIN_CSRF}={cookie}"),  # no field
        ({**credentials, "csrf_token": field}, ""),  # no cookie
        ({**credentials, "csrf_token": other_field}, f"{LOGIN_CSRF}={cookie}"),  # not the cookie's
        ({**credentials, "csrf_token": forged}, f"{LOGIN_CSRF}={forged}"),  # not signed by us
        ({**credentials, "csrf_token": "x"}, f"{LOGIN_CSRF}=x"),
    ]:
        response = await request(client, "POST", url, data=form, headers={"cookie": cookies})
        assert response.status_code == 403, form
        assert "nothing was changed" in response.text
        assert SESSION not in set_cookies(response)
        # The answer brings a usable form again.
        assert login_csrf_pair_is_valid(response)
    # JSON or a multipart form is no login form either.
    response = await request(
        client,
        "POST",
        url,
        json={**credentials, "csrf_token": field},
        headers={"cookie": f"{LOGIN_CSRF}={cookie}"},
    )
    assert response.status_code == 403
    # An old form has expired.
    clock.advance(timedelta(hours=13))
    response = await request(
        client,
        "POST",
        url,
        data={**credentials, "csrf_token": field},
        headers={"cookie": f"{LOGIN_CSRF}={cookie}"},
    )
    assert response.status_code == 403


def login_csrf_pair_is_valid(response: httpx.Response) -> bool:
    field = hidden(response.text, "csrf_token")
    cookie = cookie_value(response, LOGIN_CSRF)
    return cookie == field and sessions.login_csrf_valid("test-secret-key-for-einlass", field)


async def test_logged_in_posts_without_the_session_csrf_token_are_refused(client, shop):
    await make_member(client, shop)
    token = await logged_in(client, shop)
    other = await logged_in(client, shop)
    other_csrf = hidden((await account(client, shop, other)).text, "csrf_token")

    for data in ({}, {"csrf_token": ""}, {"csrf_token": other_csrf}, {"csrf_token": "\u00ff\U0001f600"}):
        response = await request(
            client, "POST", f"/m/{shop.slug}/logout", headers=with_session(token), data=data
        )
        assert response.status_code == 403 and "nothing was changed" in response.text
        assert SESSION not in set_cookies(response)
        response = await change_password(client, shop, token, csrf=data.get("csrf_token", ""))
        assert response.status_code == 403

    await poll(client)
    assert await auth(client, shop, token) == 200
    assert (await account(client, shop, token)).status_code == 200
    assert (
        await request(client, "GET", f"/auth/{shop.slug}/premium", headers=basic("m@example.com", PASSWORD))
    ).status_code == 200


async def test_password_change_without_a_session_is_refused(client, shop):
    response = await request(client, "POST", f"/m/{shop.slug}/account", data={"csrf_token": "abc"})
    assert response.status_code == 403 and "Please log in again" in response.text


# --------------------------------------------------------------------------- rate limiting


async def test_failed_logins_are_limited_per_username_even_for_the_right_password(client, shop, clock, db):
    await make_member(client, shop)
    for _ in range(5):
        assert (await login(client, shop, password="wrong password!")).status_code == 401
        clock.advance(timedelta(seconds=10))
    response = await login(client, shop)
    assert response.status_code == 429
    assert SESSION not in set_cookies(response)
    assert "Too many failed login attempts" in response.text
    # The oldest of the five failures leaves the window 15 minutes after it happened.
    assert int(response.headers["retry-after"]) == 15 * 60 - 50
    assert "in 15 minutes" in response.text
    # The table holds keyed digests, neither the username nor the address.
    async with db.transaction() as session:
        keys = set((await session.scalars(select(LoginFailure.key))).all())
    assert len(keys) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", key) for key in keys)
    assert hashlib.sha256(b"m@example.com").hexdigest() not in keys

    clock.advance(timedelta(minutes=15) - timedelta(seconds=50) - timedelta(seconds=1))
    assert (await login(client, shop)).status_code == 429
    clock.advance(timedelta(seconds=1))
    assert (await login(client, shop)).status_code == 303


async def test_a_refused_attempt_checks_no_password_and_counts_for_nothing(client, shop, clock, monkeypatch):
    await make_member(client, shop)
    for _ in range(5):
        await login(client, shop, password="wrong password!")
    checks = []
    monkeypatch.setattr(sessions, "verify_password", lambda *args: checks.append(1) or False)
    for _ in range(3):
        assert (await login(client, shop)).status_code == 429
    assert checks == []
    monkeypatch.undo()
    clock.advance(timedelta(minutes=15))
    assert (await login(client, shop)).status_code == 303


async def test_a_successful_login_forgets_the_usernames_failures(client, shop):
    await make_member(client, shop)
    for _ in range(4):
        assert (await login(client, shop, password="wrong password!")).status_code == 401
    assert (await login(client, shop)).status_code == 303
    for _ in range(4):
        assert (await login(client, shop, password="wrong password!")).status_code == 401
    assert (await login(client, shop)).status_code == 303


async def test_failed_logins_are_limited_per_client_address(client, shop, clock):
    await make_member(client, shop)
    await update_settings(client, shop, login_failures_per_address=3)
    for n in range(3):
        assert (await login(client, shop, username=f"guess{n}@example.com")).status_code == 401
    # Another username from the same address: refused; X-Forwarded-For from an untrusted peer changes nothing.
    assert (await login(client, shop)).status_code == 429
    assert (await login(client, shop, headers={"x-forwarded-for": "198.51.100.9"})).status_code == 429

    # Behind a trusted proxy, the hop before it counts.
    await update_settings(client, shop, trusted_proxies=["127.0.0.0/8"])
    visitor = {"x-forwarded-for": "203.0.113.7"}
    for n in range(3):
        assert (await login(client, shop, username=f"x{n}@example.com", headers=visitor)).status_code == 401
    assert (await login(client, shop, headers=visitor)).status_code == 429
    # What the visitor wrote into the header is not believed: only the proxy's entry is.
    spoofed = {"x-forwarded-for": "198.51.100.1, 203.0.113.7"}
    assert (await login(client, shop, headers=spoofed)).status_code == 429
    assert (await login(client, shop, headers={"x-forwarded-for": "203.0.113.8"})).status_code == 303


async def test_wrong_current_passwords_count_as_failed_logins(client, shop):
    await make_member(client, shop)
    token = await logged_in(client, shop)
    for _ in range(5):
        assert (await change_password(client, shop, token, current="wrong password!")).status_code == 400
    response = await change_password(client, shop, token)
    assert response.status_code == 429 and "retry-after" in response.headers
    assert (await login(client, shop)).status_code == 429


# --------------------------------------------------------------------------- next


@pytest.mark.parametrize(
    ("next_url", "location"),
    [
        ("/premium/article?id=7", "/premium/article?id=7"),
        ("/", "/"),
        ("//evil.example/x", "account"),
        ("https://evil.example/", "account"),
        ("http://evil.example/", "account"),
        ("javascript:alert(1)", "account"),
        ("/\\evil.example", "account"),
        ("\\\\evil.example", "account"),
        ("/\t/evil.example", "account"),
        ("premium", "account"),
        ("https://shop.example/premium/", "account"),  # allowed only once the setting names it
        ("", "account"),
        ("/" + "a" * 3000, "account"),
    ],
)
async def test_next_allows_only_relative_paths(client, shop, next_url, location):
    await make_member(client, shop)
    response = await login(client, shop, next=next_url)
    assert response.status_code == 303
    assert response.headers["location"] == location


@pytest.mark.parametrize(
    ("next_url", "allowed"),
    [
        ("https://shop.example/premium/", True),
        ("http://shop.example/", True),
        ("https://shop.example:443/x", True),
        ("https://cdn.shop.example:8443/x", True),
        ("https://cdn.shop.example/x", False),
        ("https://shop.example.evil.example/", False),
        ("https://user@shop.example/", False),
        ("https://evil.example#@shop.example/", False),
        ("ftp://shop.example/", False),
        ("https://shop.example:99999/", False),
    ],
)
async def test_next_allows_the_merchants_allowed_hosts(client, shop, next_url, allowed):
    await make_member(client, shop)
    await update_settings(client, shop, allowed_hosts=["shop.example", "cdn.shop.example:8443"])
    response = await login(client, shop, next=next_url)
    assert response.headers["location"] == (next_url if allowed else "account")


async def test_the_login_form_carries_a_safe_next_and_drops_an_unsafe_one(client, shop):
    response = await request(client, "GET", f"/m/{shop.slug}/login", params={"next": "/premium/a?b=1&c=2"})
    assert hidden(response.text, "next") == "/premium/a?b=1&c=2"
    response = await request(client, "GET", f"/m/{shop.slug}/login", params={"next": "https://evil.example/"})
    assert 'name="next"' not in response.text


def test_safe_next_rules():
    hosts = frozenset({"shop.example"})
    assert safe_next("/a/b", frozenset()) == "/a/b"
    assert safe_next("https://shop.example/a", hosts) == "https://shop.example/a"
    assert safe_next("HTTPS://SHOP.EXAMPLE/a", hosts) == "HTTPS://SHOP.EXAMPLE/a"
    for bad in [
        "//x",
        "/\\x",
        "\\/x",
        "https:/\\x",
        "/\x00x",
        "/\nx",
        " /x",
        "/x\u0085",
        "data:text/html,x",
        None,
    ]:
        assert safe_next(bad, hosts) is None, bad


# --------------------------------------------------------------------------- password change


async def test_password_change_needs_the_current_password_and_ends_other_sessions(client, shop, db):
    await make_member(client, shop)
    here = await logged_in(client, shop)
    elsewhere = await logged_in(client, shop)
    assert await auth(client, shop, elsewhere) == 200

    wrong = await change_password(client, shop, here, current="not my password")
    assert wrong.status_code == 400 and "The current password is not correct." in wrong.text
    mismatch = await change_password(client, shop, here, repeat="something else entirely")
    assert mismatch.status_code == 400 and "are not the same" in mismatch.text
    short = await change_password(client, shop, here, new="short")
    assert short.status_code == 400 and "at least 10 characters" in short.text
    await poll(client)
    assert await auth(client, shop, elsewhere) == 200

    changed = await change_password(client, shop, here)
    assert changed.status_code == 200 and "Your password has been changed." in changed.text
    await poll(client)
    assert await auth(client, shop, elsewhere) == 401
    assert (await account(client, shop, elsewhere)).status_code == 303
    assert await auth(client, shop, here) == 200
    assert (await account(client, shop, here)).status_code == 200

    assert (await login(client, shop)).status_code == 401
    assert (await login(client, shop, password=NEW_PASSWORD)).status_code == 303
    basic_new = await request(
        client, "GET", f"/auth/{shop.slug}/premium", headers=basic("m@example.com", NEW_PASSWORD)
    )
    assert basic_new.status_code == 200
    basic_old = await request(
        client, "GET", f"/auth/{shop.slug}/premium", headers=basic("m@example.com", PASSWORD)
    )
    assert basic_old.status_code == 401


# --------------------------------------------------------------------------- languages


def title(response: httpx.Response) -> str:
    return re.search(r"<h1>(.*?)</h1>", response.text).group(1)


async def test_language_from_accept_language_and_lang_parameter(client, shop):
    url = f"/m/{shop.slug}/login"
    english = await request(client, "GET", url)
    assert '<html lang="en">' in english.text and title(english) == "Log in"
    german = await request(client, "GET", url, headers={"accept-language": "de-DE,de;q=0.9,en;q=0.8"})
    assert '<html lang="de">' in german.text and title(german) == "Anmelden"
    assert "Benutzername" in german.text and 'action="login"' in german.text
    switched = await request(client, "GET", url, params={"lang": "en"}, headers={"accept-language": "de"})
    assert title(switched) == "Log in"
    chosen = await request(client, "GET", url, params={"lang": "de", "next": "/premium/"})
    assert title(chosen) == "Anmelden" and 'action="login?lang=de"' in chosen.text
    # The switcher keeps next.
    assert 'href="login?lang=en&amp;next=%2Fpremium%2F"' in chosen.text
    ignored = await request(
        client, "GET", url, params={"lang": "fr"}, headers={"accept-language": "fr, de;q=0.5"}
    )
    assert title(ignored) == "Anmelden"


async def test_german_errors_and_the_members_own_language(client, shop):
    await make_member(client, shop, locale="de")
    wrong = await login(client, shop, password="falsches passwort", headers={"accept-language": "de"})
    assert "Benutzername oder Passwort ist nicht korrekt." in wrong.text
    token = await logged_in(client, shop, headers={"accept-language": "en"})
    page = await account(client, shop, token, headers={"accept-language": "en"})
    assert '<html lang="de">' in page.text and title(page) == "Ihr Konto"
    assert "unbefristet" in page.text and "Passwort ändern" in page.text
    english = await account(client, shop, token, params={"lang": "en"})
    assert title(english) == "Your account" and "no end date" in english.text
    changed = await change_password(client, shop, token)
    assert "Ihr Passwort wurde geändert." in changed.text


async def test_german_dates(client, shop, clock):
    ends = clock.now() + timedelta(days=30)
    await make_member(client, shop, locale="de", grant={"area": "premium", "ends_at": ends.isoformat()})
    token = await logged_in(client, shop)
    assert "1. April 2026, 09:00 UTC" in (await account(client, shop, token)).text


def test_every_message_exists_in_both_languages():
    for key, texts in MESSAGES.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(text.strip() for text in texts.values()), key


def test_accept_language_parsing():
    assert from_accept_language("de-AT") == "de"
    assert from_accept_language("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5") == "en"
    assert from_accept_language("de;q=0, en;q=0.1") == "en"
    assert from_accept_language("de;q=bogus") is None
    assert from_accept_language("") is None and from_accept_language(None) is None


# --------------------------------------------------------------------------- cookies and proxies


async def test_cookie_attributes_follow_the_settings_and_the_proxy(client, shop):
    await make_member(client, shop)
    await update_settings(client, shop, cookie_path="/members/", cookie_domain="shop.example")
    proxied = {"x-forwarded-proto": "https", "x-forwarded-prefix": "/members"}
    form = await request(client, "GET", f"/m/{shop.slug}/login", headers=proxied)
    assert 'action="/members/m/shop/login"' in form.text
    csrf_cookie = attributes(set_cookies(form)[LOGIN_CSRF])
    assert csrf_cookie["path"] == "/members/" and "secure" in csrf_cookie and "httponly" in csrf_cookie

    response = await login(client, shop, headers=proxied)
    assert response.status_code == 303
    assert response.headers["location"] == "/members/m/shop/account"
    attrs = attributes(set_cookies(response)[SESSION])
    assert attrs["path"] == "/members/" and attrs["domain"] == "shop.example"
    assert "secure" in attrs and "httponly" in attrs and attrs["samesite"].lower() == "lax"

    token = cookie_value(response, SESSION)
    page = await account(client, shop, token, headers=proxied)
    assert 'action="/members/m/shop/logout"' in page.text
    logout = await request(
        client,
        "POST",
        f"/m/{shop.slug}/logout",
        headers=with_session(token, **proxied),
        data={"csrf_token": hidden(page.text, "csrf_token")},
    )
    cleared = attributes(set_cookies(logout)[SESSION])
    assert (
        cleared["path"] == "/members/" and cleared["domain"] == "shop.example" and cleared["max-age"] == "0"
    )


async def test_plain_http_gets_no_secure_flag_and_a_bad_prefix_is_ignored(client, shop):
    await make_member(client, shop)
    response = await login(
        client, shop, headers={"x-forwarded-proto": "http", "x-forwarded-prefix": "//evil.example"}
    )
    assert response.headers["location"] == "account"
    assert "secure" not in attributes(set_cookies(response)[SESSION])


def test_forwarded_prefix_and_client_address_rules():
    assert forwarded_prefix("/members/") == "/members"
    assert forwarded_prefix("/a/b") == "/a/b"
    for bad in ["//evil", "members", "/a/../b", "/a b", "/a\n/b", "https://x/", "", None, "/a,/b"]:
        assert forwarded_prefix(bad) == "", bad
    import ipaddress

    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_address("192.0.2.1", ["203.0.113.5"], proxies) == "192.0.2.1"
    assert client_address("10.0.0.2", ["203.0.113.5"], proxies) == "203.0.113.5"
    assert client_address("10.0.0.2", ["1.2.3.4, 203.0.113.5, 10.0.0.9"], proxies) == "203.0.113.5"
    assert client_address("10.0.0.2", ["garbage"], proxies) == "10.0.0.2"
    assert client_address("10.0.0.2", [], proxies) == "10.0.0.2"
    assert client_address(None, ["203.0.113.5"], proxies) == "unknown"


@pytest.mark.parametrize(
    ("settings_body", "param"),
    [
        ({"cookie_path": "members"}, "settings.cookie_path"),
        ({"cookie_path": "/a;b"}, "settings.cookie_path"),
        ({"cookie_path": "/a\n"}, "settings.cookie_path"),
        ({"cookie_domain": "Evil Example"}, "settings.cookie_domain"),
        ({"allowed_hosts": "shop.example"}, "settings.allowed_hosts"),
        ({"allowed_hosts": ["https://shop.example"]}, "settings.allowed_hosts"),
        ({"trusted_proxies": ["not-an-ip"]}, "settings.trusted_proxies"),
        ({"session_lifetime_days": 0}, "settings.session_lifetime_days"),
        ({"session_lifetime_days": True}, "settings.session_lifetime_days"),
        ({"login_failures_per_username": "5"}, "settings.login_failures_per_username"),
    ],
)
async def test_member_page_settings_are_validated(client, shop, settings_body, param):
    response = await client.post("/api/v1/merchant", headers=shop.auth, json={"settings": settings_body})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


# --------------------------------------------------------------------------- hostile input


async def test_unknown_merchants_get_a_404_page(client, shop):
    for path in ["/m/nobody/login", "/m/nobody/account", "/m/%00/login", "/m/Shop/login"]:
        response = await request(client, "GET", path)
        assert response.status_code == 404 and "This page does not exist." in response.text
    response = await request(client, "POST", "/m/nobody/login", data={"username": "a", "password": "b"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "cookie",
    [
        "einlass_session=" + "x" * 4000,
        "einlass_session=\x7f\x01garbage",
        "einlass_session=" + "A" * 43,
        'einlass_session="quoted\\"value"',
        "einlass_session=a=b=c; einlass_login_csrf=1.2.3",
        "einlass_login_csrf=" + "9" * 20 + "." + "x" * 500,
        "einlass_session=%00%00; einlass_login_csrf=%ff",
        "=;;;einlass_session",
    ],
)
async def test_garbage_cookies_never_cause_a_5xx(client, shop, cookie):
    await make_member(client, shop)
    headers = {"cookie": cookie}
    for method, path, data in [
        ("GET", "login", None),
        ("GET", "logout", None),
        ("GET", "account", None),
        ("POST", "login", {"username": "m@example.com", "password": PASSWORD, "csrf_token": "1.2.3"}),
        ("POST", "logout", {"csrf_token": "x"}),
        ("POST", "account", {"csrf_token": "x", "current_password": PASSWORD}),
    ]:
        response = await request(client, method, f"/m/{shop.slug}/{path}", headers=headers, data=data)
        assert response.status_code < 500, (method, path)


async def test_hostile_forms_never_cause_a_5xx(client, shop):
    await make_member(client, shop)
    field, cookie = await login_form(client, shop)
    headers = {"cookie": f"{LOGIN_CSRF}={cookie}"}
    url = f"/m/{shop.slug}/login"
    for body in [
        {"username": "m@example.com\x00", "password": PASSWORD},
        {"username": "a" * 5000, "password": PASSWORD},
        {"username": "m@example.com", "password": PASSWORD + "x" * 300},
        {"username": "\u00ff\U0001f600", "password": "\u202e\ufeff"},
    ]:
        response = await request(client, "POST", url, data={**body, "csrf_token": field}, headers=headers)
        assert response.status_code in (400, 401), body
    body = {"username": "m@example.com", "password": PASSWORD, "next": "/\x00", "csrf_token": field}
    response = await request(client, "POST", url, data=body, headers=headers)
    assert response.status_code == 303 and response.headers["location"] == "account"
    too_big = await request(
        client,
        "POST",
        url,
        content=b"a=" + b"x" * 20000,
        headers={**headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert too_big.status_code == 413
    broken = await request(
        client,
        "POST",
        url,
        content=b"%%%&&&==\xff\xfe",
        headers={**headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert broken.status_code == 403


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cookie=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=";"), max_size=200
    ),
    path=st.sampled_from(["login", "logout", "account"]),
    method=st.sampled_from(["GET", "POST"]),
    field=st.text(max_size=100),
)
async def test_random_cookies_and_fields_never_get_a_5xx(client, shop, cookie, path, method, field):
    headers = {"cookie": f"{SESSION}={cookie}; {LOGIN_CSRF}={cookie}"}
    data = {"csrf_token": field, "username": field, "password": field} if method == "POST" else None
    response = await request(client, method, f"/m/{shop.slug}/{path}", headers=headers, data=data)
    assert response.status_code < 500
