"""Screenshots of the admin UI for the README: the dashboard and a member page, in English and German.

    .venv/bin/python docs/screenshots/make_screenshots.py [--out docs/screenshots]

Sets up the demo merchant (``einlass demo``) in a temporary SQLite file with
half a year of history: one-time purchases, monthly subscriptions with their
renewals, a refund, chargebacks, a pause, cancellations, screening rejections
of blacklisted buyers and a grant by hand. The history is made the way
production makes it, through signed webhooks and the REST API, with the
clock set back to each event's moment (in-process). Then a real
``einlass serve`` shows it to Debian's Chromium (Playwright, no browser
download), logged in as the demo admin, at 1280x900.

Writes dashboard-en.png, dashboard-de.png, member-en.png and member-de.png.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import pyotp  # noqa: E402

from browser import (  # noqa: E402
    BUTTON_LOG_IN,
    LABEL_CODE,
    LABEL_EMAIL,
    LABEL_PASSWORD,
    VIEWPORT,
    LiveEinlass,
    chromium,
    einlass_server,
    new_context,
)
from conftest import SECRET_KEY, Shop  # noqa: E402
from einlass import clock  # noqa: E402
from einlass.app import create_app  # noqa: E402
from einlass.audit.service import CLI  # noqa: E402
from einlass.billing import catalogue  # noqa: E402
from einlass.config import Settings  # noqa: E402
from einlass.db.engine import Database  # noqa: E402
from einlass.demo import DEMO_SLUG, ensure_demo  # noqa: E402
from einlass.screening import operator_service  # noqa: E402
from einlass.screening.identifiers import normalize  # noqa: E402
from einlass.tenants import service as tenants  # noqa: E402
from helpers import post_generic  # noqa: E402
from payloads import generic  # noqa: E402

FEATURED = "erika.mustermann@example.com"
SHOTS = ("dashboard-en", "dashboard-de", "member-en", "member-de")

FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannes", "Ines", "Jonas", "Katrin", "Lukas",
    "Mia", "Noah", "Olga", "Paul", "Quentin", "Rosa", "Sven", "Tanja", "Ute", "Viktor", "Wiebke", "Yusuf",
    "Zoe", "Amir", "Britta", "Cem", "Dana", "Emil",
]  # fmt: skip
LAST_NAMES = [
    "Becker", "Schmidt", "Yilmaz", "Nowak", "Fischer", "Weber", "Meyer", "Wagner", "Hoffmann", "Schulz",
    "Koch", "Richter", "Klein", "Wolf", "Neumann", "Krause",
]  # fmt: skip


Step = tuple[datetime, int, Callable[[], Awaitable[None]]]


class History:
    """Events at moments in the past, run in order with the clock set to each moment."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.steps: list[Step] = []

    def at(self, days_ago: float, action: Callable[[], Awaitable[None]]) -> None:
        self.steps.append((self.now - timedelta(days=days_ago), len(self.steps), action))

    async def run(self, frozen: clock.FrozenClock) -> None:
        for moment, _, action in sorted(self.steps, key=lambda step: (step[0], step[1])):
            frozen.set(moment)
            await action()


async def seed(db: Database, demo: dict[str, Any]) -> None:
    """Half a year of the demo shop, ending now."""
    now = datetime.now(UTC).replace(microsecond=0)
    frozen = clock.FrozenClock(now - timedelta(days=200))
    real = clock.get_clock()
    clock.set_clock(frozen)
    settings = Settings(database_url=db.url, secret_key=SECRET_KEY, base_url="http://127.0.0.1:8000")
    try:
        info = await ensure_demo(db, settings)
        async with db.transaction() as session:
            merchant = await tenants.get_merchant_by_slug(session, DEMO_SLUG)
            await catalogue.create_area(session, merchant, "archive", "Archive", CLI)
            for email in ("chargeback.king@example.net", "stolen.card@example.org"):
                await operator_service.operator_entry(
                    session,
                    settings,
                    normalize("email", email),
                    category="fraud_attempt",
                    evidence={"text": "chargebacks at several shops"},
                    actor=CLI,
                )
        shop = Shop(
            slug=DEMO_SLUG,
            merchant_id=merchant.id,
            api_key=info["api_key"],
            generic_secret=info["generic_signing_secret"],
        )
        staff = info["admin_ui"]
        demo.update(
            shop=shop, staff_email=staff["email"], staff_password=staff["password"], totp=staff["totp_secret"]
        )
        app = create_app(settings, db, run_worker=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://einlass.test"
        ) as http:
            history = History(now)
            _plan(history, http, shop, demo)
            await history.run(frozen)
    finally:
        clock.set_clock(real)


