"""The admin UI in a real browser: Debian's Chromium, driven by Playwright, against ``einlass serve``.

One server (SQLite, worker in-process) and one browser per module; every test has
a fresh browser profile and a staff account of its own (a TOTP code is accepted
once per account and 30-second step). Elements are found the way a user (or a
screen reader) finds them: by label, by role and name.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import pytest

from browser import (
    PHONE,
    LiveEinlass,
    chromium,
    einlass_server,
    fill_login,
    log_in,
    new_context,
    require_chromium,
    totp_now,
)
from live_server import show

try:
    from playwright.async_api import expect
except ImportError:  # the `live` fixture skips every test (or fails them with EINLASS_REQUIRE_CHROMIUM=1)
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

# One server and one Chromium for the module: under xdist all its tests go to one worker (--dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
async def started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LiveEinlass, Browser]]:
    """The server and the browser, started side by side (each takes seconds)."""
    require_chromium()  # skip before spending seconds on the server
    async with AsyncExitStack() as stack:
        results = await asyncio.gather(
            stack.enter_async_context(einlass_server(tmp_path_factory.mktemp("admin-browser"))),
            stack.enter_async_context(chromium()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        server, browser = results
        failed_before = request.session.testsfailed
        yield server, browser
        if request.session.testsfailed > failed_before:
            show(request, f"einlass serve log ({server.log}), last lines", server.log_tail())


@pytest.fixture(scope="module")
def live(started: tuple[LiveEinlass, Browser]) -> LiveEinlass:
    return started[0]


@pytest.fixture(scope="module")
def browser(started: tuple[LiveEinlass, Browser]) -> Browser:
    return started[1]


@pytest.fixture
async def context(browser: Browser, live: LiveEinlass) -> AsyncIterator[BrowserContext]:
    fresh = await new_context(browser, live)
    yield fresh
    await fresh.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


def _wrong(code: str) -> str:
    return f"{(int(code) + 500_000) % 1_000_000:06d}"


# Login ---------------------------------------------------------------------------------------------


async def test_login_with_totp_reaches_the_dashboard_and_a_wrong_code_is_refused(
    live: LiveEinlass, page: Page
) -> None:
    staff = await live.staff("admin", "shop")

    await fill_login(page, staff, code=_wrong(totp_now(staff)))
    await expect(page.get_by_role("alert")).to_have_text(
        "The email address, password or code is not correct."
    )
    await expect(page).to_have_url(re.compile(r"/admin/login$"))
    await expect(page.get_by_label("Email address", exact=True)).to_have_value(staff.email)

    await log_in(page, staff)
    await expect(page).to_have_url(f"{live.url}/admin/m/shop/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    await expect(page.get_by_text(f"Signed in as {staff.email}")).to_be_visible()
    await expect(
        page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Members")
    ).to_be_visible()

    # German on request, and remembered on the next page.
    await page.get_by_role("navigation", name="Language").get_by_role("link", name="Deutsch").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Übersicht")
    await page.get_by_role("navigation", name="Hauptmenü").get_by_role("link", name="Mitglieder").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Mitglieder")


async def test_logged_out_visitor_is_sent_to_the_login_page(live: LiveEinlass, page: Page) -> None:
    await page.goto("/admin/m/shop/?lang=en")
    await expect(page).to_have_url(re.compile(r"/admin/login\?next=%2Fadmin%2Fm%2Fshop%2F%3Flang%3Den$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Admin login")


# Keyboard and phone --------------------------------------------------------------------------------


async def test_first_tab_focuses_skip_to_content(live: LiveEinlass, page: Page) -> None:
    staff = await live.staff("admin", "shop")
    await log_in(page, staff)
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"#main$"))


async def _page_widths(browser: Browser, live: LiveEinlass, paths: list[str]) -> dict[str, int]:
    """How wide each page is, in CSS pixels, on a phone-sized screen (the document's scroll width)."""
    staff = await live.staff("admin", "shop")
    context = await new_context(browser, live, viewport=PHONE)
    try:
        page = await context.new_page()
        await log_in(page, staff)
        widths = {}
        for path in paths:
            answer = await page.goto(path)
            assert answer is not None and answer.status == 200, path
            widths[path] = await page.evaluate("document.documentElement.scrollWidth")
        return widths
    finally:
        await context.close()


async def test_dashboard_and_members_list_fit_a_phone(browser: Browser, live: LiveEinlass) -> None:
    await live.member("shop", f"{live.unique('phone')}@example.com", areas=("premium",))
    paths = ["/admin/m/shop/", "/admin/m/shop/?lang=de", "/admin/m/shop/members"]
    widths = await _page_widths(browser, live, paths)
    assert widths == dict.fromkeys(paths, PHONE["width"]), f"wider than a {PHONE['width']} px phone: {widths}"


async def test_member_page_and_failed_jobs_fit_a_phone(browser: Browser, live: LiveEinlass) -> None:
    member = await live.member("shop", f"maximilian.mustermann-{live.unique('long')}@example.com")
    await live.api("shop", "POST", f"/members/{member['id']}/grants", json={"area": "premium", "note": "x"})
    paths = [f"/admin/m/shop/members/{member['id']}", "/admin/m/shop/jobs?lang=de"]
    widths = await _page_widths(browser, live, paths)
    assert widths == dict.fromkeys(paths, PHONE["width"]), f"wider than a {PHONE['width']} px phone: {widths}"


# Members -------------------------------------------------------------------------------------------

MEMBER_PASSWORD = "member password 123"


async def test_creating_a_member_from_the_members_list(live: LiveEinlass, page: Page) -> None:
    email = f"{live.unique('new')}@example.com"
    staff = await live.staff("admin", "shop")
    await log_in(page, staff)

    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Members").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    await page.get_by_role("link", name="New member", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("New member")
    await page.get_by_label("Email address", exact=True).fill(email)
    await page.get_by_label("Name", exact=True).fill("Erika Mustermann")
    await page.get_by_label("Language of emails").select_option(label="German")
    # Without the email, the password is shown once on the next page.
    await page.get_by_label("Email the credentials to the member").uncheck()
    await page.get_by_role("button", name="Create member", exact=True).click()

    await expect(page.get_by_role("status")).to_contain_text(
        f"The password of {email}, shown only this once:"
    )
    password = (await page.locator("code.secret").inner_text()).strip()
    await page.get_by_role("link", name="Open the member's page").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(email)
    profile = page.get_by_role("region", name="Profile")
    await expect(profile).to_contain_text("Erika Mustermann")
    await expect(page.locator("#md-status")).to_contain_text("active")
    # The password shown works at the door: a known member without access (403, not 401).
    assert await live.access_status("shop", "premium", email, password) == 403

    # And the list finds the new member as one types.
    await page.get_by_role("link", name="Back to the members").click()
    await page.get_by_role("searchbox", name="Search").fill(email.split("@")[0])
    await expect(page.get_by_role("link", name=email, exact=True)).to_be_visible()


async def test_locking_a_member_shows_locked_and_closes_the_door(live: LiveEinlass, page: Page) -> None:
    email = f"{live.unique('lockme')}@example.com"
    member = await live.member("shop", email, password=MEMBER_PASSWORD, areas=("premium",))
    await live.until_access("shop", "premium", email, MEMBER_PASSWORD, 200)
    staff = await live.staff("admin", "shop")
    await log_in(page, staff, then=f"/admin/m/shop/members/{member['id']}")

    status = page.locator("#md-status")
    await expect(status).to_contain_text("active")
    await page.get_by_label("Reason for locking (optional)").fill("card reported stolen")
    await page.get_by_role("button", name="Lock member", exact=True).click()

    await expect(page.get_by_role("status")).to_have_text("The member is locked.")
    await expect(status).to_contain_text("locked")
    await expect(status).to_contain_text("Reason: card reported stolen")
    await expect(page.get_by_role("button", name="Unlock member", exact=True)).to_be_visible()
    await live.until_access("shop", "premium", email, MEMBER_PASSWORD, 403)


async def test_a_grant_by_hand_opens_the_area(live: LiveEinlass, page: Page) -> None:
    email = f"{live.unique('grant')}@example.com"
    member = await live.member("shop", email, password=MEMBER_PASSWORD)
    assert await live.access_status("shop", "premium", email, MEMBER_PASSWORD) == 403
    staff = await live.staff("admin", "shop")
    await log_in(page, staff, then=f"/admin/m/shop/members/{member['id']}")

    access = page.get_by_role("region", name="Access")
    await access.get_by_text("Grant access by hand", exact=True).click()
    await access.get_by_role("combobox", name="Area").select_option(label="Premium")
    await access.get_by_role("textbox", name="Note (optional)").fill("goodwill after an outage")
    await access.get_by_role("button", name="Grant access", exact=True).click()

    await expect(page.get_by_role("status")).to_have_text("Access to Premium is granted.")
    premium = (
        page.get_by_role("table", name="Access", exact=True).get_by_role("row").filter(has_text="Premium")
    )
    await expect(premium).to_contain_text("yes")
    await expect(premium).to_contain_text("no end")
    timeline = page.get_by_role("table", name="Access timeline", exact=True)
    await expect(timeline.get_by_role("row").filter(has_text="goodwill after an outage")).to_contain_text(
        "by hand"
    )
    await live.until_access("shop", "premium", email, MEMBER_PASSWORD, 200)


# Security: CSRF and tenants ------------------------------------------------------------------------


async def test_a_post_without_the_csrf_token_is_refused(live: LiveEinlass, page: Page) -> None:
    member = await live.member("shop", f"{live.unique('csrf')}@example.com")
    staff = await live.staff("admin", "shop")
    await log_in(page, staff, then=f"/admin/m/shop/members/{member['id']}")
    lock_url = f"/admin/m/shop/members/{member['id']}/lock"

    # The browser's session cookie goes along; only the token is missing.
    refused = await page.request.post(lock_url, form={"reason": "forged"}, max_redirects=0)
    assert refused.status == 403
    assert "nothing was changed" in await refused.text()
    assert (await live.api("shop", "GET", f"/members/{member['id']}"))["status"] == "active"
    await page.reload()
    await expect(page.locator("#md-status")).to_contain_text("active")

    # The same post with the page's token is what the lock button sends, and it works.
    token = await page.locator('input[name="csrf_token"]').first.input_value()
    accepted = await page.request.post(
        lock_url, form={"reason": "real", "csrf_token": token}, max_redirects=0
    )
    assert accepted.status == 303
    assert (await live.api("shop", "GET", f"/members/{member['id']}"))["status"] == "locked"


async def test_staff_cannot_reach_another_merchants_member(live: LiveEinlass, page: Page) -> None:
    own = await live.member("shop", f"{live.unique('own')}@example.com")
    foreign_email = f"{live.unique('foreign')}@example.com"
    foreign = await live.member("other", foreign_email)
    staff = await live.staff("admin", "shop")
    await log_in(page, staff)

    shown = await page.goto(f"/admin/m/shop/members/{own['id']}")
    assert shown is not None and shown.status == 200
    await expect(page.get_by_role("heading", level=1)).not_to_have_text("Not found")

    for path in (f"/admin/m/shop/members/{foreign['id']}", f"/admin/m/other/members/{foreign['id']}"):
        answer = await page.goto(path)
        assert answer is not None and answer.status == 404, path
        await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        await expect(page.get_by_role("alert")).to_have_text(
            "This page does not exist, or you may not see it."
        )
        await expect(page.get_by_text(foreign_email)).to_have_count(0)


# Blacklist review ----------------------------------------------------------------------------------


async def test_operator_confirms_a_merchants_blacklist_report(live: LiveEinlass, page: Page) -> None:
    filed = await live.api(
        "shop",
        "POST",
        "/blacklist_reports",
        json={
            "identifiers": {"email": f"{live.unique('fraud')}@example.net"},
            "category": "fraud_attempt",
            "evidence": {"text": "three chargebacks in a week"},
        },
    )
    report = filed["data"][0]
    assert report["status"] == "pending"
    operator = await live.staff("operator", None)
    await log_in(page, operator)
    await expect(page).to_have_url(re.compile(r"/admin/merchants$"))

    await (
        page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Blacklist review").click()
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("review", re.I))
    card = page.get_by_role("article", name=re.compile(re.escape(f"Report {report['id']}")))
    await expect(card).to_contain_text("Fraud attempt")
    await expect(card).to_contain_text("three chargebacks in a week")
    await card.get_by_role("textbox", name="Note (optional)").fill("evidence checked")
    await card.get_by_role("button", name="Confirm", exact=True).click()

    await expect(page.get_by_role("status")).to_have_text(
        f"Report {report['id']} confirmed; its entry is now active."
    )
    own_view = await live.api("shop", "GET", f"/blacklist_reports/{report['id']}")
    assert (own_view["status"], own_view["entry_status"]) == ("confirmed", "active")


# Provisioning --------------------------------------------------------------------------------------


async def test_reconcile_now_rewrites_the_htpasswd_file(live: LiveEinlass, page: Page) -> None:
    path = live.home / "door.htpasswd"
    target = await live.api(
        "door",
        "POST",
        "/provisioning_targets",
        json={"name": "www", "kind": "htpasswd_file", "config": {"path": str(path)}, "areas": ["premium"]},
    )
    email = f"{live.unique('door')}@example.com"
    await live.member("door", email, password=MEMBER_PASSWORD, areas=("premium",))
    # The worker reconciles after the change; wait for it, then let a stranger into the file by hand.
    await _until(lambda: path.exists() and f"{email}:" in path.read_text(), "the worker wrote the member")
    await _until_target_ok(live, target["id"])
    path.write_text(path.read_text() + "intruder:$apr1$abcdefgh$0123456789abcdefghijkl\n")

    staff = await live.staff("admin", "door")
    await log_in(page, staff)
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Provisioning").click()
    await page.get_by_role("link", name="www", exact=True).click()
    await page.get_by_role("button", name="Reconcile now", exact=True).click()

    await expect(page.get_by_role("status")).to_have_text(
        "www reconciled: 1 members listed; 0 added, 1 removed, 0 updated."
    )
    entries = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert [line.split(":", 1)[0] for line in entries] == [email]


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


async def _until_target_ok(live: LiveEinlass, target_id: str, timeout: float = 10.0) -> None:
    """Until no reconcile is pending for the target (no queued job would race the one on demand)."""
    deadline = time.monotonic() + timeout
    while True:
        target = await live.api("door", "GET", f"/provisioning_targets/{target_id}")
        jobs = await live.api("door", "GET", "/jobs", params={"limit": 100})
        waiting = [job for job in jobs["data"] if job["status"] in ("pending", "running")]
        if target["status"] == "ok" and not waiting:
            return
        assert time.monotonic() < deadline, f"target {target_id}: {target['status']}, jobs waiting: {waiting}"
        await asyncio.sleep(0.05)
