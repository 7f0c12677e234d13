"""The member's subscriptions on /m/{merchant}/account: shown in English and German, paused,
resumed and cancelled where the plan allows, CSRF-protected, refusals shown."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select

from conftest import Shop
from einlass import clock as clock_module
from einlass.access.i18n import format_moment
from einlass.billing.gateways.base import Customer, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.subscriptions.models import Subscription, SubscriptionAction
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.outbox.worker import Worker
from einlass.tenants.models import GatewayAccount
from helpers import api, has_access
from subscription_support import deliver, paid

PASSWORD = "correct horse battery"
LOGIN_CSRF = "einlass_login_csrf"
SESSION = "einlass_session"
START = datetime(2027, 1, 10, 10, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


async def subscribe(
    db: Database,
    settings: Settings,
    shop: Shop,
    ref: str,
    product: str = "sub-monthly",
    email: str = "m@example.com",
) -> str:
    """A subscription created and paid now, for the member with ``email``; returns its id."""
    now = clock_module.now()
    await deliver(
        db,
        settings,
        shop,
        SubscriptionEvent(
            Kind.CREATED,
            ref,
            f"created:{ref}",
            occurred_at=now,
            product_ref=product,
            customer=Customer(email=email),
        ),
        *paid(ref, f"{ref}-1", now),
    )
    async with db.transaction() as session:
        found = await session.scalar(select(Subscription.id).where(Subscription.external_id == ref))
    assert found is not None
    return found


async def subscription(db: Database, sub_id: str) -> Subscription:
    async with db.transaction() as session:
        return await session.get_one(Subscription, sub_id)


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return html.unescape(match.group(1))


async def request(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """Every request names its cookies itself; the client's jar is kept empty."""
    client.cookies.clear()
    response = await client.request(method, url, **kwargs)
    client.cookies.clear()
    return response


def cookie_value(response: httpx.Response, name: str) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header.split("=", 1)[1].split(";", 1)[0].strip('"')
    return None


async def logged_in(client: httpx.AsyncClient, shop: Shop, username: str = "m@example.com") -> str:
    form = await request(client, "GET", f"/m/{shop.slug}/login")
    field, cookie = hidden(form.text, "csrf_token"), cookie_value(form, LOGIN_CSRF)
    response = await request(
        client,
        "POST",
        f"/m/{shop.slug}/login",
        data={"username": username, "password": PASSWORD, "csrf_token": field},
        headers={"cookie": f"{LOGIN_CSRF}={cookie}"},
    )
    assert response.status_code == 303, response.text
    token = cookie_value(response, SESSION)
    assert token
    return token


async def member(client: httpx.AsyncClient, shop: Shop, email: str = "m@example.com") -> dict[str, Any]:
    return await api(  # type: ignore[no-any-return]
        client,
        shop,
        "POST",
        "/members",
        json={"email": email, "password": PASSWORD, "send_credentials": False},
    )


async def account(client: httpx.AsyncClient, shop: Shop, token: str, lang: str = "en") -> httpx.Response:
    response = await request(
        client,
        "GET",
        f"/m/{shop.slug}/account",
        params={"lang": lang},
        headers={"cookie": f"{SESSION}={token}"},
    )
    assert response.status_code == 200, response.text
    return response


async def act(
    client: httpx.AsyncClient,
    shop: Shop,
    token: str,
    sub_id: str,
    action: str,
    lang: str = "en",
    **fields: str,
) -> httpx.Response:
    """Submit a subscription form of the account page, with the page's CSRF token unless given."""
    if "csrf_token" not in fields:
        fields["csrf_token"] = hidden((await account(client, shop, token)).text, "csrf_token")
    return await request(
        client,
        "POST",
        f"/m/{shop.slug}/account",
        params={"lang": lang},
        headers={"cookie": f"{SESSION}={token}"},
        data={"subscription": sub_id, "subscription_action": action, **fields},
    )


def article(page: str, plan_name: str) -> str:
    """The part of the page about the subscription to ``plan_name``."""
    for part in page.split("<article")[1:]:
        if f">{plan_name}</h3>" in part:
            return part.split("</article>")[0]
    raise AssertionError(f"no subscription to {plan_name} on the page")


