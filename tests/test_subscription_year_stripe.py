"""The worked year of the subscription docs, driven by signed Stripe events.

Every row of the table in ``docs/subscriptions.md`` is reached the way it would
be in production: Stripe's events (built in Stripe's wire format, signed with the
endpoint secret at the moving clock's time) go through ``POST /webhooks/shop/stripe``,
and where the table says "worker" the worker's transition job runs. After each
row the stored subscription and the member's access (read through the API, at
the clock's time) are checked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import httpx
from sqlalchemy import select

from conftest import Shop
from einlass.billing.subscriptions.models import Subscription, SubscriptionStatusChange
from einlass.billing.subscriptions.transitions import run_due_transitions
from einlass.clock import FrozenClock, as_utc
from einlass.db.engine import Database
from helpers import has_access, member_by_email, post_stripe
from payloads import stripe as wire

SUB = "sub_1QzYearLkdIwHu7ixMonthly"
ANNA = "anna@example.com"


def at(month: int, day: int, year: int = 2027) -> datetime:
    return datetime(year, month, day, 10, tzinfo=UTC)


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


class Year:
    """One customer's monthly subscription at Stripe, and what einlass makes of it."""

    def __init__(self, client: httpx.AsyncClient, db: Database, shop: Shop, clock: FrozenClock) -> None:
        self.client, self.db, self.shop, self.clock = client, db, shop, clock

    async def deliver(self, event: dict[str, Any]) -> None:
        response = await post_stripe(self.client, self.shop, event)
        assert response.status_code == 200, response.text

    async def subscription_event(
        self, event_type: str, *, period_start: datetime, period_end: datetime, **fields: Any
    ) -> None:
        """A ``customer.subscription.*`` event created now, carrying the whole object."""
        now = self.clock.now()
        obj = wire.subscription(
            SUB,
            period_start=unix(period_start),
            period_end=unix(period_end),
            created=unix(at(1, 10)),
            **fields,
        )
        await self.deliver(
            wire.subscription_event(f"evt_sub_{unix(now)}", event_type, obj, created=unix(now))
        )

    async def invoice_paid(self, number: int, period_start: datetime, period_end: datetime) -> None:
        await self.deliver(
            wire.invoice_paid(
                f"evt_paid_{number}",
                invoice_id=f"in_{number}",
                subscription_id=SUB,
                payment_intent=f"pi_{number}",
                amount=990,
                period_start=unix(period_start),
                period_end=unix(period_end),
                created=unix(self.clock.now()),
                email=ANNA,
                billing_reason="subscription_create" if number == 1 else "subscription_cycle",
            )
        )

    async def worker_runs(self) -> None:
        await run_due_transitions(self.db)

    async def stored(self) -> Subscription:
        async with self.db.transaction() as session:
            subscription = await session.scalar(select(Subscription).where(Subscription.external_id == SUB))
        assert subscription is not None
        return subscription

    async def expect(
        self,
        status: str,
        *,
        paid_through: datetime | None,
        access: bool,
        access_until: datetime | None = None,
    ) -> None:
        subscription = await self.stored()
        when = self.clock.now().date().isoformat()
        assert subscription.status == status, when
        stored_paid_through = subscription.paid_through and as_utc(subscription.paid_through)
        assert stored_paid_through == paid_through, when
        if access_until is not None:
            assert subscription.access_until is not None, when
            assert as_utc(subscription.access_until) == access_until, when
        assert has_access(await member_by_email(self.client, self.shop, ANNA)) is access, when

    async def history(self) -> list[str]:
        async with self.db.transaction() as session:
            subscription = await self.stored()
            changes = await session.scalars(
                select(SubscriptionStatusChange)
                .where(SubscriptionStatusChange.subscription_id == subscription.id)
                .order_by(SubscriptionStatusChange.at, SubscriptionStatusChange.recorded_at)
            )
            return [change.to_status for change in changes]


