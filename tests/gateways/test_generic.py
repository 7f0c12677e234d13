"""The generic gateway: Standard Webhooks verification and einlass's normalised events (pure)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einlass import standard_webhooks
from einlass.billing.gateways.base import (
    Customer,
    FactKind,
    GatewayError,
    InvalidSignature,
    MalformedPayload,
    ParsedDelivery,
    PaymentEvent,
    SubscriptionEvent,
)
from einlass.billing.gateways.generic import EVENT_TYPES, GenericGateway
from payloads import generic as payloads

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
OCCURRED = datetime(2026, 1, 1, tzinfo=UTC)

gateway = GenericGateway()


def parse(payload: dict[str, Any], msg_id: str = "msg_1") -> ParsedDelivery:
    body, headers = payloads.signed(payload, SECRET, msg_id, TS)
    return gateway.parse(body, headers)


def only_event(payload: dict[str, Any]) -> PaymentEvent:
    delivery = parse(payload)
    assert len(delivery.events) == 1
    return delivery.events[0]


def test_identity() -> None:
    assert GenericGateway.name == "generic"
    # signing_secret is required; action_url (where merchant actions go) is optional.
    assert GenericGateway.secret_fields == ("signing_secret", "action_url")


# Verification


def test_verify_accepts_a_signed_delivery() -> None:
    body, headers = payloads.signed(
        payloads.payment_confirmed("p1", amount=1990, email="a@b.de"), SECRET, "msg_1", TS
    )
    gateway.verify(body, headers, {"signing_secret": SECRET}, NOW)


def test_verify_uses_the_configured_secret() -> None:
    body, headers = payloads.signed(
        payloads.payment_confirmed("p1", amount=1990, email="a@b.de"), SECRET, "msg_1", TS
    )
    with pytest.raises(InvalidSignature, match="matches"):
        gateway.verify(body, headers, {"signing_secret": standard_webhooks.generate_secret()}, NOW)


def test_verify_without_configured_secret() -> None:
    body, headers = payloads.signed(payloads.event("payment.failed", payment_id="p1"), SECRET, "msg_1", TS)
    with pytest.raises(InvalidSignature, match="no signing secret is configured"):
        gateway.verify(body, headers, {}, NOW)
    with pytest.raises(InvalidSignature, match="no signing secret is configured"):
        gateway.verify(body, headers, {"signing_secret": ""}, NOW)


def test_verify_tampered_body() -> None:
    body, headers = payloads.signed(
        payloads.payment_confirmed("p1", amount=1990, email="a@b.de"), SECRET, "msg_1", TS
    )
    with pytest.raises(InvalidSignature):
        gateway.verify(body.replace(b"1990", b"1"), headers, {"signing_secret": SECRET}, NOW)


def test_verify_stale_delivery() -> None:
    body, headers = payloads.signed(payloads.event("payment.failed", payment_id="p1"), SECRET, "msg_1", TS)
    with pytest.raises(InvalidSignature, match="too old"):
        gateway.verify(body, headers, {"signing_secret": SECRET}, NOW + timedelta(minutes=6))


# Parsing each type


def test_payment_confirmed() -> None:
    payload = payloads.payment_confirmed(
        "pay_1",
        amount=1990,
        email="anna@example.com",
        order_no="A-1001",
        product_id="gold",
        name="Anna Muster",
        locale="de",
    )
    delivery = parse(payload, msg_id="msg_abc")
    assert delivery.event_key == "msg_abc"
    assert delivery.event_type == "payment.confirmed"
    assert delivery.events == (
        PaymentEvent(
            fact=FactKind.CONFIRMED,
            payment_ref="pay_1",
            fact_key="confirmed",
            amount=1990,
            currency="EUR",
            order_no="A-1001",
            product_ref="gold",
            customer=Customer(email="anna@example.com", name="Anna Muster", locale="de"),
            occurred_at=OCCURRED,
        ),
    )


def test_payment_pending() -> None:
    event = only_event(payloads.payment_pending("pay_1", amount=500, currency="CHF", order_no="A-1"))
    assert (event.fact, event.fact_key, event.amount, event.currency) == (
        FactKind.PENDING,
        "pending",
        500,
        "CHF",
    )
    assert event.order_no == "A-1"
    assert event.customer is None


def test_payment_failed_needs_no_amount() -> None:
    event = only_event(payloads.payment_failed("pay_1"))
    assert (event.fact, event.payment_ref, event.fact_key) == (FactKind.FAILED, "pay_1", "failed")
    assert event.amount is None and event.currency is None


def test_payment_failed_with_amount() -> None:
    event = only_event(payloads.payment_failed("pay_1", amount=990, email="x@y.de"))
    assert (event.amount, event.currency) == (990, "EUR")
    assert event.customer == Customer(email="x@y.de")


def test_payment_refunded() -> None:
    event = only_event(payloads.payment_refunded("pay_1", refund_id="re_1", amount=500))
    assert event == PaymentEvent(
        fact=FactKind.REFUND,
        payment_ref="pay_1",
        fact_key="refund:re_1",
        amount=500,
        currency="EUR",
        occurred_at=OCCURRED,
    )


def test_each_refund_id_is_its_own_fact() -> None:
    first = only_event(payloads.payment_refunded("pay_1", refund_id="re_1", amount=500))
    second = only_event(payloads.payment_refunded("pay_1", refund_id="re_2", amount=500))
    assert first.fact_key != second.fact_key


def test_chargeback_and_its_reversal_pair_up() -> None:
    chargeback = only_event(payloads.payment_chargeback("pay_1", chargeback_id="cb_1", amount=1990))
    reversal = only_event(payloads.payment_chargeback_reversed("pay_1", chargeback_id="cb_1", amount=1990))
    assert (chargeback.fact, chargeback.fact_key) == (FactKind.CHARGEBACK, "chargeback:cb_1")
    assert (reversal.fact, reversal.fact_key) == (FactKind.CHARGEBACK_REVERSED, "chargeback_reversed:cb_1")
    assert chargeback.payment_ref == reversal.payment_ref == "pay_1"
    assert chargeback.amount == 1990


def test_chargeback_reversed_needs_no_amount() -> None:
    event = only_event(payloads.event("payment.chargeback_reversed", payment_id="p", chargeback_id="cb"))
    assert event.amount is None


def test_every_type_is_covered() -> None:
    assert set(EVENT_TYPES) == {
        "payment.pending",
        "payment.confirmed",
        "payment.failed",
        "payment.refunded",
        "payment.chargeback",
        "payment.chargeback_reversed",
    }


@pytest.mark.parametrize("event_type", ["subscription.trial_will_end", "member.updated", "invoice.paid", "x"])
def test_unknown_types_are_acknowledged_without_events(event_type: str) -> None:
    delivery = parse({"type": event_type, "timestamp": "not even a date", "data": "anything"})
    assert delivery == ParsedDelivery(event_key="msg_1", event_type=event_type, events=())


def test_currency_is_upper_cased() -> None:
    assert only_event(payloads.payment_pending("p", amount=1, currency="eur")).currency == "EUR"


def test_free_payment_has_amount_zero() -> None:
    assert only_event(payloads.payment_confirmed("p", amount=0, email="a@b.de")).amount == 0


def test_timestamp_with_offset_is_converted_to_utc() -> None:
    payload = payloads.event("payment.failed", timestamp="2026-03-01T13:00:00+01:00", payment_id="p")
    assert only_event(payload).occurred_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_timestamp_is_optional() -> None:
    payload = payloads.payment_failed("p")
    del payload["timestamp"]
    assert only_event(payload).occurred_at is None


def test_unknown_fields_are_ignored() -> None:
    payload = payloads.payment_confirmed("p", amount=1, email="a@b.de")
    payload["data"]["my_own_field"] = {"nested": [1, 2]}
    payload["version"] = 2
    assert only_event(payload).payment_ref == "p"


def test_blank_optional_strings_count_as_absent() -> None:
    payload = payloads.payment_confirmed("p", amount=1, email="a@b.de", order_no="  ")
    payload["data"]["customer"] = {"email": " a@b.de ", "name": "", "locale": None}
    event = only_event(payload)
    assert event.order_no is None
    assert event.customer == Customer(email="a@b.de")


def test_header_lookup_is_case_insensitive() -> None:
    body = payloads.encode(payloads.payment_failed("p"))
    delivery = gateway.parse(body, {"Webhook-Id": "msg_9"})
    assert delivery.event_key == "msg_9"


# Malformed deliveries


def confirmed() -> dict[str, Any]:
    return payloads.payment_confirmed(
        "pay_1", amount=1990, email="anna@example.com", order_no="A-1", product_id="gold", locale="de"
    )


def with_data(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(payload)
    for key, value in changes.items():
        if value is DELETE:
            del payload["data"][key]
        else:
            payload["data"][key] = value
    return payload


DELETE = object()

MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("no type", {"data": {}}, 'type is required, e.g. "payment.confirmed"'),
    ("type not a string", {"type": 3}, "type must be a non-empty string"),
    ("blank type", {"type": " "}, "type must be a non-empty string"),
    ("type too long", {"type": "x" * 101}, "type is too long (101 characters, at most 100)"),
    ("no data", {"type": "payment.confirmed"}, "data is required for payment.confirmed"),
    ("data a list", {"type": "payment.confirmed", "data": []}, "data must be a JSON object"),
    (
        "no payment id",
        with_data(confirmed(), payment_id=DELETE),
        "data.payment_id is required for payment.confirmed",
    ),
    (
        "numeric payment id",
        with_data(confirmed(), payment_id=17),
        "data.payment_id must be a non-empty string",
    ),
    ("empty payment id", with_data(confirmed(), payment_id=""), "data.payment_id must be a non-empty string"),
    ("long payment id", with_data(confirmed(), payment_id="p" * 201), "data.payment_id is too long"),
    (
        "NUL in payment id",
        with_data(confirmed(), payment_id="a\x00b"),
        "data.payment_id must not contain NUL",
    ),
    ("surrogate", with_data(confirmed(), payment_id="a\ud800"), "data.payment_id is not valid Unicode"),
    ("no amount", with_data(confirmed(), amount=DELETE), "data.amount is required for payment.confirmed"),
    (
        "no currency",
        with_data(confirmed(), currency=DELETE),
        "data.currency is required for payment.confirmed",
    ),
    (
        "decimal amount",
        with_data(confirmed(), amount=19.9),
        "data.amount must be a non-negative integer (minor units",
    ),
    ("float amount", with_data(confirmed(), amount=1990.0), "data.amount must be a non-negative integer"),
    ("string amount", with_data(confirmed(), amount="1990"), "data.amount must be a non-negative integer"),
    ("bool amount", with_data(confirmed(), amount=True), "data.amount must be a non-negative integer"),
    ("negative amount", with_data(confirmed(), amount=-1), "data.amount must be a non-negative integer"),
    ("huge amount", with_data(confirmed(), amount=2**31), "data.amount is too large"),
    ("currency symbol", with_data(confirmed(), currency="€"), "data.currency must be an ISO 4217 code"),
    ("currency long", with_data(confirmed(), currency="EURO"), "data.currency must be an ISO 4217 code"),
    ("currency number", with_data(confirmed(), currency=978), "data.currency must be an ISO 4217 code"),
    (
        "failed amount without currency",
        payloads.event("payment.failed", payment_id="p", amount=5),
        "data.currency is required when data.amount is given",
    ),
    (
        "failed currency without amount",
        payloads.event("payment.failed", payment_id="p", currency="EUR"),
        "data.amount is required when data.currency is given",
    ),
    (
        "refund without id",
        payloads.event("payment.refunded", payment_id="p", amount=1, currency="EUR"),
        "data.refund_id is required for payment.refunded",
    ),
    (
        "refund without amount",
        payloads.event("payment.refunded", payment_id="p", refund_id="r", currency="EUR"),
        "data.amount is required for payment.refunded",
    ),
    (
        "chargeback without id",
        payloads.event("payment.chargeback", payment_id="p", amount=1, currency="EUR"),
        "data.chargeback_id is required for payment.chargeback",
    ),
    (
        "reversal without id",
        payloads.event("payment.chargeback_reversed", payment_id="p"),
        "data.chargeback_id is required for payment.chargeback_reversed",
    ),
    ("order_no number", with_data(confirmed(), order_no=5), "data.order_no must be a string"),
    ("order_no long", with_data(confirmed(), order_no="o" * 65), "data.order_no is too long"),
    ("product_id list", with_data(confirmed(), product_id=["a"]), "data.product_id must be a string"),
    ("customer string", with_data(confirmed(), customer="anna"), "data.customer must be a JSON object"),
    ("email number", with_data(confirmed(), customer={"email": 1}), "data.customer.email must be a string"),
    (
        "email no at",
        with_data(confirmed(), customer={"email": "anna"}),
        "data.customer.email 'anna' is not an email",
    ),
    (
        "locale",
        with_data(confirmed(), customer={"locale": "deutsch!"}),
        "data.customer.locale must be a language tag",
    ),
    ("timestamp number", {**confirmed(), "timestamp": 1700000000}, "timestamp must be an ISO 8601 string"),
    (
        "timestamp garbage",
        {**confirmed(), "timestamp": "yesterday"},
        "timestamp 'yesterday' is not an ISO 8601",
    ),
    (
        "timestamp naive",
        {**confirmed(), "timestamp": "2026-01-01T00:00:00"},
        "timestamp must include a time zone",
    ),
    ("timestamp out of range", {**confirmed(), "timestamp": "0001-01-01T00:00:00+01:00"}, "out of range"),
]


@pytest.mark.parametrize(
    ("payload", "message"), [(p, m) for _, p, m in MALFORMED], ids=[name for name, _, _ in MALFORMED]
)
def test_malformed_payload_says_what_is_wrong(payload: dict[str, Any], message: str) -> None:
    body = json.dumps(payload).encode()
    with pytest.raises(MalformedPayload) as caught:
        gateway.parse(body, {"webhook-id": "msg_1"})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b"null", "body must be a JSON object"),
        (b"[" * 100_000, "nested too deeply"),
        (
            b'{"type": "payment.confirmed", "data": {"amount": ' + b"9" * 5000 + b"}}",
            "body is not usable JSON",
        ),
    ],
)
def test_unusable_body(body: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        gateway.parse(body, {"webhook-id": "msg_1"})


def test_missing_webhook_id_header() -> None:
    with pytest.raises(MalformedPayload, match="missing webhook-id header"):
        gateway.parse(payloads.encode(confirmed()), {})


def test_overlong_webhook_id_header() -> None:
    with pytest.raises(MalformedPayload, match="webhook-id header is too long"):
        gateway.parse(payloads.encode(confirmed()), {"webhook-id": "m" * 256})


# Nothing but GatewayError, whatever arrives

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(["EUR", "eur", "pay_1", "a@b.de", "2026-01-01T00:00:00Z", "de", "", " "]),
    st.integers(min_value=-5, max_value=2**32),
)
data_strategy = st.dictionaries(
    st.sampled_from(
        [
            "payment_id",
            "amount",
            "currency",
            "order_no",
            "product_id",
            "customer",
            "refund_id",
            "chargeback_id",
        ]
    ),
    field_values,
)
customer_strategy = st.dictionaries(st.sampled_from(["email", "name", "locale"]), field_values)
documents = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(sorted(EVENT_TYPES)), json_values)},
    optional={
        "timestamp": st.one_of(field_values, st.datetimes().map(lambda d: d.isoformat())),
        "data": st.one_of(
            data_strategy,
            st.tuples(data_strategy, customer_strategy).map(lambda pair: {**pair[0], "customer": pair[1]}),
            json_values,
        ),
    },
)

VALID_DOCUMENTS = [
    payloads.payment_pending("p", amount=1, email="a@b.de"),
    payloads.payment_confirmed("p", amount=1990, email="a@b.de", order_no="A-1", product_id="x", name="A"),
    payloads.payment_failed("p"),
    payloads.payment_refunded("p", refund_id="r", amount=5),
    payloads.payment_chargeback("p", chargeback_id="c", amount=5),
    payloads.payment_chargeback_reversed("p", chargeback_id="c", amount=5),
]


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with up to three fields replaced or removed."""
    document = copy.deepcopy(draw(st.sampled_from(VALID_DOCUMENTS)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        data = document.get("data")
        target = draw(st.sampled_from(["top", "data", "customer"]))
        if target == "top":
            container, keys = document, ["type", "timestamp", "data"]
        elif target == "customer" and isinstance(data, dict) and isinstance(data.get("customer"), dict):
            container, keys = data["customer"], ["email", "name", "locale"]
        elif isinstance(data, dict):
            container, keys = data, list(EVENT_FIELDS)
        else:
            continue
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            container.pop(key, None)
        else:
            container[key] = draw(field_values)
    return document


EVENT_FIELDS = (
    "payment_id",
    "amount",
    "currency",
    "order_no",
    "product_id",
    "customer",
    "refund_id",
    "chargeback_id",
)


def assert_only_gateway_errors(body: bytes, headers: dict[str, str]) -> None:
    try:
        delivery = gateway.parse(body, headers)
    except GatewayError as error:
        assert str(error)
    else:
        assert isinstance(delivery, ParsedDelivery)
        for event in delivery.events:
            assert isinstance(event, SubscriptionEvent) or event.fact in FactKind
    try:
        gateway.verify(body, headers, {"signing_secret": SECRET}, NOW)
    except GatewayError as error:
        assert str(error)


@settings(max_examples=300)
@given(body=st.binary(max_size=300), msg_id=st.one_of(st.none(), st.text(max_size=20)))
def test_random_bytes_raise_only_gateway_errors(body: bytes, msg_id: str | None) -> None:
    assert_only_gateway_errors(body, {} if msg_id is None else {"webhook-id": msg_id})


@settings(max_examples=500)
@given(document=st.one_of(documents, mutated_documents()))
def test_random_documents_raise_only_gateway_errors(document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    assert_only_gateway_errors(body, {"webhook-id": "msg_1"})


@settings(max_examples=200)
@given(document=st.one_of(documents, mutated_documents()))
def test_random_signed_documents_verify_then_parse(document: dict[str, Any]) -> None:
    body, headers = payloads.signed(document, SECRET, "msg_1", TS)
    gateway.verify(body, headers, {"signing_secret": SECRET}, NOW)
    try:
        gateway.parse(body, headers)
    except MalformedPayload as error:
        assert str(error)
