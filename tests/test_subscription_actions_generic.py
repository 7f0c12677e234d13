"""Generic gateway subscriptions end to end: signed events in, signed action webhooks out.

Events go through ``POST /webhooks/{merchant}/generic``; merchant actions go to
the gateway's ``action_url``, a real local receiver that checks the Standard
Webhooks signature the way a merchant's billing system would.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import Shop
from einlass import standard_webhooks
from einlass.billing.gateways.generic_api import GenericApi, action_payload, receiver_message
from einlass.billing.subscriptions.actions import (
    ActionRefused,
    ActionRequest,
    GatewayUnavailable,
)
from einlass.billing.subscriptions.models import Subscription
from einlass.billing.subscriptions.transitions import run_due_transitions
from einlass.clock import FrozenClock
from einlass.clock import now as clock_now
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.outbox.models import Job
from helpers import api, has_access, member_by_email, post_generic
from payloads import generic
from standin import Reply, Request, serve

ANNA = "anna@example.com"


def day(month: int, dd: int, year: int = 2027, hour: int = 10) -> datetime:
    return datetime(year, month, dd, hour, tzinfo=UTC)


async def subscription(db: Database, ref: str) -> Subscription:
    async with db.transaction() as session:
        found = await session.scalar(select(Subscription).where(Subscription.external_id == ref))
    assert found is not None
    return found


async def enters(client: httpx.AsyncClient, shop: Shop) -> bool:
    return has_access(await member_by_email(client, shop, ANNA))


async def post(client: httpx.AsyncClient, shop: Shop, payload: dict[str, Any]) -> None:
    response = await post_generic(client, shop, payload)
    assert response.status_code == 200, response.text


async def subscribe(client: httpx.AsyncClient, shop: Shop, ref: str = "gs_1", pay: str = "gp_1") -> None:
    await post(
        client,
        shop,
        generic.subscription_created(
            ref, at=clock_now(), product_id="sub-monthly", payment_id=pay, amount=990, email=ANNA
        ),
    )


# --- events in ---------------------------------------------------------------------------------


async def test_created_renewed_paused_resumed_cancelled(client, db, sub_shop, clock):
    clock.set(day(1, 10))
    await subscribe(client, sub_shop)
    assert (await subscription(db, "gs_1")).paid_through == day(2, 10)
    assert await enters(client, sub_shop)

    clock.set(day(2, 10))
    await post(client, sub_shop, generic.subscription_renewed("gs_1", "gp_2", at=clock.now(), amount=990))
    assert (await subscription(db, "gs_1")).paid_through == day(3, 10)

    # The renewal names no customer; it is still the member's payment.
    payments = (await api(client, sub_shop, "GET", "/payments"))["data"]
    member = await member_by_email(client, sub_shop, ANNA)
    assert member is not None
    assert {p["external_id"]: p["member"] for p in payments} == {"gp_1": member["id"], "gp_2": member["id"]}

    clock.set(day(2, 20))
    await post(client, sub_shop, generic.subscription_paused("gs_1", at=clock.now()))
    assert (await subscription(db, "gs_1")).status == "paused"
    assert not await enters(client, sub_shop)

    clock.set(day(3, 2))
    assert not await enters(client, sub_shop)
    # The billing system names the next billing date on resume.
    resumed = generic.subscription_resumed("gs_1", at=clock.now(), period_end=day(3, 20))
    await post(client, sub_shop, resumed)
    sub = await subscription(db, "gs_1")
    assert (sub.status, sub.paid_through) == ("active", day(3, 20))
    assert await enters(client, sub_shop)

    clock.set(day(3, 5))
    await post(client, sub_shop, generic.subscription_cancelled("gs_1", at=clock.now()))
    sub = await subscription(db, "gs_1")
    assert (sub.status, sub.cancel_at, sub.access_until) == ("active", day(3, 20), day(3, 20))

    clock.set(day(3, 20) + timedelta(minutes=1))
    await run_due_transitions(db)
    assert (await subscription(db, "gs_1")).status == "cancelled"
    assert not await enters(client, sub_shop)


async def test_refunded_renewal_takes_its_period_back(client, db, sub_shop, clock):
    clock.set(day(1, 10))
    await subscribe(client, sub_shop)
    clock.set(day(2, 10))
    await post(client, sub_shop, generic.subscription_renewed("gs_1", "gp_2", at=clock.now(), amount=990))
    clock.set(day(2, 11))
    await post(client, sub_shop, generic.payment_refunded("gp_2", refund_id="rf_1", amount=990))
    sub = await subscription(db, "gs_1")
    assert (sub.paid_through, sub.status, sub.access_until) == (day(2, 10), "past_due", day(2, 13))
    clock.set(day(2, 14))
    assert not await enters(client, sub_shop)


async def test_order_and_redelivery_do_not_change_the_outcome(client, db, sub_shop, clock):
    clock.set(day(1, 10))
    renewal = generic.subscription_renewed("gs_1", "gp_2", at=day(2, 10), amount=990)
    created = generic.subscription_created(
        "gs_1", at=day(1, 10), product_id="sub-monthly", payment_id="gp_1", amount=990, email=ANNA
    )
    clock.set(day(2, 10))
    # The renewal names no plan: it waits for its subscription.
    await post(client, sub_shop, renewal)
    parked = await api(client, sub_shop, "GET", "/webhook_events", params={"status": "parked"})
    assert len(parked["data"]) == 1
    for _ in range(2):
        response = await post_generic(client, sub_shop, created, msg_id="msg_created")
        assert response.status_code == 200
    assert (await subscription(db, "gs_1")).paid_through == day(3, 10)
    parked = await api(client, sub_shop, "GET", "/webhook_events", params={"status": "parked"})
    assert parked["data"] == []


async def test_unusable_subscription_events_say_why(client, sub_shop):
    response = await post_generic(client, sub_shop, generic.subscription_paused("gs_1", resume_at="tomorrow"))
    assert response.status_code == 400
    assert "data.resume_at 'tomorrow' is not an ISO 8601 date-time" in response.text
    # Signed and well formed, but no plan has the reference yet: kept for a reprocess.
    unknown = generic.subscription_created("gs_9", product_id="sub-weekly", email=ANNA)
    assert (await post_generic(client, sub_shop, unknown)).status_code == 200
    failed = await api(client, sub_shop, "GET", "/webhook_events", params={"status": "failed"})
    assert "no subscription plan for generic product 'sub-weekly'" in failed["data"][0]["error"]


# --- actions out -------------------------------------------------------------------------------


def receiver(secret: str, replies: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
    """A billing system: refuses what is not signed with the gateway's secret, else ``replies``."""

    def respond(request: Request) -> Reply:
        try:
            standard_webhooks.verify(secret, request.headers, request.body, clock_now())
        except Exception as error:
            return Reply(401, {"error": {"message": str(error)}})
        return replies(request)

    return respond


