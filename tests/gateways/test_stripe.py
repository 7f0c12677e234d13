"""Unit tests of the Stripe adapter: signatures, event mapping, garbage. No database."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einlass.billing.gateways.base import (
    Customer,
    FactKind,
    GatewayError,
    InvalidSignature,
    MalformedPayload,
    ParsedDelivery,
    PaymentEvent,
)
from einlass.billing.gateways.stripe import StripeGateway
from payloads import stripe as wire

SECRET = "whsec_3kD9yq2Lr8T1vXb0Zc7Wm4Pn6Hs5Ja2F"
OLD_SECRET = "whsec_Fq8o0Yc1Nw3Ze5Rb7Tx9Uv2Is4Kp6Md8"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
SECRETS = {"webhook_secret": SECRET}
PI = "pi_3QzXk2LkdIwHu7ix0Fq1Ab2C"
CHARGE = "ch_3QzXk2LkdIwHu7ix0a8Zy9Xw"
DISPUTE = "du_1QzY04LkdIwHu7ixR2s3T4u5"
OCCURRED = datetime.fromtimestamp(wire.DEFAULT_CREATED, UTC)


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway()


def parse(gateway: StripeGateway, event: dict[str, Any]) -> ParsedDelivery:
    body, headers = wire.signed(event, SECRET, TS)
    gateway.verify(body, headers, SECRETS, NOW)
    return gateway.parse(body, headers)


def only(delivery: ParsedDelivery) -> PaymentEvent:
    assert len(delivery.events) == 1, delivery.events
    return delivery.events[0]


def malformed(gateway: StripeGateway, event: object) -> str:
    with pytest.raises(MalformedPayload) as caught:
        gateway.parse(json.dumps(event).encode(), {})
    return str(caught.value)


# --- the gateway's identity ---------------------------------------------------------------------


def test_name_and_secret_fields() -> None:
    assert StripeGateway.name == "stripe"
    assert StripeGateway.secret_fields == ("webhook_secret", "api_key")


# --- signature ----------------------------------------------------------------------------------


def test_correct_signature_is_accepted(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS)
    gateway.verify(body, headers, SECRETS, NOW)


def test_signed_builder_produces_the_documented_header() -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS)
    assert headers["content-type"] == "application/json"
    timestamp, v1 = headers["stripe-signature"].split(",")
    assert timestamp == f"t={TS}"
    assert v1 == f"v1={wire.stripe_signature(body, SECRET, TS)}"
    assert json.loads(body) == event


@pytest.mark.parametrize(
    "name", ["Stripe-Signature", "STRIPE-SIGNATURE", "stripe-signature", "sTrIpE-sIgNaTuRe"]
)
def test_header_name_is_case_insensitive(gateway: StripeGateway, name: str) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS)
    gateway.verify(
        body, {"Content-Type": "application/json", name: headers["stripe-signature"]}, SECRETS, NOW
    )


def test_tampered_body_is_rejected(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS)
    tampered = body.replace(b'"amount": 1990', b'"amount": 19900')
    assert tampered != body
    with pytest.raises(InvalidSignature, match="matches the body"):
        gateway.verify(tampered, headers, SECRETS, NOW)
    with pytest.raises(InvalidSignature, match="matches the body"):
        gateway.verify(body + b"\n", headers, SECRETS, NOW)


def test_wrong_secret_is_rejected(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, "whsec_someone_else", TS)
    with pytest.raises(InvalidSignature, match="wrong webhook_secret"):
        gateway.verify(body, headers, SECRETS, NOW)


def test_signature_over_another_timestamp_is_rejected(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS)
    signature = headers["stripe-signature"].split(",")[1]
    with pytest.raises(InvalidSignature, match="matches the body"):
        gateway.verify(body, {"stripe-signature": f"t={TS + 1},{signature}"}, SECRETS, NOW)


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_timestamp_within_tolerance_is_accepted(gateway: StripeGateway, offset: int) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS + offset)
    gateway.verify(body, headers, SECRETS, NOW)


@pytest.mark.parametrize(("offset", "words"), [(-301, "s old"), (-86_400, "s old"), (301, "in the future")])
def test_timestamp_outside_tolerance_is_rejected(gateway: StripeGateway, offset: int, words: str) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS + offset)
    with pytest.raises(InvalidSignature, match=words) as caught:
        gateway.verify(body, headers, SECRETS, NOW)
    assert "300 s tolerance" in str(caught.value)


def test_tolerance_uses_the_given_now_not_the_system_clock(gateway: StripeGateway) -> None:
    long_ago = datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, int(long_ago.timestamp()))
    gateway.verify(body, headers, SECRETS, long_ago + timedelta(seconds=299))
    with pytest.raises(InvalidSignature, match="old"):
        gateway.verify(body, headers, SECRETS, NOW)


def test_naive_now_is_taken_as_utc(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS)
    gateway.verify(body, headers, SECRETS, NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    "secrets_in_header",
    [[OLD_SECRET, SECRET], [SECRET, OLD_SECRET], ["whsec_x", "whsec_y", SECRET]],
)
def test_any_v1_may_match_during_secret_rotation(
    gateway: StripeGateway, secrets_in_header: list[str]
) -> None:
    body = wire.encode(wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990))
    header = wire.signature_header(body, secrets_in_header, TS, with_v0=True)
    assert header.count("v1=") == len(secrets_in_header)
    gateway.verify(body, {"stripe-signature": header}, SECRETS, NOW)


def test_rotation_header_without_our_secret_is_rejected(gateway: StripeGateway) -> None:
    body = wire.encode(wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990))
    header = wire.signature_header(body, [OLD_SECRET, "whsec_other"], TS)
    with pytest.raises(InvalidSignature, match="matches the body"):
        gateway.verify(body, {"stripe-signature": header}, SECRETS, NOW)


def test_v0_alone_is_not_enough(gateway: StripeGateway) -> None:
    body = wire.encode(wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990))
    v0 = wire.stripe_signature(body, SECRET, TS)
    with pytest.raises(InvalidSignature, match="no v1 signature"):
        gateway.verify(body, {"stripe-signature": f"t={TS},v0={v0}"}, SECRETS, NOW)


def test_missing_header_is_rejected(gateway: StripeGateway) -> None:
    body = wire.encode(wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990))
    with pytest.raises(InvalidSignature, match="missing Stripe-Signature header"):
        gateway.verify(body, {"content-type": "application/json"}, SECRETS, NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "v1=abc",
        "t=,v1=abc",
        "t=abc,v1=abc",
        "t=-5,v1=abc",
        "t=1.5,v1=abc",
        f"t={TS},t={TS},v1=abc",
        f"t={TS};v1=abc",
        f"t={TS},,v1=abc",
        f"t={TS},=abc",
    ],
)
def test_unparsable_header_is_rejected(gateway: StripeGateway, header: str) -> None:
    with pytest.raises(InvalidSignature, match="cannot parse the Stripe-Signature header"):
        gateway.verify(b"{}", {"stripe-signature": header}, SECRETS, NOW)


@pytest.mark.parametrize("header", [f"t={TS}", f"t={TS},v1=", f"t={TS},v2=abc,v0=def"])
def test_header_without_v1_is_rejected(gateway: StripeGateway, header: str) -> None:
    with pytest.raises(InvalidSignature, match="no v1 signature"):
        gateway.verify(b"{}", {"stripe-signature": header}, SECRETS, NOW)


@pytest.mark.parametrize("secrets", [{}, {"webhook_secret": ""}, {"api_key": "sk_test_x"}])
def test_missing_webhook_secret_is_rejected(gateway: StripeGateway, secrets: dict[str, str]) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990)
    body, headers = wire.signed(event, SECRET, TS)
    with pytest.raises(InvalidSignature, match="no Stripe webhook_secret is configured"):
        gateway.verify(body, headers, secrets, NOW)


def test_each_rejection_has_its_own_message(gateway: StripeGateway) -> None:
    body = wire.encode(wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=1990))
    good = wire.signature_header(body, [SECRET], TS)
    cases = {
        "missing": {},
        "unparsable": {"stripe-signature": "nonsense"},
        "no v1": {"stripe-signature": f"t={TS}"},
        "mismatch": {"stripe-signature": wire.signature_header(body, ["whsec_other"], TS)},
        "stale": {"stripe-signature": wire.signature_header(body, [SECRET], TS - 1000)},
        "future": {"stripe-signature": wire.signature_header(body, [SECRET], TS + 1000)},
    }
    messages = {}
    for case, headers in cases.items():
        with pytest.raises(InvalidSignature) as caught:
            gateway.verify(body, headers, SECRETS, NOW)
        messages[case] = str(caught.value)
    assert len(set(messages.values())) == len(cases), messages
    gateway.verify(body, {"stripe-signature": good}, SECRETS, NOW)


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=200), body=st.binary(max_size=200))
def test_any_header_only_raises_invalid_signature(header: str, body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        StripeGateway().verify(body, {"Stripe-Signature": header}, SECRETS, NOW)


@settings(max_examples=200, deadline=None)
@given(
    t=st.one_of(st.integers(min_value=-(10**20), max_value=10**20).map(str), st.text(max_size=20)),
    v1s=st.lists(st.text(max_size=80), max_size=4),
)
def test_header_shaped_noise_only_raises_invalid_signature(t: str, v1s: list[str]) -> None:
    header = ",".join([f"t={t}", *(f"v1={v}" for v in v1s)])
    with pytest.raises(InvalidSignature):
        StripeGateway().verify(b"{}", {"stripe-signature": header}, SECRETS, NOW)


# --- Checkout Sessions --------------------------------------------------------------------------


def test_checkout_session_completed_paid_confirms(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed(
        "evt_1QzXk3LkdIwHu7ixcs1",
        payment_intent=PI,
        amount=4900,
        email="erika@example.com",
        order_no="ORD-2026-0001",
        metadata={"price_id": "price_1QzWa8LkdIwHu7ixGold"},
    )
    delivery = parse(gateway, event)
    assert delivery.event_key == "evt_1QzXk3LkdIwHu7ixcs1"
    assert delivery.event_type == "checkout.session.completed"
    assert only(delivery) == PaymentEvent(
        fact=FactKind.CONFIRMED,
        payment_ref=PI,
        fact_key="confirmed",
        amount=4900,
        currency="EUR",
        order_no="ORD-2026-0001",
        product_ref="price_1QzWa8LkdIwHu7ixGold",
        customer=Customer(email="erika@example.com", name="Erika Mustermann"),
        occurred_at=OCCURRED,
    )


def test_checkout_order_no_falls_back_to_metadata(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed(
        "evt_1", payment_intent=PI, amount=4900, email="e@example.com", metadata={"order_no": "ORD-7"}
    )
    assert only(parse(gateway, event)).order_no == "ORD-7"


def test_checkout_client_reference_id_wins_over_metadata(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed(
        "evt_1",
        payment_intent=PI,
        amount=4900,
        email="e@example.com",
        order_no="ORD-1",
        metadata={"order_no": "ORD-2"},
    )
    assert only(parse(gateway, event)).order_no == "ORD-1"


def test_checkout_without_order_or_product(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed("evt_1", payment_intent=PI, amount=4900, email="e@example.com")
    confirmed = only(parse(gateway, event))
    assert confirmed.order_no is None
    assert confirmed.product_ref is None


@pytest.mark.parametrize(
    ("metadata", "product_ref"),
    [
        ({"price_id": "price_A", "product_id": "prod_B", "plan": "gold"}, "price_A"),
        ({"product_id": "prod_B", "plan": "gold"}, "prod_B"),
        ({"plan": "gold"}, "gold"),
        ({"something": "else"}, None),
    ],
)
def test_product_ref_comes_from_metadata(
    gateway: StripeGateway, metadata: dict[str, str], product_ref: str | None
) -> None:
    event = wire.checkout_session_completed(
        "evt_1", payment_intent=PI, amount=4900, email="e@example.com", metadata=metadata
    )
    assert only(parse(gateway, event)).product_ref == product_ref
    intent = wire.payment_intent_succeeded("evt_2", payment_intent=PI, amount=4900, metadata=metadata)
    assert only(parse(gateway, intent)).product_ref == product_ref


def test_checkout_currency_is_upper_cased(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed(
        "evt_1", payment_intent=PI, amount=1000, email="e@example.com", currency="chf"
    )
    assert only(parse(gateway, event)).currency == "CHF"


def test_checkout_customer_email_falls_back_and_locale_is_kept(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed("evt_1", payment_intent=PI, amount=1000, email="e@example.com")
    session = event["data"]["object"]
    session["customer_details"] = None
    session["customer_email"] = "prefilled@example.com"
    session["locale"] = "de"
    assert only(parse(gateway, event)).customer == Customer(email="prefilled@example.com", locale="de")


def test_checkout_auto_locale_is_dropped(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed("evt_1", payment_intent=PI, amount=1000, email="e@example.com")
    event["data"]["object"]["locale"] = "auto"
    customer = only(parse(gateway, event)).customer
    assert customer is not None
    assert customer.locale is None


def test_checkout_expanded_payment_intent_is_accepted(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed("evt_1", payment_intent=PI, amount=1000, email="e@example.com")
    event["data"]["object"]["payment_intent"] = {"id": PI, "object": "payment_intent"}
    assert only(parse(gateway, event)).payment_ref == PI


def test_checkout_unpaid_is_pending(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed(
        "evt_1",
        payment_intent=PI,
        amount=4900,
        email="e@example.com",
        order_no="ORD-1",
        payment_status="unpaid",
    )
    pending = only(parse(gateway, event))
    assert pending.fact is FactKind.PENDING
    assert pending.fact_key == "pending"
    assert pending.payment_ref == PI
    assert pending.order_no == "ORD-1"
    assert pending.amount == 4900


def test_checkout_async_payment_succeeded_confirms(gateway: StripeGateway) -> None:
    event = wire.checkout_session_async_payment_succeeded(
        "evt_2", payment_intent=PI, amount=4900, email="e@example.com", order_no="ORD-1"
    )
    delivery = parse(gateway, event)
    assert delivery.event_type == "checkout.session.async_payment_succeeded"
    confirmed = only(delivery)
    assert (confirmed.fact, confirmed.fact_key, confirmed.payment_ref) == (
        FactKind.CONFIRMED,
        "confirmed",
        PI,
    )
    assert confirmed.order_no == "ORD-1"
    assert confirmed.customer == Customer(email="e@example.com", name="Erika Mustermann")


def test_checkout_async_payment_failed_fails(gateway: StripeGateway) -> None:
    event = wire.checkout_session_async_payment_failed(
        "evt_3", payment_intent=PI, amount=4900, email="e@example.com", order_no="ORD-1"
    )
    failed = only(parse(gateway, event))
    assert (failed.fact, failed.fact_key, failed.payment_ref) == (FactKind.FAILED, "failed", PI)
    assert failed.order_no == "ORD-1"


@pytest.mark.parametrize("mode", ["subscription", "setup"])
@pytest.mark.parametrize(
    "builder",
    [
        wire.checkout_session_completed,
        wire.checkout_session_async_payment_succeeded,
        wire.checkout_session_async_payment_failed,
    ],
)
def test_checkout_other_modes_are_ignored(
    gateway: StripeGateway, mode: str, builder: Callable[..., dict[str, Any]]
) -> None:
    event = builder("evt_1", payment_intent=PI, amount=4900, email="e@example.com")
    event["data"]["object"]["mode"] = mode
    delivery = parse(gateway, event)
    assert delivery.events == ()
    assert delivery.event_key == "evt_1"


def test_checkout_no_payment_required_is_ignored(gateway: StripeGateway) -> None:
    event = wire.checkout_session_completed(
        "evt_1", payment_intent=None, amount=0, email="e@example.com", payment_status="no_payment_required"
    )
    assert parse(gateway, event).events == ()


# --- PaymentIntents -----------------------------------------------------------------------------


def test_payment_intent_succeeded_confirms(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded(
        "evt_4", payment_intent=PI, amount=1990, email="erika@example.com", order_no="ORD-9"
    )
    delivery = parse(gateway, event)
    assert delivery.event_type == "payment_intent.succeeded"
    assert only(delivery) == PaymentEvent(
        fact=FactKind.CONFIRMED,
        payment_ref=PI,
        fact_key="confirmed",
        amount=1990,
        currency="EUR",
        order_no="ORD-9",
        product_ref=None,
        customer=Customer(email="erika@example.com"),
        occurred_at=OCCURRED,
    )


def test_payment_intent_without_email_has_no_customer(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_4", payment_intent=PI, amount=1990)
    assert only(parse(gateway, event)).customer is None


@pytest.mark.parametrize("received", [None, 0])
def test_payment_intent_amount_falls_back_to_amount(gateway: StripeGateway, received: int | None) -> None:
    event = wire.payment_intent_succeeded("evt_4", payment_intent=PI, amount=1990)
    event["data"]["object"]["amount_received"] = received
    assert only(parse(gateway, event)).amount == 1990


def test_payment_intent_amount_received_wins(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_4", payment_intent=PI, amount=1990)
    event["data"]["object"]["amount_received"] = 1500
    assert only(parse(gateway, event)).amount == 1500


def test_checkout_and_payment_intent_are_one_fact(gateway: StripeGateway) -> None:
    session = only(
        parse(
            gateway,
            wire.checkout_session_completed("evt_a", payment_intent=PI, amount=4900, email="e@example.com"),
        )
    )
    intent = only(parse(gateway, wire.payment_intent_succeeded("evt_b", payment_intent=PI, amount=4900)))
    assert (session.fact, session.payment_ref, session.fact_key) == (
        intent.fact,
        intent.payment_ref,
        intent.fact_key,
    )


def test_payment_intent_payment_failed_fails(gateway: StripeGateway) -> None:
    event = wire.payment_intent_payment_failed(
        "evt_5", payment_intent=PI, amount=1990, email="erika@example.com", order_no="ORD-9"
    )
    failed = only(parse(gateway, event))
    assert (failed.fact, failed.fact_key, failed.payment_ref) == (FactKind.FAILED, "failed", PI)
    assert failed.amount == 1990
    assert failed.currency == "EUR"
    assert failed.order_no == "ORD-9"
    assert failed.customer == Customer(email="erika@example.com")


# --- refunds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("refunded", [500, 1990])
def test_charge_refunded_reports_the_cumulative_total(gateway: StripeGateway, refunded: int) -> None:
    event = wire.charge_refunded(
        "evt_6", payment_intent=PI, charge_id=CHARGE, amount=1990, amount_refunded=refunded
    )
    delivery = parse(gateway, event)
    assert delivery.event_type == "charge.refunded"
    assert only(delivery) == PaymentEvent(
        fact=FactKind.REFUND_TOTAL,
        payment_ref=PI,
        fact_key=f"refund_total:{refunded}",
        amount=refunded,
        currency="EUR",
        occurred_at=OCCURRED,
    )


def test_successive_partial_refunds_are_distinct_facts(gateway: StripeGateway) -> None:
    first = wire.charge_refunded(
        "evt_6", payment_intent=PI, charge_id=CHARGE, amount=1990, amount_refunded=500
    )
    second = wire.charge_refunded(
        "evt_7", payment_intent=PI, charge_id=CHARGE, amount=1990, amount_refunded=1500
    )
    assert only(parse(gateway, first)).fact_key != only(parse(gateway, second)).fact_key


def test_legacy_charge_refund_uses_the_charge_id(gateway: StripeGateway) -> None:
    event = wire.charge_refunded(
        "evt_6", payment_intent=None, charge_id=CHARGE, amount=1990, amount_refunded=1990
    )
    assert only(parse(gateway, event)).payment_ref == CHARGE


# --- disputes -----------------------------------------------------------------------------------


def test_dispute_created_is_a_chargeback(gateway: StripeGateway) -> None:
    event = wire.dispute_created(
        "evt_8", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990
    )
    delivery = parse(gateway, event)
    assert delivery.event_type == "charge.dispute.created"
    assert only(delivery) == PaymentEvent(
        fact=FactKind.CHARGEBACK,
        payment_ref=PI,
        fact_key=f"dispute:{DISPUTE}",
        amount=1990,
        currency="EUR",
        occurred_at=OCCURRED,
    )


def test_dispute_inquiry_is_not_a_chargeback(gateway: StripeGateway) -> None:
    event = wire.dispute_inquiry_created(
        "evt_8", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990
    )
    assert parse(gateway, event).events == ()


def test_dispute_funds_withdrawn_is_the_same_chargeback(gateway: StripeGateway) -> None:
    created = only(
        parse(
            gateway,
            wire.dispute_created(
                "evt_8", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990
            ),
        )
    )
    withdrawn = only(
        parse(
            gateway,
            wire.dispute_funds_withdrawn(
                "evt_9", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990
            ),
        )
    )
    assert (withdrawn.fact, withdrawn.fact_key, withdrawn.payment_ref) == (
        created.fact,
        created.fact_key,
        created.payment_ref,
    )


def test_dispute_won_reverses_the_chargeback(gateway: StripeGateway) -> None:
    event = wire.dispute_closed(
        "evt_10", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990, status="won"
    )
    delivery = parse(gateway, event)
    assert delivery.event_type == "charge.dispute.closed"
    reversed_ = only(delivery)
    assert reversed_.fact is FactKind.CHARGEBACK_REVERSED
    assert reversed_.fact_key == f"dispute_won:{DISPUTE}"
    assert reversed_.payment_ref == PI
    assert reversed_.amount == 1990


@pytest.mark.parametrize("status", ["lost", "prevented"])
def test_dispute_lost_keeps_the_same_chargeback(gateway: StripeGateway, status: str) -> None:
    event = wire.dispute_closed(
        "evt_10", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990, status=status
    )
    lost = only(parse(gateway, event))
    assert lost.fact is FactKind.CHARGEBACK
    assert lost.fact_key == f"dispute:{DISPUTE}"


def test_inquiry_closed_is_ignored(gateway: StripeGateway) -> None:
    event = wire.dispute_closed(
        "evt_10",
        dispute_id=DISPUTE,
        payment_intent=PI,
        charge_id=CHARGE,
        amount=1990,
        status="warning_closed",
    )
    assert parse(gateway, event).events == ()


def test_legacy_charge_dispute_uses_the_charge_id(gateway: StripeGateway) -> None:
    created = wire.dispute_created(
        "evt_8", dispute_id=DISPUTE, payment_intent=None, charge_id=CHARGE, amount=1990
    )
    won = wire.dispute_closed("evt_9", dispute_id=DISPUTE, payment_intent=None, charge_id=CHARGE, amount=1990)
    refund = wire.charge_refunded(
        "evt_10", payment_intent=None, charge_id=CHARGE, amount=1990, amount_refunded=1990
    )
    assert {only(parse(gateway, event)).payment_ref for event in (created, won, refund)} == {CHARGE}


def test_dispute_with_expanded_charge(gateway: StripeGateway) -> None:
    event = wire.dispute_created(
        "evt_8", dispute_id=DISPUTE, payment_intent=None, charge_id=CHARGE, amount=1990
    )
    event["data"]["object"]["charge"] = {"id": CHARGE, "object": "charge"}
    assert only(parse(gateway, event)).payment_ref == CHARGE


# --- everything else ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type",
    [
        "customer.created",
        "checkout.session.expired",
        "charge.succeeded",
        "charge.refund.updated",
        "charge.dispute.updated",
        "charge.dispute.funds_reinstated",
        "payment_intent.created",
        "payment_intent.processing",
        "invoice.created",
        "customer.subscription.trial_will_end",
        "something.new.from.stripe",
    ],
)
def test_other_event_types_give_no_events(gateway: StripeGateway, event_type: str) -> None:
    delivery = parse(gateway, wire.unknown_event("evt_11", event_type))
    assert delivery == ParsedDelivery(event_key="evt_11", event_type=event_type)


def test_unknown_event_type_with_any_object_is_acknowledged(gateway: StripeGateway) -> None:
    event = wire.envelope("evt_12", "radar.early_fraud_warning.created", {"id": "issfr_1", "object": "x"})
    assert parse(gateway, event).events == ()


def test_parse_is_pure(gateway: StripeGateway) -> None:
    body, headers = wire.signed(
        wire.checkout_session_completed("evt_1", payment_intent=PI, amount=4900, email="e@example.com"),
        SECRET,
        TS,
    )
    assert gateway.parse(body, headers) == gateway.parse(body, {})


# --- garbage ------------------------------------------------------------------------------------


def _paid_session() -> dict[str, Any]:
    return wire.checkout_session_completed("evt_1", payment_intent=PI, amount=4900, email="e@example.com")


def test_body_not_json(gateway: StripeGateway) -> None:
    with pytest.raises(MalformedPayload, match="not valid JSON"):
        gateway.parse(b"id=evt_1&type=charge.refunded", {})
    with pytest.raises(MalformedPayload, match="not valid JSON"):
        gateway.parse(b"\xff\xfe", {})


def test_body_not_an_object(gateway: StripeGateway) -> None:
    assert "JSON object" in malformed(gateway, [_paid_session()])


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda e: e.pop("id"), "'id'", "got missing"),
        (lambda e: e.update(id=42), "'id'", "got a number"),
        (lambda e: e.update(id=""), "'id'", "empty"),
        (lambda e: e.update(id="evt_" + "x" * 252), "'id'", "too long"),
        (lambda e: e.update(type="x." * 51), "'type'", "too long"),
        (lambda e: e.update(object="list"), "'object'", "'event'"),
        (lambda e: e.pop("type"), "'type'", "got missing"),
        (lambda e: e.update(type=["checkout.session.completed"]), "'type'", "an array"),
        (lambda e: e.update(created="yesterday"), "'created'", "Unix timestamp"),
        (lambda e: e.update(created=10**30), "'created'", "out of range"),
        (lambda e: e.update(created=True), "'created'", "a boolean"),
        (lambda e: e.pop("data"), "'data'", "got missing"),
        (lambda e: e.update(data="x"), "'data'", "a string"),
        (lambda e: e["data"].pop("object"), "'data.object'", "got missing"),
        (lambda e: e["data"].update(object=None), "'data.object'", "null"),
        (lambda e: e["data"].update(object=[1]), "'data.object'", "an array"),
    ],
)
def test_malformed_envelope(
    gateway: StripeGateway, mutate: Callable[[dict[str, Any]], object], field: str, words: str
) -> None:
    event = _paid_session()
    mutate(event)
    message = malformed(gateway, event)
    assert field in message
    assert words in message


@pytest.mark.parametrize(
    ("key", "value", "field", "words"),
    [
        ("object", "charge", "'data.object.object'", "'checkout.session'"),
        ("mode", None, "'data.object.mode'", "non-empty string"),
        ("payment_status", 1, "'data.object.payment_status'", "a number"),
        ("payment_intent", None, "'data.object.payment_intent'", "missing"),
        ("payment_intent", 7, "'data.object.payment_intent'", "a number"),
        ("payment_intent", {"object": "payment_intent"}, "'data.object.payment_intent.id'", "missing"),
        ("amount_total", "49.00", "'data.object.amount_total'", "integer"),
        ("amount_total", 49.5, "'data.object.amount_total'", "integer"),
        ("amount_total", -1, "'data.object.amount_total'", "negative"),
        ("currency", "euro", "'data.object.currency'", "ISO 4217"),
        ("currency", 978, "'data.object.currency'", "a number"),
        ("client_reference_id", {"order": 1}, "'data.object.client_reference_id'", "an object"),
        ("metadata", ["order_no"], "'data.object.metadata'", "an array"),
        ("metadata", {"order_no": 17}, "'data.object.metadata.order_no'", "a number"),
        ("metadata", {"price_id": True}, "'data.object.metadata.price_id'", "a boolean"),
        ("customer_details", "erika", "'data.object.customer_details'", "a string"),
        ("customer_details", {"email": ["a"]}, "'data.object.customer_details.email'", "an array"),
        ("amount_total", 2**31, "'data.object.amount_total'", "between 0 and"),
        ("client_reference_id", "O" * 65, "'data.object.client_reference_id'", "too long"),
        ("metadata", {"order_no": "O" * 65}, "'data.object.metadata.order_no'", "too long"),
        ("metadata", {"price_id": "p" * 201}, "'data.object.metadata.price_id'", "too long"),
        ("payment_intent", "pi_" + "x" * 198, "'data.object.payment_intent'", "too long"),
        ("payment_intent", "pi_1\x00", "'data.object.payment_intent'", "NUL"),
        ("client_reference_id", "ORD-\ud800", "'data.object.client_reference_id'", "surrogate"),
    ],
)
def test_malformed_checkout_session(
    gateway: StripeGateway, key: str, value: Any, field: str, words: str
) -> None:
    event = _paid_session()
    event["data"]["object"][key] = value
    message = malformed(gateway, event)
    assert field in message
    assert words in message


def test_overlong_customer_details_are_dropped_not_refused(gateway: StripeGateway) -> None:
    event = _paid_session()
    session = event["data"]["object"]
    session["customer_details"]["name"] = "N" * 201
    session["customer_details"]["email"] = "e" * 321 + "@example.com"
    session["customer_email"] = None
    session["locale"] = "x" * 36
    confirmed = only(parse(gateway, event))
    assert confirmed.customer is None
    assert confirmed.payment_ref == PI


def test_malformed_payment_intent(gateway: StripeGateway) -> None:
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=100)
    del event["data"]["object"]["id"]
    assert "'data.object.id'" in malformed(gateway, event)
    event = wire.payment_intent_succeeded("evt_1", payment_intent=PI, amount=100)
    event["data"]["object"]["amount_received"] = "100"
    assert "'data.object.amount_received'" in malformed(gateway, event)


def test_malformed_charge(gateway: StripeGateway) -> None:
    event = wire.charge_refunded(
        "evt_1", payment_intent=PI, charge_id=CHARGE, amount=100, amount_refunded=100
    )
    del event["data"]["object"]["amount_refunded"]
    assert "'data.object.amount_refunded'" in malformed(gateway, event)
    event = wire.charge_refunded(
        "evt_1", payment_intent=PI, charge_id=CHARGE, amount=100, amount_refunded=100
    )
    event["data"]["object"]["payment_intent"] = ["pi_1"]
    assert "'data.object.payment_intent'" in malformed(gateway, event)


def test_malformed_dispute(gateway: StripeGateway) -> None:
    def dispute() -> dict[str, Any]:
        return wire.dispute_created(
            "evt_1", dispute_id=DISPUTE, payment_intent=None, charge_id=CHARGE, amount=100
        )

    event = dispute()
    del event["data"]["object"]["status"]
    assert "'data.object.status'" in malformed(gateway, event)
    event = dispute()
    event["data"]["object"]["amount"] = None
    assert "'data.object.amount'" in malformed(gateway, event)
    event = dispute()
    event["data"]["object"]["charge"] = None
    assert "'data.object.charge'" in malformed(gateway, event)
    event = dispute()
    del event["data"]["object"]["id"]
    assert "'data.object.id'" in malformed(gateway, event)


# --- property tests -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _sample_events() -> list[dict[str, Any]]:
    return [
        wire.checkout_session_completed("evt_a", payment_intent=PI, amount=4900, email="e@example.com"),
        wire.checkout_session_completed(
            "evt_b", payment_intent=PI, amount=4900, email="e@example.com", payment_status="unpaid"
        ),
        wire.checkout_session_async_payment_succeeded(
            "evt_c", payment_intent=PI, amount=1, email="e@example.com"
        ),
        wire.checkout_session_async_payment_failed(
            "evt_d", payment_intent=PI, amount=1, email="e@example.com"
        ),
        wire.payment_intent_succeeded(
            "evt_e", payment_intent=PI, amount=1990, email="e@example.com", order_no="1"
        ),
        wire.payment_intent_payment_failed("evt_f", payment_intent=PI, amount=1990),
        wire.charge_refunded("evt_g", payment_intent=PI, charge_id=CHARGE, amount=1990, amount_refunded=10),
        wire.dispute_created("evt_h", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990),
        wire.dispute_funds_withdrawn(
            "evt_i", dispute_id=DISPUTE, payment_intent=None, charge_id=CHARGE, amount=1
        ),
        wire.dispute_closed("evt_j", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990),
        wire.dispute_closed(
            "evt_k", dispute_id=DISPUTE, payment_intent=PI, charge_id=CHARGE, amount=1990, status="lost"
        ),
    ]


SAMPLES = _sample_events()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _parse_or_gateway_error(body: bytes) -> None:
    try:
        delivery = StripeGateway().parse(body, {})
    except GatewayError:
        return
    assert isinstance(delivery, ParsedDelivery)
    assert isinstance(delivery.event_key, str)
    assert delivery.event_key
    for event in delivery.events:
        assert isinstance(event.fact, FactKind)
        assert isinstance(event.payment_ref, str)
        assert event.payment_ref
        assert event.amount is None or (isinstance(event.amount, int) and event.amount >= 0)
        assert event.currency is None or (len(event.currency) == 3 and event.currency.isupper())
        for text in (event.payment_ref, event.fact_key, event.order_no, event.product_ref):
            assert text is None or (len(text) <= 255 and "\x00" not in text)
            assert text is None or text.encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_values)
def test_random_json_bodies_only_raise_gateway_errors(document: Any) -> None:
    _parse_or_gateway_error(json.dumps(document).encode())


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300))
def test_random_bytes_only_raise_gateway_errors(body: bytes) -> None:
    _parse_or_gateway_error(body)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_events_only_raise_gateway_errors(data: st.DataObject) -> None:
    event = json.loads(json.dumps(data.draw(st.sampled_from(SAMPLES))))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = [path for path in _paths(event) if path]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = event
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    _parse_or_gateway_error(json.dumps(event).encode())


FIELD_NAMES = [
    "id",
    "object",
    "mode",
    "payment_status",
    "payment_intent",
    "client_reference_id",
    "metadata",
    "customer_details",
    "customer_email",
    "locale",
    "amount",
    "amount_total",
    "amount_received",
    "amount_refunded",
    "currency",
    "receipt_email",
    "charge",
    "status",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(SAMPLES),
    event_type=st.sampled_from(sorted({sample["type"] for sample in SAMPLES})),
    fields=st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=4),
    fresh=st.booleans(),
)
def test_handled_types_with_random_fields_only_raise_gateway_errors(
    sample: dict[str, Any], event_type: str, fields: dict[str, Any], fresh: bool
) -> None:
    """Known event types whose object has random values in the fields the adapter reads."""
    obj = {} if fresh else dict(sample["data"]["object"])
    obj.update(fields)
    event = wire.envelope("evt_fuzz", event_type, obj)
    _parse_or_gateway_error(json.dumps(event).encode())
