"""Subscriptions through the service and the database, driven by a random gateway, clock and merchant.

A Hypothesis state machine plays a gateway for three subscriptions of one
member (created, renewal paid, renewal failed, paused, resumed, cancelled,
refunds). What it says arrives at once or is kept in a pool that any later step
may deliver, late, out of order, or again. Between deliveries the clock moves
(then the worker's ``run_due_transitions``), and the merchant pauses, resumes or
cancels (``request_action``; the job is never sent, so the action stays applied).

After every step einlass must agree with the model of the documented rules
(``Life`` in test_subscription_rules.py, not ``rules.py``), fed with the events
actually delivered in time order: the member enters exactly when a subscription
has paid, unpaused time (plus grace) covering now; each purchase is one row; and
each subscription shows its model's phase and opens the door by its own grants,
so a late cancellation of one never ends another.

The machine runs in a thread; its database calls run on the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeAlias, TypeVar

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, text

from conftest import Shop, add_subscription_plans, make_shop
from einlass.audit.service import Actor
from einlass.billing.gateways.base import Customer, FactKind, PaymentEvent, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.models import Area
from einlass.billing.subscriptions.actions import request_action
from einlass.billing.subscriptions.models import Subscription
from einlass.billing.subscriptions.rules import Status, SubFact
from einlass.billing.subscriptions.transitions import run_due_transitions
from einlass.clock import FrozenClock
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.db.metadata import metadata
from einlass.errors import Conflict
from einlass.members.access import GrantWindow, MemberStanding, may_enter
from einlass.members.models import Grant, Member
from einlass.tenants.models import Merchant
from subscription_support import deliver, paid
from test_subscription_rules import PHASES, Life, life_of

T = TypeVar("T")

START = datetime(2027, 1, 10, 10, 0, tzinfo=UTC)
REFS = ("sub-a", "sub-b", "sub-c")  # plan monthly: P1M, grace P3D, opens premium
ANNA = Customer(email="anna@example.com", name="Anna", locale="de")
MERCHANT = Actor("admin", "stateful-test")


# --- the system -----------------------------------------------------------------------------------

Event: TypeAlias = PaymentEvent | SubscriptionEvent


async def deliver_with_parking(
    db: Database, settings: Settings, shop: Shop, waiting: list[Event], *events: Event
) -> None:
    """Deliver, then retry what waits for its parent, as the inbox does with parked deliveries.

    The inbox re-parses a parked delivery's stored body; these events have no
    body, so the waiting ones are kept in ``waiting`` and tried after every delivery.
    """
    waiting.extend(await deliver(db, settings, shop, *events))
    progress = True
    while progress and waiting:
        still = await deliver(db, settings, shop, *waiting)
        progress = len(still) < len(waiting)
        waiting[:] = still


async def fresh_shop(db: Database) -> Shop:
    """Empty tables (as the ``db`` fixture does) and the ``sub_shop`` merchant."""
    async with db.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(text(f"DELETE FROM {table.name}"))
    shop = await make_shop(db)
    await add_subscription_plans(db, shop)
    return shop


def created(ref: str, payment: str, at: datetime) -> tuple[Event, ...]:
    return (
        SubscriptionEvent(
            Kind.CREATED, ref, "created", occurred_at=at, product_ref="sub-monthly", customer=ANNA
        ),
        *renewal(ref, payment, at),
    )


def renewal(ref: str, payment: str, at: datetime) -> tuple[Event, ...]:
    return paid(ref, payment, at, customer=ANNA, subscription_ref=ref)


# --- the machine ----------------------------------------------------------------------------------


@dataclass
class World:
    db: Database
    settings: Settings
    clock: FrozenClock
    run: Callable[[Coroutine[Any, Any, Any]], Any]


def as_fact(event: SubscriptionEvent) -> SubFact:
    """What the model reads of a delivered event."""
    assert event.occurred_at is not None
    return SubFact(
        event.fact_key,
        event.kind,
        event.occurred_at,
        payment_ref=event.payment_ref,
        resume_at=event.resume_at,
        at_period_end=event.at_period_end,
    )


any_choice = st.integers(min_value=0, max_value=10**6)
# Renewals are what a gateway says most; creations come first.
GATEWAY_SAYS = st.sampled_from(
    ["creates", "renews", "renews", "renews", "creates", "fails", "pauses", "resumes", "cancels", "refunds"]
)
MINUTES = st.integers(1, 3 * 24 * 60) | st.integers(1, 40 * 24 * 60) | st.sampled_from([1440, 4320, 43200])
ACTION_FACTS = {"pause": Kind.PAUSED, "resume": Kind.RESUMED, "cancel": Kind.CANCELLED}


class SubscriptionMachine(RuleBasedStateMachine):
    world: ClassVar[World]  # set by the test that runs it

    def __init__(self) -> None:
        super().__init__()
        self.world.clock.set(START)
        self.shop: Shop = self.world.run(fresh_shop(self.world.db))
        self.waiting: list[Event] = []  # parked, as the inbox keeps them
        self.pool: list[tuple[Event, ...]] = []  # said by the gateway, not delivered yet
        self.delivered: list[tuple[Event, ...]] = []
        self.heard: set[tuple[str, SubFact]] = set()  # by subscription: delivered, or the merchant's own
        self.refunded: set[str] = set()
        self.created_refs: list[str] = []  # by the gateway, in order
        self.payments: list[str] = []
        self.numbers = iter(range(10**6))

    @property
    def now(self) -> datetime:
        return self.world.clock.now()

    def tick(self) -> datetime:
        """Each thing said gets an instant of its own: the order at one instant is the rule's business."""
        self.move_clock(timedelta(seconds=1))
        return self.now

    def move_clock(self, delta: timedelta) -> None:
        self.world.clock.advance(delta)
        self.world.run(run_due_transitions(self.world.db))

    def receive(self, delivery: tuple[Event, ...]) -> None:
        db, settings = self.world.db, self.world.settings
        self.world.run(deliver_with_parking(db, settings, self.shop, self.waiting, *delivery))
        for event in delivery:
            if isinstance(event, SubscriptionEvent):
                self.heard.add((event.subscription_ref, as_fact(event)))
            elif event.fact is FactKind.REFUND:
                self.refunded.add(event.payment_ref)

    def lives(self) -> dict[str, Life]:
        """The subscriptions einlass knows (their creation was delivered), by the model."""
        known = sorted({ref for ref, fact in self.heard if fact.kind is Kind.CREATED})
        return {
            ref: life_of(
                [f for r, f in self.heard if r == ref and f.payment_ref not in self.refunded], self.now
            )
            for ref in known
        }

    # -- the gateway --

    @initialize()
    def gateway_creates_the_first(self) -> None:
        self.gateway_says("creates", 0, None, at_period_end=True, late=False)

    @rule(
        what=GATEWAY_SAYS,
        choice=any_choice,
        days=st.none() | st.integers(1, 40),
        at_period_end=st.booleans(),
        late=st.booleans(),
    )
    def gateway_says(self, what: str, choice: int, days: int | None, at_period_end: bool, late: bool) -> None:
        """The gateway says something now; it arrives at once, or later from the pool."""
        delivery = self.say(what, choice, days, at_period_end)
        if late:
            self.pool.append(delivery)
        else:
            self.receive(delivery)
            self.delivered.append(delivery)

    def say(self, what: str, choice: int, days: int | None, at_period_end: bool) -> tuple[Event, ...]:
        at, number = self.tick(), next(self.numbers)
        fresh = [ref for ref in REFS if ref not in self.created_refs]
        if fresh and (what == "creates" or not self.created_refs):
            ref, payment = fresh[choice % len(fresh)], f"pay-{number}"
            self.created_refs.append(ref)
            self.payments.append(payment)
            return created(ref, payment, at)
        ref = self.created_refs[choice % len(self.created_refs)]
        if what in ("creates", "renews"):
            payment = f"pay-{number}"
            self.payments.append(payment)
            return renewal(ref, payment, at)
        if what == "refunds":
            payment = self.payments[choice % len(self.payments)]
            return (
                PaymentEvent(FactKind.REFUND, payment, "refund", amount=990, currency="EUR", occurred_at=at),
            )
        kind = {"fails": Kind.RENEWAL_FAILED, "pauses": Kind.PAUSED, "resumes": Kind.RESUMED}.get(
            what, Kind.CANCELLED
        )
        resume_at = at + timedelta(days=days) if days and kind is Kind.PAUSED else None
        key = f"{kind.value}:{number}"
        return (
            SubscriptionEvent(
                kind, ref, key, occurred_at=at, resume_at=resume_at, at_period_end=at_period_end
            ),
        )

    # -- late deliveries, time, the merchant --

    @precondition(lambda self: self.pool or self.delivered)
    @rule(choice=any_choice, again=st.booleans())
    def delivered_late(self, choice: int, again: bool) -> None:
        """Something from the pool arrives; or something that arrived already, again."""
        if again or not self.pool:
            self.receive(self.delivered[choice % len(self.delivered)])
            return
        delivery = self.pool.pop(choice % len(self.pool))
        self.receive(delivery)
        self.delivered.append(delivery)

    @rule(minutes=MINUTES)
    def time_passes(self, minutes: int) -> None:
        self.move_clock(timedelta(minutes=minutes))

    @precondition(lambda self: self.lives())
    @rule(
        choice=any_choice,
        kind=st.sampled_from(sorted(ACTION_FACTS)),
        resume_in_days=st.none() | st.integers(1, 40),
        at_period_end=st.booleans(),
    )
    def merchant_acts(self, choice: int, kind: str, resume_in_days: int | None, at_period_end: bool) -> None:
        known = sorted(self.lives())
        ref, at = known[choice % len(known)], self.tick()
        resume_at = at + timedelta(days=resume_in_days) if resume_in_days and kind == "pause" else None
        if self.world.run(self.request(ref, kind, resume_at, at_period_end)):
            key = f"action:{next(self.numbers)}"
            fact = SubFact(key, ACTION_FACTS[kind], at, resume_at=resume_at, at_period_end=at_period_end)
            self.heard.add((ref, fact))

    async def request(self, ref: str, kind: str, resume_at: datetime | None, at_period_end: bool) -> bool:
        async with self.world.db.transaction() as session:
            merchant = await session.get_one(Merchant, self.shop.merchant_id)
            subscription = await session.scalar(select(Subscription).where(Subscription.external_id == ref))
            assert subscription is not None
            try:
                await request_action(
                    session,
                    merchant,
                    subscription,
                    kind,
                    actor=MERCHANT,
                    resume_at=resume_at,
                    at_period_end=at_period_end,
                )
            except Conflict:  # paused already, not paused, ended: the merchant is told no
                return False
        return True

    # -- what must hold --

    @invariant()
    def einlass_agrees_with_the_model(self) -> None:
        lives, now = self.lives(), self.now
        seen = self.world.run(observe(self.world.db, now))
        # One purchase, one row, however often its creation was delivered.
        assert sorted(seen.rows) == sorted(lives), (seen.rows, lives)
        for ref, life in lives.items():
            status, enters = seen.rows[ref]
            assert Status(status) in PHASES[life.phase()], (ref, status, life)
            # A late cancellation of one subscription leaves the others alone.
            assert enters == life.may_enter(now), (ref, life)
        assert seen.member_enters == any(life.may_enter(now) for life in lives.values()), lives