async def set_action_url(client: httpx.AsyncClient, shop: Shop, url: str | None) -> None:
    secrets = {"signing_secret": shop.generic_secret, **({"action_url": url} if url else {})}
    result = await api(client, shop, "PUT", "/gateways/generic", json={"secrets": secrets})
    assert result["configured_secrets"] == sorted(secrets)


async def request(client: httpx.AsyncClient, shop: Shop, kind: str, **body: Any) -> str:
    """The merchant asks for an action through the API; the action's id."""
    listing = await api(client, shop, "GET", "/subscriptions")
    (sub_id,) = [sub["id"] for sub in listing["data"] if sub["external_id"] == "gs_1"]
    result = await api(client, shop, "POST", f"/subscriptions/{sub_id}/{kind}", json=body)
    return str(result["action"]["id"])


async def action(client: httpx.AsyncClient, shop: Shop, action_id: str) -> dict[str, Any]:
    """The action as the merchant sees it in the subscription's detail."""
    listing = await api(client, shop, "GET", "/subscriptions")
    (sub_id,) = [sub["id"] for sub in listing["data"] if sub["external_id"] == "gs_1"]
    detail = await api(client, shop, "GET", f"/subscriptions/{sub_id}")
    (found,) = [act for act in detail["actions"] if act["id"] == action_id]
    return dict(found)


async def test_pause_is_sent_signed_and_accepted(client, db, sub_shop, clock, worker):
    clock.set(day(1, 20))
    await subscribe(client, sub_shop)
    with serve(receiver(sub_shop.generic_secret, lambda r: Reply(202, {"queued": True}))) as billing:
        await set_action_url(client, sub_shop, f"{billing.url}/einlass/actions")
        action_id = await request(
            client, sub_shop, "pause", resume_at=day(3, 1).isoformat(), reason="holiday"
        )
        # Applied here at once, before the billing system answers.
        assert not await enters(client, sub_shop)
        await worker.drain()
    (sent,) = billing.requests
    assert (sent.path, sent.headers["webhook-id"]) == ("/einlass/actions", action_id)
    assert sent.json() == {
        "type": "subscription.pause_requested",
        "timestamp": clock.now().isoformat(),
        "data": {
            "subscription_id": "gs_1",
            "action_id": action_id,
            "resume_at": day(3, 1).isoformat(),
            "at_period_end": None,
            "product_id": None,
            "amount": None,
            "currency": None,
            "interval": None,
            "reason": "holiday",
        },
    }
    done = await action(client, sub_shop, action_id)
    assert (done["status"], done["response"]) == ("succeeded", {"status": 202, "body": '{"queued": true}'})
    assert (await subscription(db, "gs_1")).status == "paused"


