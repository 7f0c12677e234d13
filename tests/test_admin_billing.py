"""Admin UI: the payments inbox (raw events, reprocess), the payments ledger and the subscriptions pages."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select, update

from admin_support import AdminClient, login, make_staff
from conftest import Shop, add_subscription_plans, make_shop
from einlass import clock as clock_module
from einlass.admin import billing_common
from einlass.audit.models import AuditEntry
from einlass.audit.service import CLI
from einlass.billing import catalogue
from einlass.billing.gateways.base import Customer, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.models import InboxEvent, Payment
from einlass.billing.subscriptions.models import Subscription
from einlass.clock import FrozenClock
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.tenants.models import Merchant
from helpers import post_generic
from payloads import generic
from subscription_support import deliver, paid


async def _admin(client: httpx.AsyncClient, db: Database, shop: Shop, role: str = "admin") -> AdminClient:
    return await login(client, await make_staff(db, role=role, merchant_id=shop.merchant_id))


async def _post(client: httpx.AsyncClient, shop: Shop, payload: dict[str, object], msg_id: str) -> str:
    response = await post_generic(client, shop, payload, msg_id=msg_id)
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


async def _inbox_event(db: Database, event_id: str) -> InboxEvent:
    async with db.transaction() as session:
        return await session.get_one(InboxEvent, event_id)


# --------------------------------------------------------------------------- the inbox


async def test_the_inbox_shows_this_merchants_events_with_the_raw_payload(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    confirmed = generic.payment_confirmed("pay-1", amount=990, email="anna@example.com", product_id="prod-30")
    event_id = await _post(client, shop, confirmed, "msg_anna")
    foreign_id = await _post(
        client, other, generic.payment_confirmed("pay-o", amount=4900, email="otto@example.com"), "msg_otto"
    )
    admin = await _admin(client, db, shop)

    inbox = await admin.get(f"/admin/m/{shop.slug}/payments")
    assert inbox.status_code == 200
    assert f"/admin/m/{shop.slug}/payments/{event_id}" in inbox.text
    assert "payment.confirmed" in inbox.text and "applied" in inbox.text
    assert foreign_id not in inbox.text
    parked_only = await admin.get(f"/admin/m/{shop.slug}/payments", params={"status": "parked"})
    assert event_id not in parked_only.text and "Nothing matches." in parked_only.text

    detail = await admin.get(f"/admin/m/{shop.slug}/payments/{event_id}")
    assert detail.status_code == 200
    assert "&#34;payment_id&#34;: &#34;pay-1&#34;" in detail.text  # pretty-printed, one field a line
    assert "msg_anna" in detail.text  # the webhook-id header
    signature = (await _inbox_event(db, event_id)).headers["webhook-signature"]
    assert signature not in detail.text and "(hidden)" in detail.text
    async with db.transaction() as session:
        payment = await session.scalar(select(Payment).where(Payment.external_id == "pay-1"))
    assert payment is not None and payment.member_id
    assert f"/admin/m/{shop.slug}/members/{payment.member_id}" in detail.text
    assert "anna@example.com" in detail.text
    assert "Reprocess" not in detail.text  # applied: nothing to reprocess

    ledger = await admin.get(f"/admin/m/{shop.slug}/payments/ledger")
    assert "€9.90" in ledger.text and "confirmed" in ledger.text and "30 days" in ledger.text
    assert f"/admin/m/{shop.slug}/members/{payment.member_id}" in ledger.text
    assert "otto@example.com" not in ledger.text
    german = await admin.get(f"/admin/m/{shop.slug}/payments/ledger/{payment.id}", params={"lang": "de"})
    assert "9,90\xa0€" in german.text and "bestätigt" in german.text and event_id in german.text

    assert (await admin.get(f"/admin/m/{shop.slug}/payments/{foreign_id}")).status_code == 404
    assert (await admin.get(f"/admin/m/{shop.slug}/payments/ledger/pay_nope")).status_code == 404
    assert (await admin.post(f"/admin/m/{shop.slug}/payments/{foreign_id}/reprocess")).status_code == 404
    assert (await _inbox_event(db, foreign_id)).attempts == 1


async def test_a_parked_refund_is_reprocessed_once_its_payment_is_there(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    refund = generic.payment_refunded("pay-p1", refund_id="rf-1", amount=990)
    event_id = await _post(client, shop, refund, "msg_refund")
    admin = await _admin(client, db, shop)
    parked = await admin.get(f"/admin/m/{shop.slug}/payments", params={"status": "parked"})
    assert event_id in parked.text and "parked (waiting)" in parked.text
    detail = await admin.get(f"/admin/m/{shop.slug}/payments/{event_id}")
    assert "Waiting for pay-p1 to arrive." in detail.text and "Reprocess" in detail.text

    no_token = await admin.post(f"/admin/m/{shop.slug}/payments/{event_id}/reprocess", csrf=False)
    assert no_token.status_code == 403 and (await _inbox_event(db, event_id)).attempts == 1
    # Without its payment the refund stays parked, and the page says so.
    again = await admin.post(f"/admin/m/{shop.slug}/payments/{event_id}/reprocess", follow=True)
    assert "its status is now: parked (waiting)" in again.text
    assert (await _inbox_event(db, event_id)).attempts == 2

    # The race reprocessing exists for: the refund parked in a transaction that committed
    # after the payment's own transaction looked for parked events.
    async with db.transaction() as session:
        await session.execute(update(InboxEvent).where(InboxEvent.id == event_id).values(status="received"))
    await _post(
        client, shop, generic.payment_confirmed("pay-p1", amount=990, email="pia@example.com"), "msg_pay"
    )
    async with db.transaction() as session:
        await session.execute(update(InboxEvent).where(InboxEvent.id == event_id).values(status="parked"))

    done = await admin.post(f"/admin/m/{shop.slug}/payments/{event_id}/reprocess", follow=True)
    assert done.status_code == 200
    assert "its status is now: applied" in done.text
    assert (await _inbox_event(db, event_id)).status == "applied"
    ledger = await admin.get(f"/admin/m/{shop.slug}/payments/ledger", params={"status": "refunded"})
    assert "pia@example.com" in ledger.text and "refunded" in ledger.text
    async with db.transaction() as session:
        audit = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "webhook_event.reprocessed", AuditEntry.entity_id == event_id
            )
        )
    assert audit is not None and audit.actor_kind == "admin" and audit.actor_id == admin.staff.id


async def test_a_failed_event_applies_after_the_plan_reference_is_added(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop
) -> None:
    created = generic.subscription_created("gs_9", product_id="sub-weekly", email="bea@example.com")
    event_id = await _post(client, sub_shop, created, "msg_weekly")
    admin = await _admin(client, db, sub_shop)
    failed = await admin.get(f"/admin/m/{sub_shop.slug}/payments", params={"status": "failed"})
    assert event_id in failed.text and "no subscription plan for generic product" in failed.text
    async with db.transaction() as session:
        merchant = await session.get_one(Merchant, sub_shop.merchant_id)
        monthly = await catalogue.get_plan(session, sub_shop.merchant_id, "monthly")
        await catalogue.add_gateway_reference(session, merchant, monthly, "generic", "sub-weekly", CLI)

    done = await admin.post(f"/admin/m/{sub_shop.slug}/payments/{event_id}/reprocess", follow=True)
    assert "its status is now: applied" in done.text
    async with db.transaction() as session:
        subscription = await session.scalar(select(Subscription).where(Subscription.external_id == "gs_9"))
    assert subscription is not None
    assert f"/admin/m/{sub_shop.slug}/subscriptions/{subscription.id}" in done.text


async def test_a_viewer_sees_the_inbox_but_cannot_reprocess(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    event_id = await _post(client, shop, generic.payment_refunded("pay-v", refund_id="rf", amount=5), "msg_v")
    viewer = await _admin(client, db, shop, role="viewer")
    detail = await viewer.get(f"/admin/m/{shop.slug}/payments/{event_id}")
    assert detail.status_code == 200 and "Reprocess</button>" in detail.text and " disabled>" in detail.text
    refused = await viewer.post(f"/admin/m/{shop.slug}/payments/{event_id}/reprocess")
    assert refused.status_code == 403
    event = await _inbox_event(db, event_id)
    assert event.status == "parked" and event.attempts == 1


async def test_the_inbox_pages_with_a_cursor(
    client: httpx.AsyncClient, db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(billing_common, "PAGE_SIZE", 2)
    ids = [
        await _post(client, shop, generic.payment_refunded(f"pay-{n}", refund_id="r", amount=1), f"msg_{n}")
        for n in range(3)
    ]
    admin = await _admin(client, db, shop)

    def listed(html: str) -> list[str]:
        return [event_id for event_id in ids if f'/payments/{event_id}"' in html]

    first = await admin.get(f"/admin/m/{shop.slug}/payments", params={"gateway": "generic"})
    assert listed(first.text) == [ids[1], ids[2]] and 'rel="next"' in first.text
    assert f"after={ids[1]}" in first.text
    second = await admin.get(f"/admin/m/{shop.slug}/payments", params={"gateway": "generic", "after": ids[1]})
    assert listed(second.text) == [ids[0]] and 'rel="next"' not in second.text
    assert "First page" in second.text
    stripe = await admin.get(f"/admin/m/{shop.slug}/payments", params={"gateway": "stripe"})
    assert listed(stripe.text) == []


# --------------------------------------------------------------------------- subscriptions


async def _subscribe(
    db: Database, settings: Settings, shop: Shop, ref: str, email: str, product: str = "sub-monthly"
) -> str:
    """A subscription created and paid now; returns its id."""
    now = clock_module.now()
    created = SubscriptionEvent(
        Kind.CREATED,
        ref,
        f"created:{ref}",
        occurred_at=now,
        product_ref=product,
        customer=Customer(email=email, name=email.split("@")[0].title(), locale="en"),
    )
    price = {"sub-monthly": 990, "sub-yearly": 9900}[product]
    await deliver(db, settings, shop, created, *paid(ref, f"{ref}-1", now, price))
    async with db.transaction() as session:
        found = await session.scalar(
            select(Subscription.id).where(
                Subscription.merchant_id == shop.merchant_id, Subscription.external_id == ref
            )
        )
    assert found is not None
    return found


async def test_the_subscriptions_list_filters_by_status_and_plan(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop
) -> None:
    other = await make_shop(db, "other")
    await add_subscription_plans(db, other)
    monthly = await _subscribe(db, settings, sub_shop, "gs_m", "mona@example.com")
    yearly = await _subscribe(db, settings, sub_shop, "gs_y", "yann@example.com", "sub-yearly")
    foreign = await _subscribe(db, settings, other, "gs_o", "otto@example.com")
    admin = await _admin(client, db, sub_shop)

    listing = await admin.get(f"/admin/m/{sub_shop.slug}/subscriptions")
    assert listing.status_code == 200
    assert monthly in listing.text and yearly in listing.text and foreign not in listing.text
    assert "mona@example.com" in listing.text and "Monthly" in listing.text and "active" in listing.text
    async with db.transaction() as session:
        yearly_plan = await catalogue.get_plan(session, sub_shop.merchant_id, "yearly")
    by_plan = await admin.get(f"/admin/m/{sub_shop.slug}/subscriptions", params={"plan": yearly_plan.id})
    assert yearly in by_plan.text and monthly not in by_plan.text
    paused = await admin.get(f"/admin/m/{sub_shop.slug}/subscriptions", params={"status": "paused"})
    assert monthly not in paused.text and yearly not in paused.text
    german = await admin.get(
        f"/admin/m/{sub_shop.slug}/subscriptions", params={"lang": "de", "status": "active"}
    )
    assert "aktiv" in german.text and monthly in german.text

    assert (await admin.get(f"/admin/m/{sub_shop.slug}/subscriptions/{foreign}")).status_code == 404
    refused = await admin.post(
        f"/admin/m/{sub_shop.slug}/subscriptions/{foreign}/action", {"action": "pause"}
    )
    assert refused.status_code == 404


async def test_pausing_from_the_page_pauses_the_subscription(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    sub_id = await _subscribe(db, settings, sub_shop, "gs_p", "paula@example.com")
    admin = await _admin(client, db, sub_shop)
    path = f"/admin/m/{sub_shop.slug}/subscriptions/{sub_id}"
    detail = await admin.get(path)
    assert "active" in detail.text and 'name="resume_on"' in detail.text and "No actions yet." in detail.text

    bad = await admin.post(f"{path}/action", {"action": "pause", "resume_on": "soon"}, follow=True)
    assert "Nothing was changed: the resume date must be a date such as 2026-04-01" in bad.text
    answer = await admin.post(
        f"{path}/action", {"action": "pause", "resume_on": "2026-04-01", "reason": "holiday"}, follow=True
    )
    assert answer.status_code == 200
    assert "Pause: done here and sent to the gateway." in answer.text
    assert "paused" in answer.text and "waiting for the gateway" in answer.text and "holiday" in answer.text
    assert admin.staff.email in answer.text and "gs_p-1" in answer.text  # who asked; the paying payment
    assert 'value="resume"' in answer.text  # a paused subscription offers resume instead
    async with db.transaction() as session:
        subscription = await session.get_one(Subscription, sub_id)
        audit = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "subscription.pause_requested", AuditEntry.entity_id == sub_id
            )
        )
    assert subscription.status == "paused"
    assert subscription.resume_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert audit is not None and audit.actor_kind == "admin" and audit.after
    # Pausing twice is the service's refusal, shown as such.
    again = await admin.post(f"{path}/action", {"action": "pause"}, follow=True)
    assert "Nothing was changed: the subscription is paused already" in again.text
    cancelled = await admin.post(f"{path}/action", {"action": "cancel", "when": "now"}, follow=True)
    assert "Cancel: done here" in cancelled.text
    async with db.transaction() as session:
        assert (await session.get_one(Subscription, sub_id)).status == "cancelled"
    ended = await admin.get(path)
    assert "no further actions are possible" in ended.text
    german = await admin.get(path, params={"lang": "de"})
    assert "gekündigt" in german.text and "Pausieren" in german.text and "Aktion" in german.text


async def test_a_viewer_cannot_act_on_a_subscription(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop
) -> None:
    sub_id = await _subscribe(db, settings, sub_shop, "gs_v", "vera@example.com")
    viewer = await _admin(client, db, sub_shop, role="viewer")
    path = f"/admin/m/{sub_shop.slug}/subscriptions/{sub_id}"
    page = await viewer.get(path)
    assert page.status_code == 200 and "Your role may only read" in page.text
    assert 'name="action"' not in page.text
    refused = await viewer.post(f"{path}/action", {"action": "pause"})
    assert refused.status_code == 403
    async with db.transaction() as session:
        assert (await session.get_one(Subscription, sub_id)).status == "active"
