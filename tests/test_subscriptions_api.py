"""The merchant's subscription API: plans with terms, dynamic orders, subscriptions, actions, figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select

from conftest import Shop, make_shop
from einlass.billing.gateways.base import Customer, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.subscriptions.models import Subscription
from einlass.billing.subscriptions.transitions import run_due_transitions
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.outbox.worker import Worker
from einlass.tenants.models import GatewayAccount
from helpers import has_access
from subscription_support import deliver, paid

API = "/api/v1"
START = datetime(2027, 1, 10, 10, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


async def subscribe(
    db: Database,
    settings: Settings,
    shop: Shop,
    ref: str,
    at: datetime,
    *,
    product: str = "sub-monthly",
    email: str = "anna@example.com",
    amount: int | None = None,
    currency: str | None = None,
    interval: str | None = None,
) -> str:
    """A subscription, created and paid at ``at``; returns its id."""
    created = SubscriptionEvent(
        Kind.CREATED,
        ref,
        f"created:{ref}",
        occurred_at=at,
        product_ref=product,
        customer=Customer(email=email, name=email.split("@")[0].title(), locale="de"),
        amount=amount,
        currency=currency,
        interval=interval,
    )
    price = {"sub-monthly": 990, "sub-yearly": 9900}.get(product, amount or 0)
    await deliver(db, settings, shop, created, *paid(ref, f"{ref}-1", at, price, currency or "EUR"))
    async with db.transaction() as session:
        found = await session.scalar(select(Subscription.id).where(Subscription.external_id == ref))
    assert found is not None
    return found


async def call(
    client: httpx.AsyncClient, shop: Shop, method: str, path: str, expected: int = 200, **kwargs: Any
) -> Any:
    headers = {**shop.auth, **kwargs.pop("headers", {})}
    response = await client.request(method, f"{API}{path}", headers=headers, **kwargs)
    assert response.status_code == expected, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


async def plan_id(client: httpx.AsyncClient, shop: Shop, slug: str) -> str:
    return (await call(client, shop, "GET", f"/plans/{slug}"))["id"]  # type: ignore[no-any-return]


async def member_of(client: httpx.AsyncClient, shop: Shop, email: str) -> dict[str, Any]:
    listing = await call(client, shop, "GET", "/members", params={"email": email})
    return await call(client, shop, "GET", f"/members/{listing['data'][0]['id']}")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- plans and orders


async def test_a_subscription_plan_keeps_every_term_and_shows_it(client, sub_shop):
    body = {
        "slug": "premium-sub",
        "name": "Premium",
        "amount": 1990,
        "currency": "eur",
        "areas": ["premium", "archive"],
        "gateway_refs": {"stripe": ["price_premium"]},
        "kind": "subscription",
        "interval": "P1M",
        "trial_period": "P14D",
        "first_amount": 99,
        "grace_period": "P5D",
        "min_term": "P6M",
        "max_cycles": 12,
        "member_can_pause": True,
        "member_can_cancel": False,
    }
    plan = await call(client, sub_shop, "POST", "/plans", 201, json=body)
    terms = {
        "interval": "P1M",
        "trial_period": "P14D",
        "first_amount": 99,
        "grace_period": "P5D",
        "min_term": "P6M",
        "max_cycles": 12,
        "dynamic": False,
        "min_amount": None,
        "max_amount": None,
        "min_interval": None,
        "max_interval": None,
        "member_can_pause": True,
        "member_can_cancel": False,
    }
    assert plan["kind"] == "subscription" and plan["subscription"] == terms
    assert plan["access_period"] == "P1M" and plan["currency"] == "EUR"
    assert plan["areas"] == ["archive", "premium"] and plan["gateway_refs"] == {"stripe": ["price_premium"]}
    assert await call(client, sub_shop, "GET", "/plans/premium-sub") == plan

    dynamic = await call(
        client,
        sub_shop,
        "POST",
        "/plans",
        201,
        json={
            "slug": "pay-what-you-want",
            "name": "Pay what you want",
            "amount": 500,
            "currency": "EUR",
            "areas": ["premium"],
            "kind": "subscription",
            "dynamic": True,
            "min_amount": 100,
            "max_amount": 5000,
            "min_interval": "P1W",
            "max_interval": "P3M",
        },
    )
    assert dynamic["access_period"] is None
    assert dynamic["subscription"] == {
        **terms,
        "interval": None,
        "trial_period": None,
        "first_amount": None,
        "grace_period": "P3D",
        "min_term": None,
        "max_cycles": None,
        "dynamic": True,
        "min_amount": 100,
        "max_amount": 5000,
        "min_interval": "P1W",
        "max_interval": "P3M",
        "member_can_pause": False,
        "member_can_cancel": True,
    }
    listed = {plan["slug"]: plan for plan in (await call(client, sub_shop, "GET", "/plans"))["data"]}
    assert listed["month"]["kind"] == "one_time" and listed["month"]["subscription"] is None
    assert listed["lifetime"]["access_period"] == "lifetime"
    assert listed["monthly"]["subscription"]["member_can_pause"] is True


async def test_bad_subscription_terms_are_refused_naming_the_field(client, sub_shop):
    base = {"name": "Bad", "amount": 990, "currency": "EUR", "areas": ["premium"], "kind": "subscription"}
    cases = [
        ({"interval": "monthly"}, "interval", "interval 'monthly' is not an ISO 8601 duration"),
        ({}, "interval", "needs an interval"),
        ({"interval": "P1M", "trial_period": "P0D"}, "trial_period", "must be positive"),
        ({"interval": "P1M", "max_cycles": 0}, "max_cycles", "at least 1"),
        (
            {"dynamic": True, "min_amount": 900, "max_amount": 100},
            "min_amount",
            "must not exceed max_amount",
        ),
        ({"interval": "P1M", "access_period": "P30D"}, "access_period", "takes interval"),
        ({"kind": "one_time", "access_period": "P30D", "interval": "P1M"}, "interval", "set kind"),
        ({"interval": "P1M", "kind": "weekly"}, "kind", "subscription"),
    ]
    for index, (fields, param, message) in enumerate(cases):
        response = await client.post(
            f"{API}/plans", headers=sub_shop.auth, json={**base, "slug": f"bad-{index}", **fields}
        )
        error = error_of(response, 400, "parameter_invalid")
        assert error["param"] == param and message in error["message"], (fields, error)
    slugs = {plan["slug"] for plan in (await call(client, sub_shop, "GET", "/plans"))["data"]}
    assert not any(slug.startswith("bad-") for slug in slugs)


async def test_an_order_for_a_dynamic_plan_stays_within_its_bounds(client, sub_shop):
    order = await call(
        client, sub_shop, "POST", "/orders", 201, json={"plan": "flex", "amount": 2500, "interval": "P1M"}
    )
    assert order["amount"] == 2500 and order["metadata"] == {"interval": "P1M"}
    assert (await call(client, sub_shop, "POST", "/orders", 201, json={"plan": "flex"}))["amount"] == 500

    refused = [
        ({"plan": "flex", "amount": 50}, "amount", "below the plan's minimum 100"),
        ({"plan": "flex", "amount": 20000}, "amount", "above the plan's maximum 10000"),
        ({"plan": "flex", "interval": "P2Y"}, "interval", "longer than P1Y"),
        ({"plan": "flex", "interval": "P1D"}, "interval", "shorter than P1W"),
        ({"plan": "flex", "interval": "weekly"}, "interval", "not an ISO 8601 duration"),
        ({"plan": "monthly", "amount": 2500}, "amount", "fixed price"),
    ]
    for body, param, message in refused:
        error = error_of(
            await client.post(f"{API}/orders", headers=sub_shop.auth, json=body), 400, "parameter_invalid"
        )
        assert error["param"] == param and message in error["message"], (body, error)
    assert len((await call(client, sub_shop, "GET", "/orders"))["data"]) == 2


# --------------------------------------------------------------------------- reading subscriptions


async def test_subscriptions_are_listed_newest_first_filtered_and_paginated(
    client, db, settings, sub_shop, clock
):
    clock.set(START)
    anna = await subscribe(db, settings, sub_shop, "s-anna", START)
    bob = await subscribe(
        db, settings, sub_shop, "s-bob", START, product="sub-yearly", email="bob@example.com"
    )
    carol = await subscribe(db, settings, sub_shop, "s-carol", START, email="carol@example.com")
    await call(client, sub_shop, "POST", f"/subscriptions/{carol}/pause")

    async def ids(**params: Any) -> list[str]:
        listing = await call(client, sub_shop, "GET", "/subscriptions", params=params)
        return [item["id"] for item in listing["data"]]

    assert await ids() == [carol, bob, anna]
    assert await ids(status="paused") == [carol]
    assert await ids(status="active") == [bob, anna]
    assert await ids(plan="yearly") == [bob]
    assert await ids(plan=await plan_id(client, sub_shop, "monthly")) == [carol, anna]
    assert await ids(plan="no-such-plan") == []
    anna_member = (await member_of(client, sub_shop, "anna@example.com"))["id"]
    assert await ids(member=anna_member) == [anna]

    first = await call(client, sub_shop, "GET", "/subscriptions", params={"limit": 2})
    assert [item["id"] for item in first["data"]] == [carol, bob]
    assert first["has_more"] and first["next_cursor"] == bob and first["url"] == "/api/v1/subscriptions"
    rest = await call(
        client, sub_shop, "GET", "/subscriptions", params={"limit": 2, "starting_after": first["next_cursor"]}
    )
    assert [item["id"] for item in rest["data"]] == [anna] and not rest["has_more"]

    error = error_of(
        await client.get(f"{API}/subscriptions", headers=sub_shop.auth, params={"status": "running"}),
        400,
        "parameter_invalid",
    )
    assert error["param"] == "status" and "past_due" in error["message"]

    # Another merchant sees none of them, and cannot read or act on one by id.
    other = await make_shop(db, "other")
    assert (await call(client, other, "GET", "/subscriptions"))["data"] == []
    error_of(await client.get(f"{API}/subscriptions/{anna}", headers=other.auth), 404, "resource_missing")
    error_of(
        await client.post(f"{API}/subscriptions/{anna}/pause", headers=other.auth), 404, "resource_missing"
    )


async def test_a_subscription_shows_its_stored_state_history_and_actions(
    client, db, settings, sub_shop, clock
):
    clock.set(START)
    sub_id = await subscribe(db, settings, sub_shop, "s-detail", START)
    detail = await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}")
    member = await member_of(client, sub_shop, "anna@example.com")
    monthly = await plan_id(client, sub_shop, "monthly")
    assert detail == {
        **detail,
        "id": sub_id,
        "object": "subscription",
        "status": "active",
        "plan": monthly,
        "initial_plan": monthly,
        "pending_plan": None,
        "amount": 990,
        "currency": "EUR",
        "interval": "P1M",
        "started_at": START.isoformat(),
        "paid_through": datetime(2027, 2, 10, 10, tzinfo=UTC).isoformat(),
        "access_until": datetime(2027, 2, 13, 10, tzinfo=UTC).isoformat(),
        "paused_at": None,
        "resume_at": None,
        "cancel_at": None,
        "ended_at": None,
        "cycles_paid": 1,
        "member": member["id"],
        "gateway": "generic",
        "external_id": "s-detail",
        "actions": [],
    }
    assert [(c["from"], c["to"], c["at"]) for c in detail["status_history"]] == [
        ("pending", "active", START.isoformat())
    ]
    assert member["subscriptions"] == [
        {
            "id": sub_id,
            "object": "subscription",
            "status": "active",
            "plan": monthly,
            "paid_through": detail["paid_through"],
            "access_until": detail["access_until"],
        }
    ]
    error_of(
        await client.get(f"{API}/subscriptions/sub_nope", headers=sub_shop.auth), 404, "resource_missing"
    )


# --------------------------------------------------------------------------- actions


async def test_pause_resume_and_cancel_change_status_and_access_at_once_and_queue_the_gateway_call(
    client, db, settings, sub_shop, clock
):
    clock.set(START)
    sub_id = await subscribe(db, settings, sub_shop, "s-act", START)
    clock.advance(timedelta(days=10))
    resume_at = clock.now() + timedelta(days=10)

    paused = await call(
        client, sub_shop, "POST", f"/subscriptions/{sub_id}/pause", json={"resume_at": resume_at.isoformat()}
    )
    assert paused["status"] == "paused" and paused["resume_at"] == resume_at.isoformat()
    assert paused["access_until"] is None and paused["paused_at"] == clock.now().isoformat()
    action = paused["action"]
    assert action["id"].startswith("sac_") and action["kind"] == "pause" and action["status"] == "pending"
    assert action["params"] == {"resume_at": resume_at.isoformat()}
    assert action["requested_by"].startswith("api_key:key_")
    assert not has_access(await member_of(client, sub_shop, "anna@example.com"))
    jobs = (await call(client, sub_shop, "GET", "/jobs", params={"limit": 100}))["data"]
    assert [job["payload"] for job in jobs if job["kind"] == "subscription.action"] == [
        {"action_id": action["id"]}
    ]

    clock.advance(timedelta(days=2))
    resumed = await call(client, sub_shop, "POST", f"/subscriptions/{sub_id}/resume")
    # The 21 paid days left at the pause run from the resume.
    assert resumed["status"] == "active" and resumed["action"]["kind"] == "resume"
    assert resumed["paid_through"] == (clock.now() + timedelta(days=21)).isoformat()
    assert has_access(await member_of(client, sub_shop, "anna@example.com"))

    cancelled = await call(client, sub_shop, "POST", f"/subscriptions/{sub_id}/cancel")
    assert cancelled["status"] == "active" and cancelled["cancel_at"] == resumed["paid_through"]
    assert cancelled["access_until"] == resumed["paid_through"]  # no grace after a cancellation
    assert cancelled["action"]["params"] == {"at_period_end": True}

    ended = await call(
        client, sub_shop, "POST", f"/subscriptions/{sub_id}/cancel", json={"at_period_end": False}
    )
    assert ended["status"] == "cancelled" and ended["ended_at"] == clock.now().isoformat()
    assert not has_access(await member_of(client, sub_shop, "anna@example.com"))

    actions = await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}/actions")
    assert [a["kind"] for a in actions["data"]] == ["cancel", "cancel", "resume", "pause"]
    assert all(a["status"] == "pending" for a in actions["data"])
    page = await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}/actions", params={"limit": 3})
    assert page["has_more"] and page["next_cursor"] == actions["data"][2]["id"]
    detail = await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}")
    assert [c["to"] for c in detail["status_history"]] == ["active", "paused", "active", "cancelled"]
    assert [a["id"] for a in detail["actions"]] == [a["id"] for a in actions["data"]]
    jobs = (await call(client, sub_shop, "GET", "/jobs", params={"limit": 100}))["data"]
    assert len([job for job in jobs if job["kind"] == "subscription.action"]) == 4

    error = error_of(
        await client.post(f"{API}/subscriptions/{sub_id}/pause", headers=sub_shop.auth),
        409,
        "subscription_ended",
    )
    assert "cancelled" in error["message"]


async def test_change_plan_upgrades_now_and_downgrades_at_period_end(client, db, settings, sub_shop, clock):
    clock.set(START)
    monthly_sub = await subscribe(db, settings, sub_shop, "s-down", START)
    yearly_sub = await subscribe(
        db, settings, sub_shop, "s-up", START, product="sub-yearly", email="bob@example.com"
    )
    monthly, yearly = await plan_id(client, sub_shop, "monthly"), await plan_id(client, sub_shop, "yearly")

    # Monthly costs more per day than yearly: moving to it is an upgrade, and applies now.
    upgraded = await call(
        client, sub_shop, "POST", f"/subscriptions/{yearly_sub}/change_plan", json={"plan": "monthly"}
    )
    assert upgraded["plan"] == monthly and upgraded["pending_plan"] is None
    assert upgraded["action"]["params"] == {"plan_id": monthly, "plan": "monthly", "upgrade": True}
    bob = await member_of(client, sub_shop, "bob@example.com")
    assert has_access(bob, "premium") and not has_access(bob, "archive")

    # Yearly is a downgrade: it waits for the end of the paid month, so no archive access yet.
    downgraded = await call(
        client, sub_shop, "POST", f"/subscriptions/{monthly_sub}/change_plan", json={"plan": yearly}
    )
    assert downgraded["action"]["params"] == {"plan_id": yearly, "plan": "yearly", "upgrade": False}
    assert (downgraded["plan"], downgraded["pending_plan"]) == (monthly, yearly)
    anna = await member_of(client, sub_shop, "anna@example.com")
    assert has_access(anna, "premium") and not has_access(anna, "archive")

    same = error_of(
        await client.post(
            f"{API}/subscriptions/{yearly_sub}/change_plan", headers=sub_shop.auth, json={"plan": "monthly"}
        ),
        409,
        "same_plan",
    )
    assert "already" in same["message"]
    one_time = error_of(
        await client.post(
            f"{API}/subscriptions/{monthly_sub}/change_plan", headers=sub_shop.auth, json={"plan": "month"}
        ),
        400,
        "parameter_invalid",
    )
    assert one_time["param"] == "plan"
    missing = error_of(
        await client.post(f"{API}/subscriptions/{monthly_sub}/change_plan", headers=sub_shop.auth, json={}),
        400,
        "parameter_invalid",
    )
    assert missing["param"] == "plan"


async def test_conflicting_and_bad_actions_are_refused_and_change_nothing(
    client, db, settings, sub_shop, clock
):
    clock.set(START)
    sub_id = await subscribe(db, settings, sub_shop, "s-conflict", START)
    path = f"{API}/subscriptions/{sub_id}"

    not_paused = error_of(
        await client.post(f"{path}/resume", headers=sub_shop.auth), 409, "subscription_not_paused"
    )
    assert "not paused" in not_paused["message"]
    past = error_of(
        await client.post(
            f"{path}/pause",
            headers=sub_shop.auth,
            json={"resume_at": (START - timedelta(days=1)).isoformat()},
        ),
        400,
        "parameter_invalid",
    )
    assert past["param"] == "resume_at"
    naive = error_of(
        await client.post(f"{path}/pause", headers=sub_shop.auth, json={"resume_at": "2027-02-01T10:00:00"}),
        400,
        "parameter_invalid",
    )
    assert naive["param"] == "resume_at"
    far = error_of(
        await client.post(
            f"{API}/subscriptions/{sub_id}/pause",
            headers=sub_shop.auth,
            json={"resume_at": "9999-12-31T00:00:00Z"},
        ),
        400,
        "parameter_invalid",
    )
    assert far["param"] == "resume_at" and "100 years" in far["message"]
    assert (await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}"))["actions"] == []

    await call(client, sub_shop, "POST", f"/subscriptions/{sub_id}/pause")
    twice = error_of(await client.post(f"{path}/pause", headers=sub_shop.auth), 409, "subscription_paused")
    assert "paused already" in twice["message"]
    assert len((await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}/actions"))["data"]) == 1


async def test_a_retried_action_with_the_same_idempotency_key_happens_once(
    client, db, settings, sub_shop, clock
):
    clock.set(START)
    sub_id = await subscribe(db, settings, sub_shop, "s-idem", START)
    headers = {"idempotency-key": "pause-once"}
    first = await call(client, sub_shop, "POST", f"/subscriptions/{sub_id}/pause", headers=headers)
    again = await client.post(f"{API}/subscriptions/{sub_id}/pause", headers={**sub_shop.auth, **headers})
    assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
    assert again.json()["action"]["id"] == first["action"]["id"]
    assert len((await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}/actions"))["data"]) == 1


async def test_an_action_the_gateway_refuses_is_taken_back_and_shown(
    client, db, settings, sub_shop, clock, worker: Worker
):
    clock.set(START)
    sub_id = await subscribe(db, settings, sub_shop, "s-refused", START)
    # A merchant who never configured the gateway: the action cannot be carried out there.
    async with db.transaction() as session:
        await session.execute(
            delete(GatewayAccount).where(
                GatewayAccount.merchant_id == sub_shop.merchant_id, GatewayAccount.gateway == "generic"
            )
        )
    await call(client, sub_shop, "POST", f"/subscriptions/{sub_id}/pause")
    assert not has_access(await member_of(client, sub_shop, "anna@example.com"))

    await worker.drain()
    detail = await call(client, sub_shop, "GET", f"/subscriptions/{sub_id}")
    assert detail["status"] == "active" and detail["paused_at"] is None
    [action] = detail["actions"]
    assert action["status"] == "refused" and "generic gateway is not configured" in action["error"]
    assert has_access(await member_of(client, sub_shop, "anna@example.com"))


# --------------------------------------------------------------------------- figures


async def test_figures_count_live_subscriptions_mrr_and_churn_per_month(
    client, db, settings, sub_shop, clock
):
    def at(month: int, day: int, hour: int = 10) -> datetime:
        return datetime(2027, month, day, hour, tzinfo=UTC)

    async def on(moment: datetime, *events: Any) -> None:
        clock.set(moment)
        if events:
            await deliver(db, settings, sub_shop, *events)

    async def new(moment: datetime, ref: str, **kwargs: Any) -> None:
        clock.set(moment)
        await subscribe(db, settings, sub_shop, ref, moment, email=f"{ref}@example.com", **kwargs)

    await new(at(3, 5), "a")  # renews in April, live throughout
    await new(at(3, 10), "b", product="sub-yearly")  # 99.00 a year counts 8.25 a month
    await new(at(3, 15), "c")  # renews in April, then cancelled at once: lost in April
    await new(at(3, 20), "d")  # paused in April: live, but no revenue
    await new(at(3, 20), "g", product="sub-flex", amount=3000, currency="CHF", interval="P3M")
    await new(at(3, 25), "f", product="sub-flex", amount=500, currency="EUR", interval="P1W")  # expires
    await new(at(3, 28), "h")  # renewal missing at the end of April: past due
    await on(at(4, 2))
    await run_due_transitions(db)  # f is past due
    await on(at(4, 5), *paid("a", "a-2", at(4, 5)))
    await run_due_transitions(db)  # f's grace is over: expired
    await on(at(4, 10), SubscriptionEvent(Kind.PAUSED, "d", "pause-d", occurred_at=at(4, 10)))
    await new(at(4, 12), "e")  # new in April
    await on(at(4, 15), *paid("c", "c-2", at(4, 15)))
    await on(
        at(4, 20),
        SubscriptionEvent(Kind.CANCELLED, "c", "cancel-c", occurred_at=at(4, 20), at_period_end=False),
    )
    await on(at(4, 30, 12))
    await run_due_transitions(db)  # h is past due
    await on(at(5, 2))
    await run_due_transitions(db)  # h expired on 05-01

    april = await call(client, sub_shop, "GET", "/subscription_figures", params={"month": "2027-04"})
    assert april == {
        "object": "subscription_figures",
        "month": "2027-04",
        "period": {"start": "2027-04-01T00:00:00+00:00", "end": "2027-05-01T00:00:00+00:00"},
        "active": {"total": 6, "by_status": {"active": 4, "past_due": 1, "paused": 1, "trialing": 0}},
        "mrr": {"CHF": 1000, "EUR": 990 + 825 + 990 + 990},
        "churn": {"rate": round(2 / 7, 4), "lost": 2, "at_start": 7},
    }
    march = await call(client, sub_shop, "GET", "/subscription_figures", params={"month": "2027-03"})
    assert march["active"] == {
        "total": 7,
        "by_status": {"active": 7, "past_due": 0, "paused": 0, "trialing": 0},
    }
    # Four monthly, one yearly and a weekly 5.00 (21.74 a month).
    assert march["mrr"] == {"CHF": 1000, "EUR": 4 * 990 + 825 + 2174}
    assert march["churn"] == {"rate": None, "lost": 0, "at_start": 0}

    current = await call(client, sub_shop, "GET", "/subscription_figures")
    assert current["month"] == "2027-05"
    assert current["churn"] == {"rate": round(1 / 6, 4), "lost": 1, "at_start": 6}
    assert current["active"]["by_status"] == {"active": 4, "past_due": 0, "paused": 1, "trialing": 0}

    other = await make_shop(db, "other")
    empty = await call(client, other, "GET", "/subscription_figures", params={"month": "2027-04"})
    assert empty["active"]["total"] == 0 and empty["mrr"] == {} and empty["churn"]["at_start"] == 0
    for month in ("2027-13", "April", "2027-4"):
        error = error_of(
            await client.get(f"{API}/subscription_figures", headers=sub_shop.auth, params={"month": month}),
            400,
            "parameter_invalid",
        )
        assert error["param"] == "month"