def text(page: str) -> str:
    return html.unescape(re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", page)))


# --------------------------------------------------------------------------- tests


async def test_the_account_page_shows_the_subscription_in_english_and_german(
    client, db, settings, sub_shop, clock
):
    clock.set(START)
    await member(client, sub_shop)
    await subscribe(db, settings, sub_shop, "s-1")
    token = await logged_in(client, sub_shop)
    paid_through, access_until = datetime(2027, 2, 10, 10, tzinfo=UTC), datetime(2027, 2, 13, 10, tzinfo=UTC)

    english = text(article((await account(client, sub_shop, token)).text, "Monthly"))
    assert "Status active" in english
    assert f"Paid through {format_moment(paid_through, 'en')}" in english
    assert f"Access until {format_moment(access_until, 'en')}" in english
    assert "Pause subscription" in english and "Cancel subscription" in english

    page = (await account(client, sub_shop, token, "de")).text
    assert "Ihre Abos" in page
    german = text(article(page, "Monthly"))
    assert "Status aktiv" in german
    assert f"Bezahlt bis {format_moment(paid_through, 'de')}" in german
    assert "Abo pausieren" in german and "Abo kündigen" in german
    assert "Fortsetzen am (optional)" in german


async def test_pause_and_cancel_are_offered_only_where_the_plan_allows(client, db, settings, sub_shop, clock):
    await api(
        client,
        sub_shop,
        "POST",
        "/plans",
        json={
            "slug": "fixed",
            "name": "Fixed term",
            "amount": 990,
            "currency": "EUR",
            "areas": ["premium"],
            "gateway_refs": {"generic": ["sub-fixed"]},
            "kind": "subscription",
            "interval": "P1M",
            "member_can_cancel": False,
        },
    )
    await member(client, sub_shop)
    await subscribe(db, settings, sub_shop, "s-m")
    yearly = await subscribe(db, settings, sub_shop, "s-y", "sub-yearly")
    await subscribe(db, settings, sub_shop, "s-f", "sub-fixed")
    token = await logged_in(client, sub_shop)
    page = (await account(client, sub_shop, token)).text

    monthly = article(page, "Monthly")
    assert 'value="pause"' in monthly and 'value="cancel"' in monthly
    assert re.search(r'<label for="resume-sub_\w+">Resume on \(optional\)</label>', monthly)
    assert re.search(r'<label for="confirm-sub_\w+">Yes, cancel this subscription', monthly)
    assert 'value="pause"' not in article(page, "Yearly") and 'value="cancel"' in article(page, "Yearly")
    fixed = article(page, "Fixed term")
    assert "<form" not in fixed and "Status active" in text(fixed)

    # What the page does not offer is refused when posted anyway.
    refused = await act(client, sub_shop, token, yearly, "pause")
    assert refused.status_code == 409 and "This plan does not allow that here." in refused.text
    assert (await subscription(db, yearly)).status == "active"


async def test_a_member_pauses_with_a_resume_date_and_resumes(client, db, settings, sub_shop, clock):
    clock.set(START)
    created = await member(client, sub_shop)
    sub_id = await subscribe(db, settings, sub_shop, "s-pause")
    token = await logged_in(client, sub_shop)
    clock.advance(timedelta(days=5))

    paused = await act(client, sub_shop, token, sub_id, "pause", resume_on="2027-02-01")
    resume_at = datetime(2027, 2, 1, tzinfo=UTC)
    assert paused.status_code == 200, paused.text
    assert f"Your subscription is paused and resumes on {format_moment(resume_at, 'en')}." in paused.text
    shown = text(article(paused.text, "Monthly"))
    assert "Status paused" in shown and f"It resumes on {format_moment(resume_at, 'en')}." in shown
    assert f"Paused since {format_moment(clock.now(), 'en')}." in shown
    assert "Resume subscription" in shown and "Pause subscription" not in shown
    assert not has_access(await api(client, sub_shop, "GET", f"/members/{created['id']}"))
    async with db.transaction() as session:
        [action] = (await session.scalars(select(SubscriptionAction))).all()
    assert action.kind == "pause" and action.requested_by == f"member:{created['id']}"
    assert action.params == {"resume_at": resume_at.isoformat()}

    clock.advance(timedelta(days=1))
    resumed = await act(client, sub_shop, token, sub_id, "resume", lang="de")
    assert resumed.status_code == 200 and "Ihr Abo läuft wieder." in resumed.text
    assert (await subscription(db, sub_id)).status == "active"
    assert has_access(await api(client, sub_shop, "GET", f"/members/{created['id']}"))

    for resume_on in ("2027-01-01", "tomorrow"):
        bad = await act(client, sub_shop, token, sub_id, "pause", resume_on=resume_on)
        assert bad.status_code == 400 and "Please choose a resume date in the future" in bad.text
    assert (await subscription(db, sub_id)).status == "active"


async def test_a_member_cancels_at_the_end_of_the_paid_period_after_confirming(
    client, db, settings, sub_shop, clock
):
    clock.set(START)
    await member(client, sub_shop)
    sub_id = await subscribe(db, settings, sub_shop, "s-cancel")
    token = await logged_in(client, sub_shop)

    unconfirmed = await act(client, sub_shop, token, sub_id, "cancel")
    assert unconfirmed.status_code == 400 and "Please tick the box" in unconfirmed.text
    assert (await subscription(db, sub_id)).cancel_at is None

    ends = format_moment(datetime(2027, 2, 10, 10, tzinfo=UTC), "de")
    cancelled = await act(client, sub_shop, token, sub_id, "cancel", lang="de", confirm="yes")
    assert cancelled.status_code == 200 and f"Ihr Abo ist gekündigt und endet am {ends}." in cancelled.text
    shown = article(cancelled.text, "Monthly")
    assert f"Gekündigt: es endet am {ends}." in text(shown) and 'value="cancel"' not in shown
    stored = await subscription(db, sub_id)
    assert stored.status == "active" and stored.cancel_at == datetime(2027, 2, 10, 10, tzinfo=UTC)


async def test_subscription_forms_without_the_csrf_token_or_for_someone_else_change_nothing(
    client, db, settings, sub_shop, clock
):
    await member(client, sub_shop)
    await member(client, sub_shop, "other@example.com")
    mine = await subscribe(db, settings, sub_shop, "s-mine")
    theirs = await subscribe(db, settings, sub_shop, "s-theirs", email="other@example.com")
    token = await logged_in(client, sub_shop)
    other_token = await logged_in(client, sub_shop, "other@example.com")
    other_csrf = hidden((await account(client, sub_shop, other_token)).text, "csrf_token")

    for csrf in ("", other_csrf, "forged"):
        response = await act(client, sub_shop, token, mine, "pause", csrf_token=csrf)
        assert response.status_code == 403 and "nothing was changed" in response.text
    no_session = await request(
        client,
        "POST",
        f"/m/{sub_shop.slug}/account",
        data={"subscription": mine, "subscription_action": "pause"},
    )
    assert no_session.status_code == 403
    foreign = await act(client, sub_shop, token, theirs, "pause")
    assert foreign.status_code == 404 and "This subscription was not found in your account." in foreign.text
    assert theirs not in foreign.text

    assert [(await subscription(db, sub)).status for sub in (mine, theirs)] == ["active", "active"]
    async with db.transaction() as session:
        assert (await session.scalars(select(SubscriptionAction))).all() == []


async def test_a_pause_the_payment_provider_refuses_is_shown_on_the_page(
    client, db, settings, sub_shop, clock, worker: Worker
):
    clock.set(START)
    await member(client, sub_shop)
    sub_id = await subscribe(db, settings, sub_shop, "s-refused")
    token = await logged_in(client, sub_shop)
    # The merchant never configured the gateway, so it cannot carry the pause out.
    async with db.transaction() as session:
        await session.execute(
            delete(GatewayAccount).where(
                GatewayAccount.merchant_id == sub_shop.merchant_id, GatewayAccount.gateway == "generic"
            )
        )
    assert (await act(client, sub_shop, token, sub_id, "pause")).status_code == 200
    await worker.drain()

    english = text(article((await account(client, sub_shop, token)).text, "Monthly"))
    assert (
        "Your pause request was refused by the payment provider: "
        "the generic gateway is not configured for this merchant" in english
    )
    assert "Status active" in english and "Pause subscription" in english
    german = text(article((await account(client, sub_shop, token, "de")).text, "Monthly"))
    assert "Ihre Anfrage zum Pausieren wurde vom Zahlungsanbieter abgelehnt: the generic gateway" in german
    assert (await subscription(db, sub_id)).status == "active"
