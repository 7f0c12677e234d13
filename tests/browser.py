"""A real einlass server and Debian's Chromium, for the admin UI's browser tests.

Playwright (the Python package from the dev extra) drives ``/usr/bin/chromium``,
headless; no browser is downloaded. The server is ``einlass serve`` as a child
process on a SQLite file in a temporary directory, with the outbox worker
in-process; the tests set data up in-process on the same file (merchants, staff
accounts) and through the REST API (members, payments, reports).

    async with einlass_server(home) as live:       # LiveEinlass
        staff = await live.staff("admin", "shop")  # an account of its own per test
        async with chromium() as browser:
            page = await (await new_context(browser, live)).new_page()
            await log_in(page, staff)

Without Chromium or Playwright the tests are skipped, visibly; with
``EINLASS_REQUIRE_CHROMIUM=1`` they fail instead (CI installs Chromium: ``make test``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlencode

import httpx
import pyotp
import pytest

from admin_support import Staff, make_staff
from conftest import SECRET_KEY, Shop, make_shop
from einlass.db.engine import Database
from einlass.db.migrate import upgrade_async
from live_server import ServeProcess, log_tail, sqlite_url, start_serve

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

CHROMIUM_BINARY = os.environ.get("EINLASS_CHROMIUM_BINARY", "/usr/bin/chromium")
REQUIRE_CHROMIUM = os.environ.get("EINLASS_REQUIRE_CHROMIUM") == "1"
# As root without a sandbox, on a machine without internet: no first-run, sync, updates or QUIC.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The login form's labels (admin/i18n.py).
LABEL_EMAIL = "Email address"
LABEL_PASSWORD = "Password"
LABEL_CODE = "Code from your authenticator app"
BUTTON_LOG_IN = "Log in"


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE_CHROMIUM:
        pytest.fail(f"{reason}, and EINLASS_REQUIRE_CHROMIUM=1", pytrace=False)
    pytest.skip(f"{reason} (install it: `make system-packages` and `make install`)")


def require_chromium() -> str:
    """The Chromium binary, with Playwright importable; otherwise skip (or fail when required)."""
    if not os.access(CHROMIUM_BINARY, os.X_OK):
        _unavailable(f"Chromium not found at {CHROMIUM_BINARY}")
    if importlib.util.find_spec("playwright") is None:
        _unavailable("the Python package playwright is not installed")
    return CHROMIUM_BINARY


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium driven by Playwright."""
    binary = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=binary, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(
    browser: Browser, live: LiveEinlass, *, viewport: dict[str, int] | None = None, locale: str = "en-GB"
) -> BrowserContext:
    """A fresh browser profile (no cookies) pointed at the server, in English unless told."""
    context = await browser.new_context(
        base_url=live.url,
        viewport=viewport or VIEWPORT,  # type: ignore[arg-type]
        locale=locale,
        timezone_id="UTC",
        color_scheme="light",
        reduced_motion="reduce",
    )
    context.set_default_timeout(10_000)
    return context


def totp_now(staff: Staff) -> str:
    """The code of the authenticator app, now (the server runs on the real clock)."""
    return pyotp.TOTP(staff.totp_secret).now()


async def fill_login(page: Page, staff: Staff, code: str | None = None, then: str | None = None) -> None:
    """The login page, filled in by the labels a user reads, and sent; ``then``: the page to go to after."""
    await page.goto("/admin/login" + (f"?{urlencode({'next': then})}" if then else ""))
    await page.get_by_label(LABEL_EMAIL, exact=True).fill(staff.email)
    await page.get_by_label(LABEL_PASSWORD, exact=True).fill(staff.password)
    await page.get_by_label(LABEL_CODE, exact=True).fill(code if code is not None else totp_now(staff))
    await page.get_by_role("button", name=BUTTON_LOG_IN, exact=True).click()