def _plan(history: History, http: httpx.AsyncClient, shop: Shop, demo: dict[str, Any]) -> None:
    rng = random.Random(6)
    counter = iter(range(1, 10_000))

    async def post(payload: dict[str, Any]) -> None:
        payload["timestamp"] = clock.now().isoformat()
        response = await post_generic(http, shop, payload)
        assert response.status_code < 300, response.text

    async def api(method: str, path: str, **kwargs: Any) -> Any:
        response = await http.request(method, f"/api/v1{path}", headers=shop.auth, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def person(index: int) -> tuple[str, str]:
        first, last = FIRST_NAMES[index % len(FIRST_NAMES)], LAST_NAMES[(index * 7) % len(LAST_NAMES)]
        return f"{first} {last}", f"{first}.{last}{index}@example.com".lower()

    def buy(days_ago: float, email: str, name: str, refund: str | None = None) -> None:
        payment = f"pay-{next(counter)}"
        history.at(
            days_ago,
            lambda: post(
                generic.payment_confirmed(
                    payment, amount=990, email=email, name=name, product_id="premium-30d", locale="de"
                )
            ),
        )
        if refund == "refund":
            history.at(
                days_ago - 2,
                lambda: post(generic.payment_refunded(payment, refund_id=f"rf-{payment}", amount=990)),
            )
        elif refund == "chargeback":
            history.at(
                days_ago - 9,
                lambda: post(generic.payment_chargeback(payment, chargeback_id=f"cb-{payment}", amount=990)),
            )

    def subscribe(
        days_ago: int, email: str, name: str, months: int, then: str | None = None, locale: str | None = None
    ) -> None:
        ref = f"sub-{next(counter)}"
        first = f"pay-{next(counter)}"
        history.at(
            days_ago,
            lambda: post(
                generic.subscription_created(
                    ref,
                    at=clock.now(),
                    product_id="premium-monthly",
                    payment_id=first,
                    amount=490,
                    email=email,
                    name=name,
                    locale=locale,
                )
            ),
        )
        renewals = min(months, int(days_ago // 30.4))
        for month in range(1, renewals + 1):
            payment = f"pay-{next(counter)}"
            history.at(
                days_ago - month * 30.4 + 0.01,
                lambda payment=payment: post(
                    generic.subscription_renewed(ref, payment, at=clock.now(), amount=490)
                ),
            )
        end = days_ago - renewals * 30.4 - 3
        if then == "cancel" and end > 0:
            history.at(end, lambda: post(generic.subscription_cancelled(ref, at=clock.now())))
        elif then == "pause" and end > 0:
            history.at(end, lambda: post(generic.subscription_paused(ref, at=clock.now())))
        elif then == "fail":
            history.at(
                max(days_ago - (renewals + 1) * 30.4 + 0.02, 0.5),
                lambda: post(generic.subscription_renewal_failed(ref, at=clock.now())),
            )

    # One-time buyers over half a year; some buy again, a few get their money back.
    for index in range(42):
        name, email = person(index)
        days_ago = rng.uniform(0.2, 185) if index >= 12 else rng.uniform(0.2, 29)
        outcome = "refund" if index % 17 == 5 else "chargeback" if index % 19 == 7 else None
        buy(days_ago, email, name, outcome)
        if index % 3 == 0 and days_ago > 32:
            buy(days_ago - 30.5, email, name)
    # Subscribers, most still paying.
    for index in range(42, 62):
        name, email = person(index)
        days_ago = rng.randint(5, 190)
        then = "cancel" if index % 6 == 0 else "pause" if index % 9 == 0 else "fail" if index == 47 else None
        subscribe(days_ago, email, name, months=12, then=then)
    # Known fraudsters try to buy: screening rejects them.
    for days_ago, email in (
        (21, "chargeback.king@example.net"),
        (8, "stolen.card@example.org"),
        (2, "chargeback.king@example.net"),
    ):
        buy(days_ago, email, "")

    # The member shown: a subscriber since spring, one extra purchase, a grant by hand.
    subscribe(160, FEATURED, "Erika Mustermann", months=12, locale="de")
    buy(95, FEATURED, "Erika Mustermann")

    async def featured_extras() -> None:
        found = await api("GET", "/members", params={"email": FEATURED})
        member_id = found["data"][0]["id"]
        demo["featured_id"] = member_id
        await api(
            "POST",
            f"/members/{member_id}/grants",
            json={
                "area": "archive",
                "ends_at": (clock.now() + timedelta(days=90)).isoformat(),
                "note": "Thank you for the bug report",
            },
        )
        await api("POST", "/screenings", json={"identifiers": {"email": FEATURED}, "member": member_id})

    history.at(12, featured_extras)
    # One member locked by hand.
    _, locked = person(3)

    async def lock() -> None:
        found = await api("GET", "/members", params={"email": locked})
        await api("POST", f"/members/{found['data'][0]['id']}/lock", json={"reason": "shared the password"})

    history.at(4, lock)


async def take(out: Path) -> None:
    demo: dict[str, Any] = {}

    async def prepare(db: Database) -> dict[str, Shop]:
        await seed(db, demo)
        return {DEMO_SLUG: demo["shop"]}

    with tempfile.TemporaryDirectory(prefix="einlass-screenshots-") as home:
        async with einlass_server(Path(home), seed=prepare) as live, chromium() as browser:
            context = await new_context(browser, live)
            page = await context.new_page()
            await _log_in(page, live, demo)
            for lang in ("en", "de"):
                await page.goto(f"/admin/m/{DEMO_SLUG}/?lang={lang}")
                await page.screenshot(path=out / f"dashboard-{lang}.png", full_page=True)
                await page.goto(f"/admin/m/{DEMO_SLUG}/members/{demo['featured_id']}?lang={lang}")
                # Down to the first entries of the audit trail, which runs on for pages.
                audit = await page.locator("#md-audit").bounding_box()
                height = await page.evaluate("document.documentElement.scrollHeight")
                bottom = min(height, int(audit["y"]) + 480) if audit else height
                clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom}
                await page.screenshot(path=out / f"member-{lang}.png", full_page=True, clip=clip)
            await context.close()
    for name in SHOTS:
        print(out / f"{name}.png")


async def _log_in(page: Any, live: LiveEinlass, demo: dict[str, Any]) -> None:
    await page.goto("/admin/login?lang=en")
    await page.get_by_label(LABEL_EMAIL, exact=True).fill(demo["staff_email"])
    await page.get_by_label(LABEL_PASSWORD, exact=True).fill(demo["staff_password"])
    await page.get_by_label(LABEL_CODE, exact=True).fill(pyotp.TOTP(demo["totp"]).now())
    await page.get_by_role("button", name=BUTTON_LOG_IN, exact=True).click()
    await page.wait_for_url(f"{live.url}/admin/m/{DEMO_SLUG}/")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="where the PNGs go")
    arguments = parser.parse_args()
    assert VIEWPORT == {"width": 1280, "height": 900}
    arguments.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(take(arguments.out))


if __name__ == "__main__":
    main()
