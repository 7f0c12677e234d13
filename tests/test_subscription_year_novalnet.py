"""The worked year of docs/subscriptions.md with signed Novalnet notifications, and actions sent to Novalnet.

Every notification goes through ``POST /webhooks/shop/novalnet``; what the table says
is read back at each row's date: status and paid-through on the subscription, access on
the member. Row 6 and 7 are played twice: Novalnet suspends and reactivates on its own,
or the merchant pauses until a date, einlass sends the pause to a stand-in speaking
Novalnet's subscription API, and the worker resumes it (and tells Novalnet) on that date.
"""

from __future__ import annotations

import base64
import itertools
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import Shop
from einlass.audit.service import Actor
from einlass.billing.subscriptions.actions import get_subscription, request_action
from einlass.billing.subscriptions.models import Subscription, SubscriptionAction
from einlass.billing.subscriptions.transitions import run_due_transitions
from einlass.clock import FrozenClock, as_utc
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.outbox.registry import build_worker
from einlass.outbox.worker import Worker
from einlass.tenants.models import Merchant
from helpers import has_access, member_by_email, post_novalnet
from payloads import novalnet as nn
from standin import Reply, Request, StandIn, serve

SUB = "14700000000000001"
EMAIL = "anna@example.com"
ADMIN = Actor("admin", "adm_test")


def ten(day: str) -> datetime:
    """10:00 UTC on a day of the table."""
    return datetime.fromisoformat(f"{day}T10:00:00+00:00")


def midnight(day: str) -> datetime:
    """Novalnet names days; einlass reads a day as 00:00 UTC."""
    return datetime.fromisoformat(f"{day}T00:00:00+00:00")


class Year:
    """One subscriber's year: the clock, the webhook endpoint, the worker, the stand-in API."""

    def __init__(
        self, client: httpx.AsyncClient, shop: Shop, db: Database, clock: FrozenClock, worker: Worker
    ):
        self.client, self.shop, self.db, self.clock, self.worker = client, shop, db, clock, worker
        self.tids = itertools.count(int(SUB) + 1)

    async def post(self, payload: dict[str, Any]) -> None:
        response = await post_novalnet(self.client, self.shop, payload)
        assert response.status_code == 200, response.text

    async def on(self, day: str) -> None:
        """Move the clock to 10:00 on ``day`` and let the worker catch up, as it would have."""
        self.clock.set(ten(day))
        await run_due_transitions(self.db)
        await self.worker.drain()

    async def renewal(self, next_cycle_date: str, **fields: Any) -> None:
        tid = str(next(self.tids))
        await self.post(
            nn.renewal(tid, parent_tid=SUB, amount=990, next_cycle_date=next_cycle_date, **fields)
        )

    async def subscription(self) -> Subscription:
        async with self.db.transaction() as session:
            row = await session.scalar(select(Subscription).where(Subscription.external_id == SUB))
            assert row is not None
            return row

    async def check(self, status: str, paid_through: str | None, access_until: str | None) -> None:
        """The table's row: status, paid through (a day, 00:00 UTC) and the end of access (None: none)."""
        row = await self.subscription()
        assert row.status == status
        assert (as_utc(row.paid_through) if row.paid_through else None) == (
            midnight(paid_through) if paid_through else None
        )
        member = await member_by_email(self.client, self.shop, EMAIL)
        assert member is not None
        assert has_access(member) == (access_until is not None)
        if access_until is not None:
            (premium,) = [a for a in member["access"] if a["area"] == "premium"]
            assert datetime.fromisoformat(premium["until"]) == midnight(access_until)

    async def act(self, kind: str, **params: Any) -> str:
        async with self.db.transaction() as session:
            merchant = await session.scalar(select(Merchant).where(Merchant.slug == self.shop.slug))
            assert merchant is not None
            row = await session.scalar(select(Subscription.id).where(Subscription.external_id == SUB))
            assert row is not None
            subscription = await get_subscription(session, merchant.id, row)
            action = await request_action(session, merchant, subscription, kind, actor=ADMIN, **params)
            return action.id

    async def action(self, action_id: str) -> SubscriptionAction:
        async with self.db.transaction() as session:
            action = await session.get(SubscriptionAction, action_id)
            assert action is not None
            return action


def novalnet_api(shop: Shop) -> Any:
    """Novalnet's subscription API: SUCCESS for the merchant's access key, else FAILURE."""
    expected = base64.b64encode(shop.novalnet_key.encode()).decode()

    def respond(request: Request) -> Reply:
        if request.headers.get("x-nn-access-key") != expected:
            return Reply(200, nn.api_answer("Authentication failed", status="FAILURE"))
        return Reply(200, nn.api_answer(subscription={"tid": int(SUB)}))

    return respond