async def test_refused_pause_is_taken_back_and_shows_why(client, db, sub_shop, clock, worker):
    clock.set(day(1, 20))
    await subscribe(client, sub_shop)
    refusal = Reply(409, {"error": {"message": "gs_1 is in dunning and cannot be paused"}})
    with serve(receiver(sub_shop.generic_secret, lambda r: refusal)) as billing:
        await set_action_url(client, sub_shop, billing.url)
        action_id = await request(client, sub_shop, "pause")
        assert not await enters(client, sub_shop)
        await worker.drain()
    assert len(billing.requests) == 1
    refused = await action(client, sub_shop, action_id)
    assert (refused["status"], refused["error"]) == (
        "refused",
        "HTTP 409: gs_1 is in dunning and cannot be paused",
    )
    assert refused["response"]["status"] == 409
    sub = await subscription(db, "gs_1")
    assert (sub.status, sub.paid_through, sub.paused_at) == ("active", day(2, 20), None)
    assert await enters(client, sub_shop)


async def test_unavailable_billing_system_is_retried_until_it_accepts(client, db, sub_shop, clock, worker):
    clock.set(day(1, 20))
    await subscribe(client, sub_shop)
    answers: Iterator[Reply] = iter([Reply(503, b"down for maintenance"), Reply(200, b"ok")])
    with serve(receiver(sub_shop.generic_secret, lambda r: next(answers))) as billing:
        await set_action_url(client, sub_shop, billing.url)
        action_id = await request(client, sub_shop, "cancel", at_period_end=True)
        await worker.drain()
        waiting = await action(client, sub_shop, action_id)
        assert (waiting["status"], waiting["error"]) == ("pending", "HTTP 503: down for maintenance")
        async with db.transaction() as session:
            jobs = await session.scalars(select(Job).where(Job.kind == "subscription.action"))
            (job,) = [job for job in jobs if job.payload["action_id"] == action_id]
        assert job.run_after > clock.now()
        assert await worker.drain() == 0  # not due yet
        clock.advance(timedelta(minutes=5))
        await worker.drain()
    first, second = billing.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == action_id
    assert first.json()["data"] == second.json()["data"]
    assert second.json()["data"]["at_period_end"] is True
    done = await action(client, sub_shop, action_id)
    assert (done["status"], done["response"]) == ("succeeded", {"status": 200, "body": "ok"})
    assert (await subscription(db, "gs_1")).cancel_at == day(2, 20)


async def test_without_action_url_the_action_is_refused(client, db, sub_shop, clock, worker):
    clock.set(day(1, 20))
    await subscribe(client, sub_shop)
    await set_action_url(client, sub_shop, None)
    action_id = await request(client, sub_shop, "cancel", at_period_end=False)
    assert not await enters(client, sub_shop)
    await worker.drain()
    refused = await action(client, sub_shop, action_id)
    assert (refused["status"], refused["error"]) == (
        "refused",
        "no action_url configured for the generic gateway",
    )
    assert (await subscription(db, "gs_1")).status == "active"
    assert await enters(client, sub_shop)


# --- the worked example of docs/subscriptions.md, the pause a merchant action ------------------