async def log_in(page: Page, staff: Staff, then: str | None = None) -> None:
    """Log in and wait for the page after the login: ``then``, or the start page (the dashboard, or
    the operator's merchant list)."""
    await fill_login(page, staff, then=then)
    if then:
        await page.wait_for_url(lambda url: url.endswith(then))
    else:
        await page.wait_for_url(re.compile(r"/admin/(m/[^/]+/|merchants)$"))


@dataclass
class LiveEinlass:
    """A running ``einlass serve``; ``db`` is the same SQLite file, for setting data up."""

    url: str
    home: Path
    db: Database
    log: Path
    shops: dict[str, Shop] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._numbers)}"

    async def staff(self, role: str = "admin", merchant: str | None = "shop") -> Staff:
        """A new staff account (its own, so that its TOTP code is unused): admin, viewer or operator."""
        merchant_id = self.shops[merchant].merchant_id if merchant and role != "operator" else None
        email = f"{self.unique(role)}@staff.example.com"
        return await make_staff(self.db, role=role, merchant_id=merchant_id, email=email)

    def http(self) -> httpx.AsyncClient:
        """A client for einlass's REST API, webhooks and the access check."""
        return httpx.AsyncClient(base_url=self.url, timeout=10)

    async def api(self, shop: str, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http() as http:
            response = await http.request(method, f"/api/v1{path}", headers=self.shops[shop].auth, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def member(
        self, shop: str, email: str, *, password: str | None = None, areas: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A member made through the REST API (no email sent), with grants for ``areas`` without end.

        The grants start a day ago: a start in the past crosses no boundary that the worker's
        watcher would answer with another provisioning run later.
        """
        body: dict[str, Any] = {"email": email, "send_credentials": False}
        if password is not None:
            body["password"] = password
        member: dict[str, Any] = await self.api(shop, "POST", "/members", json=body)
        since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        for area in areas:
            grant = {"area": area, "starts_at": since}
            await self.api(shop, "POST", f"/members/{member['id']}/grants", json=grant)
        return member

    async def access_status(self, shop: str, area: str, email: str, password: str) -> int:
        """The access check's answer for HTTP Basic credentials: 200, 401 or 403."""
        async with self.http() as http:
            response = await http.get(f"/auth/{shop}/{area}", auth=(email, password))
        return response.status_code

    async def until_access(
        self, shop: str, area: str, email: str, password: str, expected: int, timeout: float = 5.0
    ) -> None:
        """Poll the access check until it answers ``expected`` (its cache is refreshed every 0.25 s)."""
        deadline = time.monotonic() + timeout
        while (status := await self.access_status(shop, area, email, password)) != expected:
            assert time.monotonic() < deadline, (
                f"/auth/{shop}/{area}: {status}, not {expected}, after {timeout} s"
            )
            await asyncio.sleep(0.05)

    def log_tail(self) -> str:
        return log_tail(self.log)


Seed = Callable[[Database], Awaitable[dict[str, Shop]]]


TEST_SHOPS = ("shop", "other", "door")


async def seed_shops(db: Database) -> dict[str, Shop]:
    """Merchants made by conftest.make_shop (areas premium and archive, plans, gateway secrets):
    "shop" for most tests, "other" to be kept apart from it, "door" with a push target of its own."""
    return {slug: await make_shop(db, slug) for slug in TEST_SHOPS}


@asynccontextmanager
async def einlass_server(home: Path, seed: Seed = seed_shops) -> AsyncIterator[LiveEinlass]:
    """``einlass serve`` on a SQLite file in ``home``, after ``seed`` has set up its merchants there."""
    home.mkdir(parents=True, exist_ok=True)
    db = Database(sqlite_url(home))
    serve: ServeProcess | None = None
    try:
        await upgrade_async(db)
        made = await seed(db)
        serve = start_serve(home, secret_key=SECRET_KEY, migrate=False)
        await asyncio.to_thread(serve.wait_ready)
        yield LiveEinlass(url=serve.url, home=home, db=db, log=serve.log, shops=made)
    finally:
        if serve is not None:
            serve.stop()
        await db.dispose()
