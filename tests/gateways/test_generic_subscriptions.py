"""The generic gateway's subscription events: parsing (pure) and the documented schema."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from einlass.billing.gateways.generic import GenericGateway
from einlass.billing.gateways.generic_subscriptions import SUBSCRIPTION_EVENT_TYPES
from payloads import generic as payloads

AT = "2027-01-10T10:00:00Z"
WHEN = datetime(2027, 1, 10, 10, 0, tzinfo=UTC)
FEB = datetime(2027, 2, 10, 10, 0, tzinfo=UTC)

gateway = GenericGateway()


def parse(payload: dict[str, Any], msg_id: str = "msg_1") -> ParsedDelivery:
    return gateway.parse(payloads.encode(payload), {"webhook-id": msg_id})


def events(payload: dict[str, Any], msg_id: str = "msg_1") -> tuple[PaymentEvent | SubscriptionEvent, ...]:
    return parse(payload, msg_id).events


def fact(kind: Kind, key: str, **fields: Any) -> SubscriptionEvent:
    return SubscriptionEvent(kind, "sub_1", key, occurred_at=WHEN, **fields)


def test_every_type_is_documented() -> None:
    text = (Path(__file__).parents[2] / "docs" / "gateways" / "generic.md").read_text(encoding="utf-8")
    for event_type in SUBSCRIPTION_EVENT_TYPES:
        assert f"`{event_type}`" in text


# One test per type, the good case


def test_created_with_its_first_payment() -> None:
    payload = payloads.subscription_created(
        "sub_1", at=AT, product_id="gold", payment_id="pay_1", amount=990, period_end=FEB, email="a@b.de"
    )
    anna = Customer(email="a@b.de")
    price = {"amount": 990, "currency": "EUR", "product_ref": "gold", "customer": anna}
    assert events(payload) == (
        # The payment comes first: the period after it names it.
        PaymentEvent(
            FactKind.CONFIRMED,
            "pay_1",
            "confirmed",
            amount=990,
            currency="EUR",
            product_ref="gold",
            customer=anna,
            occurred_at=WHEN,
            subscription_ref="sub_1",
        ),
        fact(Kind.CREATED, "created", payment_ref="pay_1", **price),
        fact(Kind.PERIOD, "period:pay_1", payment_ref="pay_1", period_end=FEB, **price),
    )


def test_created_with_a_trial_and_no_payment() -> None:
    payload = payloads.subscription_created("sub_1", at=AT, product_id="gold", trial_end=FEB)
    assert events(payload) == (fact(Kind.CREATED, "created", trial_end=FEB, product_ref="gold"),)


def test_created_naming_a_payment_told_on_its_own() -> None:
    # No amount: the payment is a payment.confirmed of its own; the period waits for it.
    kinds = [type(e).__name__ for e in events(payloads.subscription_created("sub_1", payment_id="pay_1"))]
    assert kinds == ["SubscriptionEvent", "SubscriptionEvent"]


def test_created_for_a_dynamic_plan_carries_price_and_interval() -> None:
    payload = payloads.subscription_created("sub_1", order_no="A-7", amount=2500, interval="P2W")
    (created,) = events(payload)
    assert isinstance(created, SubscriptionEvent)
    assert (created.amount, created.currency, created.interval, created.order_no) == (
        2500,
        "EUR",
        "P2W",
        "A-7",
    )


def test_renewed_with_amount_confirms_the_payment_and_names_it() -> None:
    payment, period = events(payloads.subscription_renewed("sub_1", "pay_2", at=AT, amount=990))
    assert isinstance(payment, PaymentEvent) and isinstance(period, SubscriptionEvent)
    assert (payment.fact, payment.payment_ref, payment.subscription_ref) == (
        FactKind.CONFIRMED,
        "pay_2",
        "sub_1",
    )
    assert (period.kind, period.fact_key, period.payment_ref, period.period_end) == (
        Kind.PERIOD,
        "period:pay_2",
        "pay_2",
        None,
    )


def test_only_the_first_payment_pays_the_order() -> None:
    first, *_ = events(payloads.subscription_created("sub_1", order_no="A-7", payment_id="p1", amount=990))
    renewal = payloads.subscription_renewed("sub_1", "p2", amount=990)
    renewal["data"]["order_no"] = "A-7"
    second, _ = events(renewal)
    assert isinstance(first, PaymentEvent) and isinstance(second, PaymentEvent)
    assert (first.order_no, second.order_no) == ("A-7", None)


def test_renewed_without_amount_names_a_payment_told_on_its_own() -> None:
    payload = payloads.subscription_renewed("sub_1", "pay_2", at=AT, period_end=FEB)
    assert events(payload) == (fact(Kind.PERIOD, "period:pay_2", payment_ref="pay_2", period_end=FEB),)


def test_renewal_failed() -> None:
    assert events(payloads.subscription_renewal_failed("sub_1", at=AT), "msg_7") == (
        fact(Kind.RENEWAL_FAILED, "renewal_failed:msg_7"),
    )
    # A failed attempt with an id counts once, whatever delivery tells it.
    with_id = payloads.subscription_renewal_failed("sub_1", at=AT, payment_id="pay_3")
    assert (
        events(with_id, "msg_8")
        == events(with_id, "msg_9")
        == (fact(Kind.RENEWAL_FAILED, "renewal_failed:pay_3"),)
    )


def test_paused_and_resumed() -> None:
    assert events(payloads.subscription_paused("sub_1", at=AT, resume_at=FEB)) == (
        fact(Kind.PAUSED, "paused:msg_1", resume_at=FEB),
    )
    assert events(payloads.subscription_paused("sub_1", at=AT)) == (fact(Kind.PAUSED, "paused:msg_1"),)
    assert events(payloads.subscription_resumed("sub_1", at=AT, period_end=FEB)) == (
        fact(Kind.RESUMED, "resumed:msg_1", period_end=FEB),
    )


def test_updated_price_and_next_billing_date() -> None:
    payload = payloads.subscription_updated("sub_1", at=AT, amount=1290, interval="P1M", period_end=FEB)
    assert events(payload) == (
        fact(Kind.UPDATED, "updated:msg_1", amount=1290, currency="EUR", interval="P1M", period_end=FEB),
    )


def test_updated_cancel_at_period_end_false_withdraws_a_cancellation() -> None:
    assert events(payloads.subscription_updated("sub_1", at=AT, cancel_at_period_end=False)) == (
        fact(Kind.CANCEL_WITHDRAWN, "cancel_withdrawn:msg_1"),
    )
    assert events(payloads.subscription_updated("sub_1", at=AT, cancel_at_period_end=True)) == (
        fact(Kind.CANCELLED, "cancelled:msg_1"),
    )


def test_updated_with_nothing_to_update_has_no_effect() -> None:
    assert events(payloads.subscription_updated("sub_1", at=AT)) == ()


def test_cancelled() -> None:
    assert events(payloads.subscription_cancelled("sub_1", at=AT)) == (
        fact(Kind.CANCELLED, "cancelled:msg_1"),
    )
    assert events(payloads.subscription_cancelled("sub_1", at=AT, at_period_end=False)) == (
        fact(Kind.CANCELLED, "cancelled:msg_1", at_period_end=False),
    )
    assert events(payloads.subscription_cancelled("sub_1", at=AT, cancel_at=FEB)) == (
        fact(Kind.CANCELLED, "cancelled:msg_1", cancel_at=FEB),
    )


def test_plan_changed_applies_now_unless_at_period_end() -> None:
    assert events(payloads.subscription_plan_changed("sub_1", "gold", at=AT)) == (
        fact(Kind.PLAN_CHANGED, "plan_changed:msg_1", at_period_end=False, product_ref="gold"),
    )
    later = payloads.subscription_plan_changed("sub_1", "gold", at=AT, at_period_end=True)
    (changed,) = events(later)
    assert isinstance(changed, SubscriptionEvent) and changed.at_period_end


def test_unknown_subscription_types_are_acknowledged_without_events() -> None:
    delivery = parse({"type": "subscription.trial_will_end", "data": "anything"})
    assert delivery == ParsedDelivery("msg_1", "subscription.trial_will_end", ())


def test_fact_keys_are_stable_across_redeliveries() -> None:
    for payload in (
        payloads.subscription_paused("sub_1", at=AT),
        payloads.subscription_renewed("sub_1", "pay_2", at=AT, amount=990),
        payloads.subscription_cancelled("sub_1", at=AT),
    ):
        assert events(payload, "msg_same") == events(copy.deepcopy(payload), "msg_same")


def test_a_long_webhook_id_still_makes_a_short_unique_key() -> None:
    long_a, long_b = "a" * 250 + "1", "a" * 250 + "2"
    (first,) = events(payloads.subscription_cancelled("sub_1"), long_a)
    (second,) = events(payloads.subscription_cancelled("sub_1"), long_b)
    assert isinstance(first, SubscriptionEvent) and isinstance(second, SubscriptionEvent)
    assert len(first.fact_key) <= 255 and first.fact_key != second.fact_key


def test_dates_with_an_offset_are_converted_to_utc() -> None:
    payload = payloads.subscription_paused(
        "sub_1", at="2027-01-10T11:00:00+01:00", resume_at="2027-02-10T11:00:00+01:00"
    )
    assert events(payload) == (fact(Kind.PAUSED, "paused:msg_1", resume_at=FEB),)


# Each required field missing, each bad value named

TYPE_ARGS: dict[str, dict[str, Any]] = {
    "subscription.created": {"product_id": "gold"},
    "subscription.renewed": {"payment_id": "pay_2"},
    "subscription.renewal_failed": {},
    "subscription.paused": {},
    "subscription.resumed": {},
    "subscription.updated": {"amount": 1, "currency": "EUR"},
    "subscription.cancelled": {},
    "subscription.plan_changed": {"product_id": "gold"},
}


def good(event_type: str, **changes: Any) -> dict[str, Any]:
    payload = payloads.subscription_event(event_type, "sub_1", AT, **TYPE_ARGS[event_type])
    for key, value in changes.items():
        if value is None:
            payload["data"].pop(key, None)
        else:
            payload["data"][key] = value
    return payload


def refusal(payload: dict[str, Any]) -> str:
    with pytest.raises(MalformedPayload) as caught:
        parse(payload)
    return str(caught.value)


@pytest.mark.parametrize("event_type", SUBSCRIPTION_EVENT_TYPES)
def test_every_type_parses_and_needs_its_subscription_id(event_type: str) -> None:
    assert all(e.occurred_at == WHEN for e in events(good(event_type)))
    missing = refusal(good(event_type, subscription_id=None))
    assert missing == f"data.subscription_id is required for {event_type}"
    assert refusal(good(event_type, subscription_id=42)) == "data.subscription_id must be a non-empty string"
    assert refusal({"type": event_type, "timestamp": AT}) == f"data is required for {event_type}"
    assert refusal({"type": event_type, "data": ["sub_1"]}) == "data must be a JSON object"


MALFORMED: list[tuple[dict[str, Any], str]] = [
    (good("subscription.renewed", payment_id=None), "data.payment_id is required for subscription.renewed"),
    (
        good("subscription.plan_changed", product_id=None),
        "data.product_id is required for subscription.plan_changed",
    ),
    (
        good("subscription.created", product_id=None),
        "data.product_id is required for subscription.created (or data.order_no",
    ),
    (
        good("subscription.created", period_end=AT),
        "data.period_end on subscription.created needs data.payment_id",
    ),
    (good("subscription.created", payment_id=""), "data.payment_id must be a non-empty string"),
    (good("subscription.renewed", amount=990), "data.currency is required when data.amount is given"),
    (good("subscription.updated", amount="9.90"), "data.amount must be a non-negative integer"),
    (
        good("subscription.created", interval="monthly"),
        "data.interval 'monthly' is not an ISO 8601 duration such as P1M",
    ),
    (good("subscription.created", interval="P0D"), "data.interval must be positive"),
    (good("subscription.created", interval="P200Y"), "data.interval must be at most 100 years"),
    (good("subscription.created", interval=30), 'data.interval must be an ISO 8601 duration such as "P1M"'),
    (good("subscription.created", interval="P" + "1" * 40 + "D"), "data.interval is too long"),
    (good("subscription.cancelled", at_period_end="yes"), "data.at_period_end must be true or false"),
    (good("subscription.updated", cancel_at_period_end=0), "data.cancel_at_period_end must be true or false"),
    (good("subscription.plan_changed", at_period_end=1), "data.at_period_end must be true or false"),
    (
        good("subscription.cancelled", at_period_end=False, cancel_at=AT),
        "data.at_period_end false (cancelled now) contradicts data.cancel_at",
    ),
    (
        good("subscription.created", customer={"email": "nobody"}),
        "data.customer.email 'nobody' is not an email",
    ),
    (good("subscription.paused", product_id=["gold"]), "data.product_id must be a string"),
]


@pytest.mark.parametrize(("payload", "message"), MALFORMED)
def test_malformed_payload_names_the_field(payload: dict[str, Any], message: str) -> None:
    assert message in refusal(payload)


DATE_FIELDS = [
    ("subscription.created", "trial_end"),
    ("subscription.renewed", "period_end"),
    ("subscription.paused", "resume_at"),
    ("subscription.resumed", "period_end"),
    ("subscription.updated", "period_end"),
    ("subscription.cancelled", "cancel_at"),
]
BAD_DATES = [
    (1801612800, "must be an ISO 8601 string with a time zone"),
    ("next month", "'next month' is not an ISO 8601 date-time"),
    ("2027-02-10T10:00:00", "must include a time zone (Z or +01:00)"),
    ("2027-02-10", "must include a time zone"),
    ("9999-12-31T00:00:00Z", "is out of range (years 1970 to 2999)"),
    ("1969-12-31T23:59:59Z", "is out of range"),
]


@pytest.mark.parametrize(("event_type", "field"), DATE_FIELDS)
@pytest.mark.parametrize(("value", "message"), BAD_DATES)
def test_bad_dates_name_their_field(event_type: str, field: str, value: Any, message: str) -> None:
    refused = refusal(good(event_type, **{field: value}))
    assert refused.startswith(f"data.{field} ") and message in refused


@pytest.mark.parametrize(("value", "message"), BAD_DATES)
def test_bad_timestamps_are_refused(value: Any, message: str) -> None:
    payload = good("subscription.paused")
    payload["timestamp"] = value
    refused = refusal(payload)
    assert refused.startswith("timestamp ") and message in refused


# Nothing but GatewayError, whatever arrives

FIELDS = [
    "subscription_id",
    "payment_id",
    "product_id",
    "order_no",
    "amount",
    "currency",
    "interval",
    "trial_end",
    "period_end",
    "resume_at",
    "cancel_at",
    "at_period_end",
    "cancel_at_period_end",
    "customer",
]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        ["sub_1", "P1M", "P0D", "-P1M", "EUR", AT, "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z"]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["email", "name", "locale"]), st.text(max_size=8), max_size=2),
)


@settings(max_examples=400)
@given(
    event_type=st.sampled_from(SUBSCRIPTION_EVENT_TYPES),
    timestamp=values,
    data=st.dictionaries(st.sampled_from(FIELDS), values),
)
def test_random_subscription_documents_raise_only_gateway_errors(
    event_type: str, timestamp: Any, data: dict[str, Any]
) -> None:
    body = json.dumps({"type": event_type, "timestamp": timestamp, "data": data}).encode()
    try:
        delivery = gateway.parse(body, {"webhook-id": "msg_1"})
    except GatewayError as error:
        assert str(error)
    else:
        payments = [i for i, e in enumerate(delivery.events) if isinstance(e, PaymentEvent)]
        facts = [i for i, e in enumerate(delivery.events) if isinstance(e, SubscriptionEvent)]
        # Payments come before the subscription facts that name them.
        assert not payments or not facts or max(payments) < min(facts)
        for event in delivery.events:
            assert event.occurred_at is None or event.occurred_at.tzinfo is not None