@pytest.fixture
def api(sub_shop: Shop) -> Any:
    with serve(novalnet_api(sub_shop)) as standin:
        yield standin


@pytest.fixture
def year(
    client: httpx.AsyncClient,
    sub_shop: Shop,
    db: Database,
    clock: FrozenClock,
    settings: Settings,
    api: StandIn,
) -> Year:
    pointed = settings.model_copy(update={"novalnet_api_url": api.url})
    return Year(client, sub_shop, db, clock, build_worker(db, pointed))


async def subscribe(year: Year) -> None:
    year.clock.set(ten("2027-01-10"))
    await year.post(
        nn.subscription_payment(
            SUB, amount=990, email=EMAIL, tariff="tariff-sub-m", next_cycle_date="2027-02-10"
        )
    )


@pytest.mark.parametrize("pause_by", ["novalnet", "merchant"])
async def test_the_worked_year(year: Year, api: StandIn, pause_by: str) -> None:
    # 1. subscribes, first payment 9.90
    await subscribe(year)
    await year.check("active", "2027-02-10", "2027-02-13")

    # 2. renewals paid
    for day, next_day in [
        ("2027-02-10", "2027-03-10"),
        ("2027-03-10", "2027-04-10"),
        ("2027-04-10", "2027-05-10"),
    ]:
        await year.on(day)
        await year.renewal(next_day)
        await year.check(
            "active", next_day, (datetime.fromisoformat(next_day) + timedelta(days=3)).date().isoformat()
        )

    # 3. the renewal fails: past due, access through the grace period, also on 05-12
    await year.on("2027-05-10")
    await year.renewal("2027-06-10", result_status="FAILURE")
    await year.check("past_due", "2027-05-10", "2027-05-13")
    await year.on("2027-05-12")
    await year.check("past_due", "2027-05-10", "2027-05-13")

    # 4. the retry is paid, anchored to the cycle; 5. renewal paid
    await year.renewal("2027-06-10")
    await year.check("active", "2027-06-10", "2027-06-13")
    await year.on("2027-06-10")
    await year.renewal("2027-07-10")
    await year.check("active", "2027-07-10", "2027-07-13")

    # 6. paused on 06-25 with 15 days left, resume on 07-25
    await year.on("2027-06-25")
    if pause_by == "novalnet":
        await year.post(nn.suspend(SUB, next_cycle_date="2027-07-10"))
    else:
        action_id = await year.act("pause", resume_at=ten("2027-07-25"))
        await year.worker.drain()
        assert (await year.action(action_id)).status == "succeeded"
        assert [request.path for request in api.requests] == ["/subscription/suspend"]
        # Novalnet's own notification of the suspension counts once: the resume date stays.
        await year.post(nn.suspend(SUB, next_cycle_date="2027-07-10", action_id=action_id))
        assert as_utc((await year.subscription()).next_change_at) == ten("2027-07-25")
    # Paused with 15 days left: paid through stays where the pause found it (15 days after the
    # pause start) until the resume adds those days to the resume date.
    counted_from = ten("2027-06-25")
    paid_through = as_utc((await year.subscription()).paid_through)
    assert (paid_through.date() - counted_from.date()).days == 15
    await year.check("paused", paid_through.date().isoformat(), None)
    await year.on("2027-07-10")
    await year.check("paused", paid_through.date().isoformat(), None)

    # 7. resumes on 07-25: paid through 07-25 + 15 days
    await year.on("2027-07-25")
    if pause_by == "novalnet":
        await year.post(nn.reactivate(SUB, next_cycle_date="2027-08-09"))
    else:
        # The worker resumed it by date and told Novalnet, which confirms with its next charging day.
        assert [request.path for request in api.requests][-1] == "/subscription/reactivate"
        resumed_by = api.requests[-1].json()["custom"]["inputval1"]
        assert (await year.action(resumed_by)).status == "succeeded"
        await year.post(nn.reactivate(SUB, next_cycle_date="2027-08-09", action_id=resumed_by))
    await year.check("active", "2027-08-09", "2027-08-12")

    # 8. renewals paid
    days = ["2027-08-09", "2027-09-09", "2027-10-09", "2027-11-09", "2027-12-09", "2028-01-09"]
    for day, next_day in itertools.pairwise(days):
        await year.on(day)
        await year.renewal(next_day)
        await year.check(
            "active", next_day, (datetime.fromisoformat(next_day) + timedelta(days=3)).date().isoformat()
        )

    # 9. cancelled at period end: active until 2028-01-09, no grace
    await year.on("2027-12-20")
    if pause_by == "novalnet":
        await year.post(nn.subscription_cancel(SUB, reason="Product is costly"))
    else:
        action_id = await year.act("cancel", reason="too expensive")
        await year.worker.drain()
        assert api.requests[-1].json()["subscription"] == {"tid": int(SUB), "reason": "too expensive"}
        await year.post(nn.subscription_cancel(SUB, reason="too expensive", action_id=action_id))
    await year.check("active", "2028-01-09", "2028-01-09")
    assert as_utc((await year.subscription()).cancel_at) == midnight("2028-01-09")

    # 10. the cancellation takes effect; still so the day after
    await year.on("2028-01-09")
    await year.check("cancelled", "2028-01-09", None)
    await year.on("2028-01-10")
    await year.check("cancelled", "2028-01-09", None)
    if pause_by == "novalnet":
        assert api.requests == [], "what Novalnet did itself is not sent back to it"


