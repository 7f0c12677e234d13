"""Stripe subscriptions: events in (the adapter, then the webhook endpoint), actions out (the API client).

The API client talks to a local stand-in that speaks Stripe's REST format:
form-encoded bodies, ``{"error": {...}}`` refusals, ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from conftest import SECRET_KEY, Shop
from einlass.audit.service import Actor
from einlass.billing.gateways.base import (
    Customer,
    FactKind,
    GatewayError,
    MalformedPayload,
    ParsedDelivery,
    PaymentEvent,
    SubscriptionEvent,
)
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.gateways.stripe import StripeGateway
from einlass.billing.gateways.stripe_api import StripeApi
from einlass.billing.models import Payment
from einlass.billing.subscriptions.actions import (
    ActionRefused,
    ActionRequest,
    GatewayUnavailable,
    request_action,
)
from einlass.billing.subscriptions.models import Subscription, SubscriptionAction
from einlass.clock import FrozenClock, as_utc
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.outbox.registry import build_worker
from einlass.tenants.service import get_merchant_by_slug, set_gateway_secrets
from helpers import has_access, member_by_email, post_stripe
from payloads import stripe as wire
from standin import Reply, Request, StandIn, serve

SUB = "sub_1QzXk2LkdIwHu7ixSubAbc12"
START = datetime(2027, 1, 10, 10, tzinfo=UTC)
T = int(START.timestamp())
DAY = 86_400
MONTH_END = T + 31 * DAY
API_KEY = "sk_test_51QzXk2LkdIwHu7ixSecretKeyForTests"
ANNA = "anna@example.com"


def parse(event: dict[str, Any]) -> ParsedDelivery:
    return StripeGateway().parse(wire.encode(event), {})


def only(event: dict[str, Any]) -> SubscriptionEvent:
    (found,) = parse(event).events
    assert isinstance(found, SubscriptionEvent)
    return found


def snapshot_event(
    event_type: str = "customer.subscription.updated", *, created: int = T, basil: bool = False, **fields: Any
) -> dict[str, Any]:
    fields.setdefault("period_start", T)
    fields.setdefault("period_end", MONTH_END)
    obj = wire.subscription(SUB, basil=basil, **fields)
    return wire.subscription_event(
        f"evt_{event_type}_{created}", event_type, obj, created=created, basil=basil
    )


def paid_event(number: int = 1, *, created: int = T, basil: bool = False, **details: Any) -> dict[str, Any]:
    return wire.invoice_paid(
        f"evt_paid_{number}",
        invoice_id=f"in_{number}",
        subscription_id=SUB,
        payment_intent=f"pi_{number}",
        amount=990,
        period_start=created,
        period_end=created + 31 * DAY,
        created=created,
        basil=basil,
        **details,
    )


def moment(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# --- customer.subscription.* -------------------------------------------------------------------


@pytest.mark.parametrize("basil", [False, True], ids=["2024-06-20", "basil"])
def test_subscription_event_is_a_snapshot_of_the_whole_object(basil: bool) -> None:
    snapshot = only(snapshot_event("customer.subscription.created", created=T + 5, basil=basil))
    assert snapshot == SubscriptionEvent(
        kind=Kind.SNAPSHOT,
        subscription_ref=SUB,
        fact_key=f"evt_customer.subscription.created_{T + 5}",
        occurred_at=moment(T + 5),
        period_end=moment(MONTH_END),
        status="active",
        paused=False,
        amount=990,
        currency="EUR",
        interval="P1M",
        product_ref="price_monthly",
    )


@pytest.mark.parametrize(
    ("interval", "count", "iso"),
    [("month", 1, "P1M"), ("year", 1, "P1Y"), ("week", 2, "P2W"), ("day", 30, "P30D"), ("month", 3, "P3M")],
)
def test_interval_is_iso_8601(interval: str, count: int, iso: str) -> None:
    assert only(snapshot_event(interval=interval, interval_count=count)).interval == iso


def test_amount_is_the_unit_amount_times_the_quantity() -> None:
    assert only(snapshot_event(unit_amount=500, quantity=3)).amount == 1500


def test_pause_collection_pauses_until_resumes_at() -> None:
    paused = only(snapshot_event(paused=True, resumes_at=T + 15 * DAY))
    assert (paused.paused, paused.resume_at, paused.status) == (True, moment(T + 15 * DAY), "active")
    assert only(snapshot_event(paused=True)).resume_at is None


def test_cancel_at_period_end_and_cancel_at() -> None:
    cancelling = only(snapshot_event(cancel_at_period_end=True, cancel_at=MONTH_END, canceled_at=T))
    assert (cancelling.cancel_at_period_end, cancelling.cancel_at) == (True, moment(MONTH_END))


def test_trial_end_and_status_word_pass_through() -> None:
    trial = only(snapshot_event(status="trialing", trial_end=T + 14 * DAY))
    assert (trial.status, trial.trial_end) == ("trialing", moment(T + 14 * DAY))


def test_deleted_is_canceled_when_it_ended() -> None:
    ended = T + 3 * DAY
    deleted = only(
        snapshot_event("customer.subscription.deleted", created=ended + 2, status="canceled", ended_at=ended)
    )
    assert (deleted.kind, deleted.status, deleted.occurred_at) == (Kind.SNAPSHOT, "canceled", moment(ended))
    without_end = only(snapshot_event("customer.subscription.deleted", created=ended, status="active"))
    assert (without_end.status, without_end.occurred_at) == ("canceled", moment(ended))


def test_metadata_gives_the_order_and_the_email() -> None:
    snapshot = only(snapshot_event(metadata={"order_no": "ORD-7", "email": ANNA}))
    assert (snapshot.order_no, snapshot.customer) == ("ORD-7", Customer(email=ANNA))


# --- invoices ----------------------------------------------------------------------------------


def test_invoice_paid_confirms_the_payment_intent_and_pays_the_line_period() -> None:
    payment, period = parse(paid_event(subscription_metadata={"order_no": "ORD-7"}, email=ANNA)).events
    customer = Customer(email=ANNA, name="Erika Mustermann")
    assert payment == PaymentEvent(
        fact=FactKind.CONFIRMED,
        payment_ref="pi_1",
        fact_key="confirmed",
        amount=990,
        currency="EUR",
        order_no="ORD-7",
        product_ref="price_monthly",
        customer=customer,
        occurred_at=moment(T),
        subscription_ref=SUB,
    )
    assert period == SubscriptionEvent(
        kind=Kind.PERIOD,
        subscription_ref=SUB,
        fact_key="period:in_1",
        occurred_at=moment(T),
        payment_ref="pi_1",
        period_end=moment(T + 31 * DAY),
        amount=990,
        currency="EUR",
        interval="P1M",
        order_no="ORD-7",
        product_ref="price_monthly",
        customer=customer,
    )


def test_basil_invoice_is_read_from_parent_and_pricing() -> None:
    payment, period = parse(paid_event(basil=True, subscription_metadata={"order_no": "ORD-7"})).events
    assert isinstance(payment, PaymentEvent) and isinstance(period, SubscriptionEvent)
    # basil invoices no longer name their PaymentIntent: the invoice id stands in.
    assert (payment.payment_ref, payment.subscription_ref, payment.product_ref) == (
        "in_1",
        SUB,
        "price_monthly",
    )
    assert (period.payment_ref, period.period_end, period.order_no) == ("in_1", moment(T + 31 * DAY), "ORD-7")


def test_basil_invoice_with_payments_included_names_the_paid_intent() -> None:
    event = paid_event(basil=True)
    event["data"]["object"]["payments"] = {
        "object": "list",
        "data": [
            {
                "object": "invoice_payment",
                "status": "canceled",
                "payment": {"type": "payment_intent", "payment_intent": "pi_old"},
            },
            {
                "object": "invoice_payment",
                "status": "paid",
                "payment": {"type": "payment_intent", "payment_intent": "pi_paid"},
            },
        ],
    }
    payment, period = parse(event).events
    assert (payment.payment_ref, period.payment_ref) == ("pi_paid", "pi_paid")


def test_invoices_without_money_or_subscription_give_nothing() -> None:
    zero = paid_event()
    zero["data"]["object"]["amount_paid"] = 0
    assert parse(zero).events == ()
    one_off = paid_event()
    one_off["data"]["object"]["subscription"] = None
    assert parse(one_off).events == ()


def test_proration_only_invoice_pays_up_to_the_proration_period() -> None:
    event = paid_event()
    line = event["data"]["object"]["lines"]["data"][0]
    line.update(proration=True, type="invoiceitem", amount=-200)
    period = parse(event).events[1]
    assert isinstance(period, SubscriptionEvent)
    assert (period.period_end, period.amount, period.interval) == (moment(T + 31 * DAY), None, None)


@pytest.mark.parametrize("basil", [False, True], ids=["2024-06-20", "basil"])
def test_payment_failed_is_a_renewal_failure_per_attempt(basil: bool) -> None:
    def failed(attempt: int) -> SubscriptionEvent:
        return only(
            wire.invoice_payment_failed(
                f"evt_failed_{attempt}",
                invoice_id="in_5",
                subscription_id=SUB,
                amount=990,
                period_start=T,
                period_end=MONTH_END,
                attempt_count=attempt,
                created=T + attempt * DAY,
                basil=basil,
            )
        )

    first, second = failed(1), failed(2)
    assert (first.kind, first.subscription_ref, first.fact_key) == (
        Kind.RENEWAL_FAILED,
        SUB,
        "renewal_failed:in_5:1",
    )
    assert (second.fact_key, second.occurred_at) == ("renewal_failed:in_5:2", moment(T + 2 * DAY))


# --- Checkout in subscription mode -------------------------------------------------------------


def test_subscription_checkout_creates_the_subscription_for_its_order() -> None:
    event = wire.checkout_session_completed_subscription(
        "evt_cs", subscription_id=SUB, email=ANNA, order_no="ORD-7"
    )
    created = only(event)
    assert (created.kind, created.subscription_ref, created.order_no) == (Kind.CREATED, SUB, "ORD-7")
    assert created.customer == Customer(email=ANNA, name="Erika Mustermann")


def test_subscription_checkout_naming_no_order_or_plan_gives_nothing_and_never_a_payment() -> None:
    event = wire.checkout_session_completed_subscription("evt_cs", subscription_id=SUB, email=ANNA)
    assert parse(event).events == ()
    with_plan = wire.checkout_session_completed_subscription(
        "evt_cs", subscription_id=SUB, email=ANNA, metadata={"price_id": "price_monthly"}
    )
    assert [type(event) for event in parse(with_plan).events] == [SubscriptionEvent]


# --- malformed and random input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.pop("id"), "'data.object.id'"),
        (lambda o: o.update(status=3), "'data.object.status'"),
        (lambda o: o.update(cancel_at_period_end="yes"), "'data.object.cancel_at_period_end'"),
        (lambda o: o.update(current_period_end="soon"), "'data.object.current_period_end'"),
        (lambda o: o.update(pause_collection="void"), "'data.object.pause_collection'"),
        (lambda o: o["items"].update(data={"0": {}}), "'data.object.items.data'"),
        (lambda o: o["items"].update(data=["si_1"]), "'data.object.items.data.0'"),
        (
            lambda o: o["items"]["data"][0]["price"]["recurring"].update(interval="fortnight"),
            "recurring.interval",
        ),
        (lambda o: o["items"]["data"][0]["price"]["recurring"].update(interval_count=0), "interval_count"),
        (lambda o: o["items"]["data"][0]["price"]["recurring"].update(interval_count=37), "interval_count"),
        (lambda o: o["items"]["data"][0].update(quantity=-1), "'data.object.items.data.0.quantity'"),
        (lambda o: o["items"]["data"][0]["price"].update(unit_amount="9.90"), "price.unit_amount"),
    ],
)
def test_malformed_subscription_names_the_field(
    mutate: Callable[[dict[str, Any]], object], field: str
) -> None:
    event = snapshot_event()
    mutate(event["data"]["object"])
    with pytest.raises(MalformedPayload) as refused:
        parse(event)
    assert field in str(refused.value)


def test_malformed_invoice_names_the_field() -> None:
    event = paid_event()
    event["data"]["object"]["lines"]["data"][0]["period"]["end"] = "next month"
    with pytest.raises(MalformedPayload, match=r"'data\.object\.lines\.data\.0\.period\.end'"):
        parse(event)


SAMPLES = [
    snapshot_event(paused=True, resumes_at=T + DAY),
    snapshot_event("customer.subscription.deleted", basil=True, status="canceled", ended_at=T),
    paid_event(),
    paid_event(basil=True),
    wire.invoice_payment_failed(
        "evt_f", invoice_id="in_1", subscription_id=SUB, amount=1, period_start=T, period_end=T + 1
    ),
    wire.checkout_session_completed_subscription("evt_cs", subscription_id=SUB, email=ANNA, order_no="O"),
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_subscription_events_only_raise_gateway_errors(data: st.DataObject) -> None:
    event = json.loads(json.dumps(data.draw(st.sampled_from(SAMPLES))))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([path for path in _paths(event) if path]))
        parent = event
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = data.draw(json_values)
    try:
        delivery = StripeGateway().parse(json.dumps(event).encode(), {})
    except GatewayError:
        return
    for found in delivery.events:
        assert found.fact_key and len(found.fact_key) <= 255
        assert found.amount is None or 0 <= found.amount < 2**31
        assert found.currency is None or (len(found.currency) == 3 and found.currency.isupper())
        if isinstance(found, SubscriptionEvent):
            assert found.subscription_ref and (found.interval is None or found.interval.startswith("P"))


# --- through the webhook endpoint --------------------------------------------------------------


async def stored(db: Database) -> Subscription:
    async with db.transaction() as session:
        subscription = await session.scalar(select(Subscription).where(Subscription.external_id == SUB))
    assert subscription is not None
    return subscription


async def deliver(client: httpx.AsyncClient, shop: Shop, event: dict[str, Any]) -> None:
    response = await post_stripe(client, shop, event)
    assert response.status_code == 200, response.text


def now_unix(clock: FrozenClock) -> int:
    return int(clock.now().timestamp())


async def subscribe(
    client: httpx.AsyncClient, shop: Shop, clock: FrozenClock, *, basil: bool = False
) -> None:
    clock.set(START)
    await deliver(client, shop, snapshot_event("customer.subscription.created", basil=basil))
    await deliver(client, shop, paid_event(email=ANNA, basil=basil))


@pytest.mark.parametrize("basil", [False, True], ids=["2024-06-20", "basil"])
async def test_subscription_opens_access_from_its_events(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock, basil: bool
) -> None:
    await subscribe(client, sub_shop, clock, basil=basil)
    subscription = await stored(db)
    assert (subscription.status, as_utc(subscription.paid_through)) == ("active", moment(MONTH_END))
    assert has_access(await member_by_email(client, sub_shop, ANNA))


async def test_an_older_snapshot_delivered_late_does_not_undo_a_newer_one(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock
) -> None:
    await subscribe(client, sub_shop, clock)
    clock.set(START + timedelta(days=5))
    newer = snapshot_event(created=now_unix(clock), paused=True, resumes_at=now_unix(clock) + 10 * DAY)
    older = snapshot_event(created=now_unix(clock) - DAY, cancel_at_period_end=True, cancel_at=MONTH_END)
    await deliver(client, sub_shop, newer)
    await deliver(client, sub_shop, older)
    subscription = await stored(db)
    # The older object (not paused, cancelling) came first in time: the newer one withdrew the
    # cancellation and paused; delivering the older one last changes none of that.
    assert (subscription.status, subscription.cancel_at) == ("paused", None)
    assert not has_access(await member_by_email(client, sub_shop, ANNA))


async def test_redelivered_events_count_once(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock
) -> None:
    await subscribe(client, sub_shop, clock)
    await deliver(client, sub_shop, paid_event(email=ANNA))
    await deliver(client, sub_shop, snapshot_event("customer.subscription.created"))
    subscription = await stored(db)
    assert (subscription.cycles_paid, as_utc(subscription.paid_through)) == (1, moment(MONTH_END))


async def test_refunded_renewal_pays_for_nothing(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock
) -> None:
    await subscribe(client, sub_shop, clock)
    clock.set(moment(MONTH_END))
    await deliver(client, sub_shop, paid_event(2, created=MONTH_END, email=ANNA))
    assert as_utc((await stored(db)).paid_through) == moment(MONTH_END + 31 * DAY)
    # The renewal's charge.refunded names its PaymentIntent, which the invoice named too.
    refund = wire.charge_refunded(
        "evt_refund", payment_intent="pi_2", charge_id="ch_2", amount=990, amount_refunded=990
    )
    refund["created"] = now_unix(clock)
    await deliver(client, sub_shop, refund)
    subscription = await stored(db)
    assert as_utc(subscription.paid_through) == moment(MONTH_END)
    async with db.transaction() as session:
        assert await session.scalar(select(Payment.status).where(Payment.external_id == "pi_2")) == "refunded"


async def test_subscription_checkout_first_then_the_invoice(
    client: httpx.AsyncClient, db: Database, sub_shop: Shop, clock: FrozenClock
) -> None:
    clock.set(START)
    checkout = wire.checkout_session_completed_subscription(
        "evt_cs", subscription_id=SUB, email=ANNA, metadata={"price_id": "price_monthly"}, created=T
    )
    await deliver(client, sub_shop, checkout)
    assert (await stored(db)).status == "pending"
    async with db.transaction() as session:
        assert await session.scalar(select(Payment.id)) is None, "no one-time payment without a plan"
    await deliver(client, sub_shop, paid_event(email=ANNA))
    assert (await stored(db)).status == "active"
    assert has_access(await member_by_email(client, sub_shop, ANNA))


# --- actions out: the API client ---------------------------------------------------------------


def stripe_subscription(**fields: Any) -> dict[str, Any]:
    return wire.subscription(SUB, period_start=T, period_end=MONTH_END, **fields)


def action(kind: str, **fields: Any) -> ActionRequest:
    return ActionRequest(
        action_id="sac_01TEST", kind=kind, subscription_ref=SUB, merchant_slug="shop", **fields
    )


def form(request: Request) -> dict[str, str]:
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return dict(parse_qsl(request.body.decode(), keep_blank_values=True))


async def perform(
    standin: StandIn, request: ActionRequest, secrets: dict[str, str] | None = None
) -> dict[str, Any]:
    settings = Settings(stripe_api_url=standin.url, gateway_api_timeout_s=5)
    result = await StripeApi().perform(
        request, {"api_key": API_KEY} if secrets is None else secrets, settings
    )
    return result.response


async def test_pause_posts_pause_collection_with_the_idempotency_key() -> None:
    with serve(lambda r: Reply(200, stripe_subscription(paused=True, resumes_at=T + 15 * DAY))) as stripe:
        response = await perform(stripe, action("pause", resume_at=moment(T + 15 * DAY)))
    (sent,) = stripe.requests
    assert (sent.method, sent.path) == ("POST", f"/v1/subscriptions/{SUB}")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["idempotency-key"] == "sac_01TEST"
    assert form(sent) == {
        "pause_collection[behavior]": "void",
        "pause_collection[resumes_at]": str(T + 15 * DAY),
    }
    assert response["pause_collection"] == {"behavior": "void", "resumes_at": T + 15 * DAY}
    assert response["prices"] == ["price_monthly"]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (action("pause"), {"pause_collection[behavior]": "void"}),
        (action("resume"), {"pause_collection": ""}),
        (action("cancel"), {"cancel_at_period_end": "true"}),
        (
            action("cancel", reason="moved abroad"),
            {"cancel_at_period_end": "true", "cancellation_details[comment]": "moved abroad"},
        ),
    ],
)
async def test_update_actions_send_stripe_form_fields(
    request_: ActionRequest, expected: dict[str, str]
) -> None:
    with serve(lambda r: Reply(200, stripe_subscription())) as stripe:
        await perform(stripe, request_)
    (sent,) = stripe.requests
    assert (sent.method, form(sent)) == ("POST", expected)


async def test_cancel_now_deletes_the_subscription() -> None:
    with serve(lambda r: Reply(200, stripe_subscription(status="canceled", ended_at=T))) as stripe:
        response = await perform(stripe, action("cancel", at_period_end=False))
    (sent,) = stripe.requests
    assert (sent.method, sent.path, response["status"]) == ("DELETE", f"/v1/subscriptions/{SUB}", "canceled")


async def test_cancel_now_repeated_after_a_lost_answer_is_done() -> None:
    def respond(request: Request) -> Reply:
        if request.method == "DELETE":
            message = "A canceled subscription can only update its cancellation_details and metadata."
            return Reply(400, {"error": {"type": "invalid_request_error", "message": message}})
        return Reply(200, stripe_subscription(status="canceled", ended_at=T))

    with serve(respond) as stripe:
        response = await perform(stripe, action("cancel", at_period_end=False))
    assert [r.method for r in stripe.requests] == ["DELETE", "GET"]
    assert response["status"] == "canceled"


@pytest.mark.parametrize(("at_period_end", "proration"), [(False, "always_invoice"), (True, "none")])
async def test_change_plan_swaps_the_item_price(at_period_end: bool, proration: str) -> None:
    current = stripe_subscription()
    item_id = current["items"]["data"][0]["id"]
    with serve(lambda r: Reply(200, current)) as stripe:
        await perform(stripe, action("change_plan", product_ref="price_yearly", at_period_end=at_period_end))
    read, change = stripe.requests
    assert (read.method, read.path, "idempotency-key" in read.headers) == (
        "GET",
        f"/v1/subscriptions/{SUB}",
        False,
    )
    assert change.headers["idempotency-key"] == "sac_01TEST"
    assert form(change) == {
        "items[0][id]": item_id,
        "items[0][price]": "price_yearly",
        "proration_behavior": proration,
    }


async def test_stripe_refusal_is_an_action_refused_with_its_message() -> None:
    error = {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such subscription: '{SUB}'",
            "param": "id",
        }
    }
    with serve(lambda r: Reply(404, error)) as stripe, pytest.raises(ActionRefused) as refused:
        await perform(stripe, action("pause"))
    assert str(refused.value) == (
        f"Stripe: No such subscription: '{SUB}' (invalid_request_error, resource_missing, HTTP 404)"
    )
    assert refused.value.response == error


@pytest.mark.parametrize("status", [409, 429, 500, 503])
async def test_busy_or_broken_stripe_is_unavailable(status: int) -> None:
    busy = Reply(status, {"error": {"type": "api_error", "message": "try again"}})
    with serve(lambda r: busy) as stripe, pytest.raises(GatewayUnavailable, match="try again"):
        await perform(stripe, action("resume"))


async def test_stripe_should_retry_header_decides() -> None:
    retry = Reply(
        400, {"error": {"type": "invalid_request_error", "message": "lock"}}, {"stripe-should-retry": "true"}
    )
    with serve(lambda r: retry) as stripe, pytest.raises(GatewayUnavailable):
        await perform(stripe, action("resume"))


async def test_missing_api_key_is_refused_without_calling_stripe() -> None:
    with serve(lambda r: Reply(200, {})) as stripe, pytest.raises(ActionRefused, match="api_key"):
        await perform(stripe, action("pause"), secrets={"webhook_secret": "whsec_x"})
    assert stripe.requests == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_stripe_is_unavailable_and_the_key_stays_out_of_the_message() -> None:
    settings = Settings(stripe_api_url=f"http://127.0.0.1:{_closed_port()}", gateway_api_timeout_s=5)
    with pytest.raises(GatewayUnavailable) as unavailable:
        await StripeApi().perform(action("pause"), {"api_key": API_KEY}, settings)
    assert "could not be reached" in str(unavailable.value)
    assert API_KEY not in str(unavailable.value)


# --- actions out: through the worker -----------------------------------------------------------


async def give_api_key(db: Database, shop: Shop) -> None:
    async with db.transaction() as session:
        merchant = await get_merchant_by_slug(session, shop.slug)
        secrets = {"webhook_secret": shop.stripe_secret, "api_key": API_KEY}
        await set_gateway_secrets(session, SECRET_KEY, merchant, "stripe", secrets, Actor("test"))


async def ask(db: Database, shop: Shop, kind: str, **options: Any) -> str:
    async with db.transaction() as session:
        merchant = await get_merchant_by_slug(session, shop.slug)
        subscription = await session.scalar(select(Subscription).where(Subscription.external_id == SUB))
        assert subscription is not None
        requested = await request_action(
            session, merchant, subscription, kind, actor=Actor("admin", "adm_1"), **options
        )
        return requested.id


async def action_row(db: Database, action_id: str) -> SubscriptionAction:
    async with db.transaction() as session:
        return await session.get_one(SubscriptionAction, action_id)


async def test_pause_through_the_worker_reaches_stripe(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    await subscribe(client, sub_shop, clock)
    await give_api_key(db, sub_shop)
    resume_at = START + timedelta(days=20)
    with serve(
        lambda r: Reply(200, stripe_subscription(paused=True, resumes_at=int(resume_at.timestamp())))
    ) as stripe:
        worker = build_worker(db, settings.model_copy(update={"stripe_api_url": stripe.url}))
        action_id = await ask(db, sub_shop, "pause", resume_at=resume_at)
        await worker.drain()
    (sent,) = stripe.requests
    assert sent.headers["idempotency-key"] == action_id
    assert form(sent)["pause_collection[resumes_at]"] == str(int(resume_at.timestamp()))
    assert (await action_row(db, action_id)).status == "succeeded"
    assert (await stored(db)).status == "paused"
    assert not has_access(await member_by_email(client, sub_shop, ANNA))


async def test_refusal_is_shown_on_the_action_and_taken_back(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    await subscribe(client, sub_shop, clock)
    await give_api_key(db, sub_shop)
    message = "This subscription is managed by the subscription schedule `sub_sched_1`."
    refusal = Reply(400, {"error": {"type": "invalid_request_error", "message": message}})
    with serve(lambda r: refusal) as stripe:
        worker = build_worker(db, settings.model_copy(update={"stripe_api_url": stripe.url}))
        action_id = await ask(db, sub_shop, "cancel", at_period_end=False)
        assert (await stored(db)).status == "cancelled"  # applied here at once
        await worker.drain()
    refused = await action_row(db, action_id)
    assert refused.status == "refused"
    assert refused.error is not None and message in refused.error
    assert (await stored(db)).status == "active"
    assert has_access(await member_by_email(client, sub_shop, ANNA))


async def test_server_error_is_retried_with_the_same_idempotency_key(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    await subscribe(client, sub_shop, clock)
    await give_api_key(db, sub_shop)
    replies = iter([Reply(500, {"error": {"type": "api_error", "message": "An unknown error occurred"}})])

    def respond(request: Request) -> Reply:
        return next(replies, Reply(200, stripe_subscription(cancel_at_period_end=True, cancel_at=MONTH_END)))

    with serve(respond) as stripe:
        worker = build_worker(db, settings.model_copy(update={"stripe_api_url": stripe.url}))
        action_id = await ask(db, sub_shop, "cancel")
        await worker.drain()
        waiting = await action_row(db, action_id)
        assert (waiting.status, waiting.attempts) == ("pending", 1)
        assert waiting.error is not None and "unknown error" in waiting.error
        clock.advance(timedelta(minutes=1))  # past the retry's backoff
        await worker.drain()
    first, retry = stripe.requests
    assert first.headers["idempotency-key"] == retry.headers["idempotency-key"] == action_id
    assert (await action_row(db, action_id)).status == "succeeded"
    subscription = await stored(db)
    assert (subscription.status, as_utc(subscription.cancel_at)) == ("active", moment(MONTH_END))