async def test_the_worked_example_year(client, db, sub_shop, clock, worker):
    async def at(moment: datetime, *payloads: dict[str, Any]) -> Subscription:
        clock.set(moment)
        for payload in payloads:
            await post(client, sub_shop, payload)
        await run_due_transitions(db)  # the worker's move along the schedule
        return await subscription(db, "gs_1")

    def renewed(pay: str, moment: datetime) -> dict[str, Any]:
        return generic.subscription_renewed("gs_1", pay, at=moment, amount=990)

    clock.set(day(1, 10))
    await subscribe(client, sub_shop, pay="gp_01")  # 1
    sub = await subscription(db, "gs_1")
    assert (sub.status, sub.paid_through, sub.access_until) == ("active", day(2, 10), day(2, 13))
    for month in (2, 3, 4):  # 2
        sub = await at(day(month, 10), renewed(f"gp_{month:02}", day(month, 10)))
        assert (sub.status, sub.paid_through) == ("active", day(month + 1, 10))
    sub = await at(day(5, 10), generic.subscription_renewal_failed("gs_1", at=day(5, 10)))  # 3
    assert (sub.status, sub.paid_through, sub.access_until) == ("past_due", day(5, 10), day(5, 13))
    sub = await at(day(5, 12))
    assert sub.status == "past_due" and await enters(client, sub_shop)  # the grace day
    sub = await at(day(5, 12), renewed("gp_05", day(5, 12)))  # 4
    assert (sub.status, sub.paid_through) == ("active", day(6, 10))
    sub = await at(day(6, 10), renewed("gp_06", day(6, 10)))  # 5
    assert sub.paid_through == day(7, 10)

    with serve(receiver(sub_shop.generic_secret, lambda r: Reply(200, {"ok": True}))) as billing:  # 6
        await set_action_url(client, sub_shop, billing.url)
        clock.set(day(6, 25))
        action_id = await request(client, sub_shop, "pause", resume_at=day(7, 25).isoformat())
        await worker.drain()
    assert billing.requests[0].json()["data"]["resume_at"] == day(7, 25).isoformat()
    assert (await action(client, sub_shop, action_id))["status"] == "succeeded"
    sub = await at(day(7, 1))
    assert sub.status == "paused" and not await enters(client, sub_shop)
    # 7: the billing system resumes on the date it was sent; here the worker moves the status.
    sub = await at(day(7, 25))
    assert (sub.status, sub.paid_through) == ("active", day(8, 9))
    assert await enters(client, sub_shop)
    for month in (8, 9, 10, 11, 12):  # 8
        sub = await at(day(month, 9), renewed(f"gp_{month:02}", day(month, 9)))
    assert (sub.status, sub.paid_through) == ("active", day(1, 9, 2028))
    sub = await at(day(12, 20), generic.subscription_cancelled("gs_1", at=day(12, 20)))  # 9
    assert (sub.status, sub.cancel_at, sub.access_until) == ("active", day(1, 9, 2028), day(1, 9, 2028))
    sub = await at(day(1, 9, 2028))  # 10
    assert sub.status == "cancelled"
    await at(day(1, 10, 2028))
    assert not await enters(client, sub_shop)


# --- the client alone --------------------------------------------------------------------------

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def plan_change() -> ActionRequest:
    return ActionRequest(
        action_id="sac_1",
        kind="change_plan",
        subscription_ref="gs_1",
        merchant_slug="shop",
        at_period_end=False,
        product_ref="sub-yearly",
        amount=9900,
        currency="EUR",
        interval="P1Y",
    )


def test_plan_change_request_names_the_new_plan() -> None:
    payload = action_payload(plan_change(), day(1, 1))
    assert payload["type"] == "subscription.plan_change_requested"
    assert payload["data"] | {"subscription_id": "gs_1"} == {
        "subscription_id": "gs_1",
        "action_id": "sac_1",
        "resume_at": None,
        "at_period_end": False,
        "product_id": "sub-yearly",
        "amount": 9900,
        "currency": "EUR",
        "interval": "P1Y",
        "reason": None,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps({"error": {"message": "no such subscription"}}), "no such subscription"),
        (json.dumps({"error": "plan unknown"}), "plan unknown"),
        ("not allowed\nhere", "not allowed here"),
        ("x" * 1000, "x" * 300),
        ("", ""),
    ],
)
def test_receiver_message(body: str, message: str) -> None:
    assert receiver_message(body) == message


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/actions"


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("closed port", GatewayUnavailable, "action_url: ConnectError"),
        ("ftp://billing.example.com/actions", ActionRefused, "action_url is not a usable http(s) URL"),
    ],
)
async def test_unreachable_or_unusable_action_url(
    clock: FrozenClock, settings: Settings, url: str, error: type[Exception], message: str
) -> None:
    url = closed_port_url() if url == "closed port" else url
    with pytest.raises(error, match=re.escape(message)):
        await GenericApi().perform(plan_change(), {"signing_secret": SECRET, "action_url": url}, settings)


async def test_redirect_is_refused(clock: FrozenClock, settings: Settings) -> None:
    with serve(lambda r: Reply(301, b"", {"location": "https://elsewhere.example.com"})) as billing:
        secrets = {"signing_secret": SECRET, "action_url": billing.url}
        with pytest.raises(ActionRefused, match="redirects are not followed"):
            await GenericApi().perform(plan_change(), secrets, settings)