# -- actions the gateway refuses or cannot take yet ----------------------------------------------------


async def test_refused_pause_leaves_the_subscription_active_with_access(year: Year, api: StandIn) -> None:
    await subscribe(year)
    api.respond = lambda _: Reply(200, nn.api_answer("Subscription is already suspended", status="FAILURE"))
    action_id = await year.act("pause")
    await year.check("paused", "2027-02-10", None)  # applied here at once
    await year.worker.drain()
    action = await year.action(action_id)
    assert (action.status, action.error) == ("refused", "Subscription is already suspended")
    assert action.response is not None and action.response["result"]["status"] == "FAILURE"
    await year.check("active", "2027-02-10", "2027-02-13")


async def test_wrong_access_key_refuses_the_action_with_novalnets_message(
    year: Year, api: StandIn, sub_shop: Shop
) -> None:
    await subscribe(year)
    api.respond = novalnet_api(Shop(slug="other", merchant_id="", api_key="", novalnet_key="another-project"))
    action_id = await year.act("cancel")
    await year.worker.drain()
    action = await year.action(action_id)
    assert (action.status, action.error) == ("refused", "Authentication failed")
    assert (
        api.requests[0].headers["x-nn-access-key"]
        == base64.b64encode(sub_shop.novalnet_key.encode()).decode()
    )
    row = await year.subscription()
    assert (row.status, row.cancel_at) == ("active", None)


async def test_pause_is_retried_after_a_server_error(year: Year, api: StandIn, sub_shop: Shop) -> None:
    await subscribe(year)
    answers = iter([Reply(500, b"Internal Server Error"), Reply(200, nn.api_answer())])
    api.respond = lambda _: next(answers)
    action_id = await year.act("pause")
    await year.worker.drain()
    action = await year.action(action_id)
    assert (action.status, action.attempts) == ("pending", 1)
    assert action.error is not None and "HTTP 500" in action.error
    await year.check("paused", "2027-02-10", None)

    year.clock.advance(timedelta(minutes=1))  # past the job's backoff
    await year.worker.drain()
    assert (await year.action(action_id)).status == "succeeded"
    assert [request.path for request in api.requests] == ["/subscription/suspend"] * 2
    await year.check("paused", "2027-02-10", None)


# -- Novalnet's own turns ------------------------------------------------------------------------------


async def test_cancel_after_a_failed_renewal_ends_the_subscription_at_once(year: Year) -> None:
    await subscribe(year)
    await year.on("2027-02-10")
    await year.renewal("2027-03-10", result_status="FAILURE")
    await year.check("past_due", "2027-02-10", "2027-02-13")
    # Novalnet gives up on the subscription: nothing is paid any more, so no grace either.
    await year.post(nn.subscription_cancel(SUB, reason="Renewal failed"))
    await year.check("cancelled", "2027-02-10", None)


async def test_invoice_subscription_opens_when_the_money_comes(year: Year) -> None:
    year.clock.set(ten("2027-01-10"))
    await year.post(
        nn.subscription_payment(
            SUB,
            amount=990,
            email=EMAIL,
            tariff="tariff-sub-m",
            next_cycle_date="2027-02-10",
            status="PENDING",
        )
    )
    assert (await year.subscription()).status == "pending"
    assert await member_by_email(year.client, year.shop, EMAIL) is None
    year.clock.set(ten("2027-01-12"))
    await year.post(nn.credit("14700000000000099", parent_tid=SUB, amount=990))
    await year.check("active", "2027-02-10", "2027-02-13")


async def test_refunded_renewal_pays_for_nothing(year: Year) -> None:
    await subscribe(year)
    await year.on("2027-02-10")
    await year.renewal("2027-03-10")
    await year.check("active", "2027-03-10", "2027-03-13")
    renewed = str(int(SUB) + 1)
    await year.post(nn.refund("14700000000000098", parent_tid=renewed, amount=990))
    await year.check("past_due", "2027-02-10", "2027-02-13")