async def test_the_worked_year_through_stripe_events(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock
) -> None:
    year = Year(client, db, sub_shop, clock)

    # 1. 2027-01-10: subscribes; Stripe creates the subscription and the first invoice is paid.
    clock.set(at(1, 10))
    await year.subscription_event(
        "customer.subscription.created", period_start=at(1, 10), period_end=at(2, 10)
    )
    await year.invoice_paid(1, at(1, 10), at(2, 10))
    await year.expect("active", paid_through=at(2, 10), access=True, access_until=at(2, 13))

    # 2. Renewals paid on 02-10, 03-10 and 04-10.
    for number, (start, end) in enumerate(
        [(at(2, 10), at(3, 10)), (at(3, 10), at(4, 10)), (at(4, 10), at(5, 10))], start=2
    ):
        clock.set(start)
        await year.invoice_paid(number, start, end)
        await year.expect("active", paid_through=end, access=True)

    # 3. 05-10: the renewal fails; access runs on through the grace period.
    clock.set(at(5, 10))
    await year.deliver(
        wire.invoice_payment_failed(
            "evt_failed_5",
            invoice_id="in_5",
            subscription_id=SUB,
            payment_intent="pi_5",
            amount=990,
            period_start=unix(at(5, 10)),
            period_end=unix(at(6, 10)),
            attempt_count=1,
        )
    )
    await year.expect("past_due", paid_through=at(5, 10), access=True, access_until=at(5, 13))
    clock.set(at(5, 12))  # a grace day, before the retry
    await year.worker_runs()
    await year.expect("past_due", paid_through=at(5, 10), access=True)

    # 4. 05-12: Stripe's retry of the same invoice is paid; the period stays anchored to the 10th.
    await year.invoice_paid(5, at(5, 10), at(6, 10))
    await year.expect("active", paid_through=at(6, 10), access=True)

    # 5. 06-10: renewal paid.
    clock.set(at(6, 10))
    await year.invoice_paid(6, at(6, 10), at(7, 10))
    await year.expect("active", paid_through=at(7, 10), access=True)

    # 6. 06-25: paused in Stripe (pause_collection, resumes_at 07-25): 15 paid days are kept,
    # to be used after the pause; paid through stays where the pause found it until then.
    clock.set(at(6, 25))
    await year.subscription_event(
        "customer.subscription.updated",
        period_start=at(6, 10),
        period_end=at(7, 10),
        paused=True,
        resumes_at=unix(at(7, 25)),
    )
    await year.expect("paused", paid_through=at(7, 10), access=False)
    subscription = await year.stored()
    assert subscription.next_change_at is not None and as_utc(subscription.next_change_at) == at(7, 25)
    clock.set(at(7, 10))  # inside the pause, when the old period would have ended
    await year.worker_runs()
    await year.expect("paused", paid_through=at(7, 10), access=False)

    # 7. 07-25: resumes by date (worker); then Stripe's object without pause_collection arrives.
    clock.set(at(7, 25))
    await year.worker_runs()
    await year.expect("active", paid_through=at(8, 9), access=True)
    await year.subscription_event(
        "customer.subscription.updated", period_start=at(7, 25), period_end=at(8, 9)
    )
    await year.expect("active", paid_through=at(8, 9), access=True)

    # 8. Renewals paid on 08-09 ... 12-09.
    renewals = [at(8, 9), at(9, 9), at(10, 9), at(11, 9), at(12, 9), at(1, 9, 2028)]
    for number, (start, end) in enumerate(pairwise(renewals), start=7):
        clock.set(start)
        await year.invoice_paid(number, start, end)
        await year.expect("active", paid_through=end, access=True)

    # 9. 12-20: cancelled at period end: access to 01-09, no grace after it.
    clock.set(at(12, 20))
    await year.subscription_event(
        "customer.subscription.updated",
        period_start=at(12, 9),
        period_end=at(1, 9, 2028),
        cancel_at_period_end=True,
        cancel_at=unix(at(1, 9, 2028)),
        canceled_at=unix(at(12, 20)),
    )
    await year.expect("active", paid_through=at(1, 9, 2028), access=True, access_until=at(1, 9, 2028))
    assert as_utc((await year.stored()).cancel_at) == at(1, 9, 2028)

    # 10. 2028-01-09: the cancellation takes effect (worker); Stripe deletes the subscription.
    clock.set(at(1, 9, 2028))
    await year.worker_runs()
    await year.expect("cancelled", paid_through=at(1, 9, 2028), access=False)
    await year.subscription_event(
        "customer.subscription.deleted",
        period_start=at(12, 9),
        period_end=at(1, 9, 2028),
        status="canceled",
        cancel_at_period_end=True,
        cancel_at=unix(at(1, 9, 2028)),
        canceled_at=unix(at(12, 20)),
        ended_at=unix(at(1, 9, 2028)),
    )
    clock.set(at(1, 10, 2028))  # the day after
    await year.worker_runs()
    await year.expect("cancelled", paid_through=at(1, 9, 2028), access=False)

    assert await year.history() == ["active", "past_due", "active", "paused", "active", "cancelled"]
