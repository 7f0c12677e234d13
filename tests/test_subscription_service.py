"""The subscription service end to end below the gateways: facts in, grants and status out."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from conftest import Shop
from einlass.billing.gateways.base import Customer, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.subscriptions.models import Subscription
from einlass.billing.subscriptions.transitions import run_due_transitions
from einlass.clock import FrozenClock
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.members.access import GrantWindow, MemberStanding, may_enter
from einlass.members.models import Grant, Member
from subscription_support import deliver, paid

ANNA = Customer(email="anna@example.com", name="Anna", locale="de")


async def enters(db: Database, email: str, at: datetime, area: str = "premium") -> bool:
    async with db.transaction() as session:
        member = await session.scalar(select(Member).where(Member.email == email))
        if member is None:
            return False
        grants = (await session.scalars(select(Grant).where(Grant.member_id == member.id))).all()
        from einlass.billing.models import Area

        area_id = await session.scalar(
            select(Area.id).where(Area.slug == area, Area.merchant_id == member.merchant_id)
        )
        assert area_id is not None
        windows = [GrantWindow(g.area_id, g.starts_at, g.ends_at, g.revoked_at) for g in grants]
        return may_enter(
            MemberStanding(member.locked_at is not None, member.deleted_at is not None), windows, area_id, at
        )


async def test_monthly_subscription_renews_pauses_and_expires(
    db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    start = clock.now()
    created = SubscriptionEvent(
        Kind.CREATED, "s1", "created", occurred_at=start, product_ref="sub-monthly", customer=ANNA
    )
    await deliver(db, settings, sub_shop, created, *paid("s1", "p1", start, customer=ANNA))
    assert await enters(db, "anna@example.com", start + timedelta(days=30))
    # One month plus three days of grace, then the door closes by itself.
    assert await enters(db, "anna@example.com", start + timedelta(days=33))
    assert not await enters(db, "anna@example.com", start + timedelta(days=35))

    clock.advance(timedelta(days=31))
    assert await run_due_transitions(db) == 1
    async with db.transaction() as session:
        subscription = await session.scalar(select(Subscription))
        assert subscription is not None and subscription.status == "past_due"

    await deliver(db, settings, sub_shop, *paid("s1", "p2", clock.now(), customer=ANNA))
    assert await enters(db, "anna@example.com", start + timedelta(days=60))

    pause_at = clock.now() + timedelta(days=1)
    await deliver(
        db,
        settings,
        sub_shop,
        SubscriptionEvent(
            Kind.PAUSED, "s1", "pause-1", occurred_at=pause_at, resume_at=pause_at + timedelta(days=10)
        ),
    )
    assert not await enters(db, "anna@example.com", pause_at + timedelta(days=5))
    assert await enters(db, "anna@example.com", pause_at + timedelta(days=11))
    clock.advance(timedelta(days=200))
    await run_due_transitions(db)
    async with db.transaction() as session:
        subscription = await session.scalar(select(Subscription))
        assert subscription is not None and subscription.status == "expired"


async def test_renewal_before_its_subscription_is_parked_then_applied(
    db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    start = clock.now()
    await deliver(db, settings, sub_shop, *paid("s2", "p2", start + timedelta(days=31), customer=ANNA))
    assert not await enters(db, "anna@example.com", start + timedelta(days=40))


async def test_a_worker_that_was_down_lands_on_the_current_state_once(
    db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    from einlass.billing.subscriptions.models import SubscriptionStatusChange

    start = clock.now()
    created = SubscriptionEvent(
        Kind.CREATED, "s3", "created", occurred_at=start, product_ref="sub-monthly", customer=ANNA
    )
    await deliver(db, settings, sub_shop, created, *paid("s3", "p1", start, customer=ANNA))
    clock.advance(timedelta(days=120))
    assert await run_due_transitions(db) == 1
    assert await run_due_transitions(db) == 0  # idempotent: nothing is due any more
    async with db.transaction() as session:
        subscription = await session.scalar(select(Subscription).where(Subscription.external_id == "s3"))
        assert subscription is not None
        assert subscription.status == "expired" and subscription.next_change_at is None
        changes = (
            await session.scalars(
                select(SubscriptionStatusChange).where(
                    SubscriptionStatusChange.subscription_id == subscription.id
                )
            )
        ).all()
    # Recorded at the instant the rules say it happened (paid period + 3 days grace), not when the worker woke.
    expired = [change for change in changes if change.to_status == "expired"]
    assert len(expired) == 1
    assert expired[0].at == subscription.paid_through + timedelta(days=3)
    assert expired[0].cause == "time"
