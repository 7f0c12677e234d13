"""Shared helpers for the subscription tests: gateway events applied below the HTTP layer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from conftest import Shop
from einlass import clock as clock_module
from einlass.audit.service import Actor
from einlass.billing.gateways.base import Customer, FactKind, PaymentEvent, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.models import InboxEvent
from einlass.billing.service import apply_payment_event
from einlass.billing.subscriptions.service import PARKED, apply_subscription_event
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.ids import new_id
from einlass.tenants.models import Merchant

GATEWAY_ACTOR = Actor("test")

Event = PaymentEvent | SubscriptionEvent


async def deliver(db: Database, settings: Settings, shop: Shop | str, *events: Event) -> list[Event]:
    """Apply gateway events below the HTTP layer, as one inbox delivery; returns the parked ones.

    ``shop`` is a ``Shop`` or a merchant slug. The inbox row is stored as applied,
    so the worker's inbox recovery never picks it up again.
    """
    slug = shop if isinstance(shop, str) else shop.slug
    parked: list[Event] = []
    async with db.transaction() as session:
        merchant = await session.scalar(select(Merchant).where(Merchant.slug == slug))
        assert merchant is not None
        inbox = InboxEvent(
            id=new_id("evt"),
            merchant_id=merchant.id,
            gateway="generic",
            event_key=new_id("key"),
            event_type="test",
            headers={},
            body=b"{}",
            status="applied",
            attempts=0,
            received_at=clock_module.now(),
        )
        session.add(inbox)
        await session.flush()
        for event in events:
            if isinstance(event, SubscriptionEvent):
                outcome, _ = await apply_subscription_event(
                    session, merchant, "generic", inbox.id, event, GATEWAY_ACTOR
                )
            else:
                outcome = await apply_payment_event(session, settings, merchant, inbox, event, GATEWAY_ACTOR)
            if outcome == PARKED:
                parked.append(event)
            await session.flush()
    return parked


def paid(
    ref: str,
    pay: str,
    at: datetime,
    amount: int = 990,
    currency: str = "EUR",
    *,
    customer: Customer | None = None,
    subscription_ref: str | None = None,
) -> tuple[PaymentEvent, SubscriptionEvent]:
    """A confirmed payment ``pay`` and the period of subscription ``ref`` it pays."""
    return (
        PaymentEvent(
            FactKind.CONFIRMED,
            pay,
            "confirmed",
            amount=amount,
            currency=currency,
            customer=customer,
            occurred_at=at,
            subscription_ref=subscription_ref,
        ),
        SubscriptionEvent(Kind.PERIOD, ref, f"period:{pay}", occurred_at=at, payment_ref=pay),
    )