@dataclass(frozen=True)
class Seen:
    rows: dict[str, tuple[str, bool]]  # ref: (stored status, its grants let the member in)
    member_enters: bool


async def observe(db: Database, now: datetime) -> Seen:
    """What einlass says now: each subscription's row and grants, and the member's door."""
    async with db.transaction() as session:
        counts = await session.execute(
            select(Subscription.external_id, func.count()).group_by(Subscription.external_id)
        )
        assert all(count == 1 for _, count in counts), "one purchase became two subscriptions"
        subscriptions = (await session.scalars(select(Subscription))).all()
        member = await session.scalar(select(Member).where(Member.email == ANNA.email))
        area_id = await session.scalar(select(Area.id).where(Area.slug == "premium"))
        grants = (
            []
            if member is None
            else (await session.scalars(select(Grant).where(Grant.member_id == member.id))).all()
        )
    standing = MemberStanding(
        member is not None and member.locked_at is not None,
        member is not None and member.deleted_at is not None,
    )

    def enters(source_id: str | None) -> bool:
        windows = [
            GrantWindow(g.area_id, g.starts_at, g.ends_at, g.revoked_at)
            for g in grants
            if source_id is None or g.source_id == source_id
        ]
        return member is not None and area_id is not None and may_enter(standing, windows, area_id, now)

    rows = {s.external_id: (s.status, enters(s.id)) for s in subscriptions}
    return Seen(rows, enters(None))


MACHINE_SETTINGS = hypothesis_settings(
    # EINLASS_STATEFUL_EXAMPLES=500 for a long run.
    max_examples=int(os.environ.get("EINLASS_STATEFUL_EXAMPLES", "40")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


async def test_subscriptions_follow_the_model_under_any_delivery_order(
    db: Database, settings: Settings, clock: FrozenClock
) -> None:
    if not db.is_sqlite:
        pytest.skip("one backend is enough for the random walk; the service tests cover PostgreSQL")
    loop = asyncio.get_running_loop()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    here = World(db, settings, clock, run)

    class Machine(SubscriptionMachine):
        world = here

    await asyncio.to_thread(run_state_machine_as_test, Machine, settings=MACHINE_SETTINGS)


# --- the case the machine must never get wrong, spelled out ---------------------------------------


@pytest.mark.parametrize("cancel_arrives", ["last", "first"])
async def test_a_late_cancellation_of_an_old_subscription_leaves_the_newer_one_alone(
    db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock, cancel_arrives: str
) -> None:
    """A is bought and cancelled at once, B later; A's cancellation arrives last, or first (parked)."""
    cancel_a = SubscriptionEvent(
        Kind.CANCELLED, "sub-a", "cancelled", occurred_at=START + timedelta(days=1), at_period_end=False
    )
    deliveries = [created("sub-a", "pay-a", START), created("sub-b", "pay-b", START + timedelta(days=2))]
    deliveries.insert(len(deliveries) if cancel_arrives == "last" else 0, (cancel_a,))
    clock.set(START + timedelta(days=3))
    waiting: list[Event] = []
    for delivery in deliveries:
        await deliver_with_parking(db, settings, sub_shop, waiting, *delivery)
    assert waiting == []
    clock.advance(timedelta(days=10))
    await run_due_transitions(db)

    seen = await observe(db, clock.now())
    assert seen.rows == {"sub-a": ("cancelled", False), "sub-b": ("active", True)}
    assert seen.member_enters
