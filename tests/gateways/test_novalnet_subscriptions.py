"""Novalnet subscriptions: notifications to subscription facts, actions to the subscription API."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einlass.billing.gateways.base import (
    FactKind,
    GatewayError,
    InvalidSignature,
    MalformedPayload,
    ParsedDelivery,
    PaymentEvent,
    SubscriptionEvent,
)
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.gateways.novalnet import NovalnetGateway
from einlass.billing.gateways.novalnet_api import NovalnetApi
from einlass.billing.subscriptions.actions import ActionRefused, ActionRequest, GatewayUnavailable
from einlass.config import Settings
from payloads import novalnet as nn
from standin import Reply, Request, serve

NOW = datetime(2027, 1, 10, 10, 0, tzinfo=UTC)
KEY = nn.ACCESS_KEY
SECRETS = {"payment_access_key": KEY}
SUB = "14632500000000001"  # the first payment's TID: the subscription's id
RENEWED = "14632500000000002"
ACTION = "sac_01JXYZ0000000000000000000A"

gateway = NovalnetGateway()


def deliver(payload: dict[str, Any]) -> ParsedDelivery:
    body, headers = nn.signed(payload, KEY)
    gateway.verify(body, headers, SECRETS, NOW)
    return gateway.parse(body, headers)


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def start(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "amount": 990,
        "email": "anna@example.com",
        "tariff": "tariff-sub-m",
        "next_cycle_date": "2027-02-10",
        "order_no": "A-7",
    }
    return nn.subscription_payment(SUB, **(values | fields))


# -- the first payment ------------------------------------------------------------------


def test_first_payment_starts_the_subscription_and_pays_to_the_next_charging_day() -> None:
    paid, created, period = deliver(start()).events
    assert isinstance(paid, PaymentEvent) and paid.fact is FactKind.CONFIRMED
    assert (paid.payment_ref, paid.subscription_ref) == (SUB, SUB)
    assert created == SubscriptionEvent(
        Kind.CREATED,
        SUB,
        f"created:{SUB}",
        amount=990,
        currency="EUR",
        interval="P1M",
        order_no="A-7",
        product_ref="tariff-sub-m",
        customer=paid.customer,
    )
    assert created.customer is not None and created.customer.email == "anna@example.com"
    assert period == SubscriptionEvent(
        Kind.PERIOD, SUB, f"period:{SUB}", payment_ref=SUB, period_end=day("2027-02-10")
    )


def test_invoice_subscription_waits_for_its_money() -> None:
    paid, created, period = deliver(start(status="PENDING")).events
    assert isinstance(paid, PaymentEvent) and paid.fact is FactKind.PENDING
    assert created.kind is Kind.CREATED and period.kind is Kind.PERIOD


@pytest.mark.parametrize("change", [{"result_status": "FAILURE"}, {"status": "DEACTIVATED"}])
def test_failed_first_payment_starts_nothing(change: dict[str, Any]) -> None:
    (only,) = deliver(start(**change)).events
    assert isinstance(only, PaymentEvent) and only.fact in (FactKind.FAILED, FactKind.CANCELLED)


def test_free_trial_runs_to_the_first_charging_day_without_a_paid_period() -> None:
    events = deliver(
        start(amount=0, trial_interval="14d", trial_amount=0, next_cycle_date="2027-01-24")
    ).events
    assert [type(event).__name__ for event in events] == ["PaymentEvent", "SubscriptionEvent"]
    created = events[1]
    assert isinstance(created, SubscriptionEvent) and created.trial_end == day("2027-01-24")


def test_a_cheaper_first_period_is_no_trial() -> None:
    events = deliver(start(amount=100, trial_interval="1m", trial_amount=100)).events
    assert [e.kind for e in events if isinstance(e, SubscriptionEvent)] == [Kind.CREATED, Kind.PERIOD]


@pytest.mark.parametrize(
    ("interval", "iso"), [("1m", "P1M"), ("14d", "P14D"), ("1Y", "P1Y"), ("2w", "P2W"), ("P3M", "P3M")]
)
def test_dynamic_interval_becomes_iso_8601(interval: str, iso: str) -> None:
    created = deliver(start(interval=interval)).events[1]
    assert isinstance(created, SubscriptionEvent) and created.interval == iso


# -- renewals ---------------------------------------------------------------------------


def test_renewal_pays_the_next_period() -> None:
    payment, period = deliver(
        nn.renewal(RENEWED, parent_tid=SUB, amount=990, next_cycle_date="2027-03-10")
    ).events
    assert payment == PaymentEvent(
        FactKind.CONFIRMED,
        RENEWED,
        f"payment:{RENEWED}",
        amount=990,
        currency="EUR",
        subscription_ref=SUB,
    )
    assert period == SubscriptionEvent(
        Kind.PERIOD, SUB, f"period:{RENEWED}", payment_ref=RENEWED, period_end=day("2027-03-10")
    )


def test_failed_renewal_is_a_fact_although_the_result_is_failure() -> None:
    payment, failed = deliver(nn.renewal(RENEWED, parent_tid=SUB, amount=990, result_status="FAILURE")).events
    assert isinstance(payment, PaymentEvent) and payment.fact is FactKind.FAILED
    assert failed == SubscriptionEvent(
        Kind.RENEWAL_FAILED, SUB, f"renewal_failed:{RENEWED}", payment_ref=RENEWED
    )


def test_voided_renewal_is_a_failed_renewal() -> None:
    payment, failed = deliver(nn.renewal(RENEWED, parent_tid=SUB, amount=990, status="DEACTIVATED")).events
    assert isinstance(payment, PaymentEvent) and payment.fact is FactKind.CANCELLED
    assert isinstance(failed, SubscriptionEvent) and failed.kind is Kind.RENEWAL_FAILED


def test_renewal_without_charging_day_leaves_the_period_to_the_plan() -> None:
    payload = nn.renewal(RENEWED, parent_tid=SUB, amount=990)
    del payload["subscription"]["next_cycle_date"]
    period = deliver(payload).events[1]
    assert isinstance(period, SubscriptionEvent) and period.period_end is None


def test_renewal_names_its_subscription_by_parent_tid() -> None:
    payload = nn.renewal(RENEWED, parent_tid=SUB, amount=990)
    del payload["event"]["parent_tid"]
    with pytest.raises(MalformedPayload, match=r"event.parent_tid is required for RENEWAL"):
        deliver(payload)


# -- suspend, reactivate, update, cancel ------------------------------------------------------


def only_fact(payload: dict[str, Any]) -> SubscriptionEvent:
    (event,) = deliver(payload).events
    assert isinstance(event, SubscriptionEvent) and event.subscription_ref == SUB
    return event


def test_suspend_reactivate_cancel() -> None:
    assert only_fact(nn.suspend(SUB)).kind is Kind.PAUSED
    resumed = only_fact(nn.reactivate(SUB, next_cycle_date="2027-08-09"))
    assert (resumed.kind, resumed.period_end) == (Kind.RESUMED, day("2027-08-09"))
    cancelled = only_fact(nn.subscription_cancel(SUB, reason="Product is costly"))
    assert (cancelled.kind, cancelled.at_period_end) == (Kind.CANCELLED, True)


@pytest.mark.parametrize(
    ("update_type", "amount", "period_end"),
    [
        (None, 1490, day("2027-03-01")),
        ("AMOUNT", 1490, None),
        ("NEXT_CYCLE_DATE", None, day("2027-03-01")),
        ("AMOUNT_NEXT_CYCLE_DATE", 1490, day("2027-03-01")),
    ],
)
def test_update_takes_what_it_names(
    update_type: str | None, amount: int | None, period_end: datetime | None
) -> None:
    payload = nn.subscription_update(SUB, amount=1490, next_cycle_date="2027-03-01", update_type=update_type)
    updated = only_fact(payload)
    assert (updated.kind, updated.amount, updated.period_end) == (Kind.UPDATED, amount, period_end)


def test_payment_method_update_changes_nothing() -> None:
    payload = nn.subscription_update(SUB, next_cycle_date="2027-03-01", update_type="PAYMENT_DATA")
    assert deliver(payload).events == ()


@pytest.mark.parametrize("build", [nn.suspend, nn.subscription_cancel])
def test_unsuccessful_subscription_notifications_change_nothing(build: Any) -> None:
    payload = build(SUB)
    payload["result"] = {"status": "FAILURE", "status_text": "Subscription not found"}
    assert deliver(payload).events == ()


def test_keys_are_stable_across_redeliveries_and_distinct_between_notifications() -> None:
    first = deliver(nn.suspend(SUB, next_cycle_date="2027-07-10"))
    again = deliver(nn.suspend(SUB, next_cycle_date="2027-07-10"))
    later = deliver(nn.suspend(SUB, next_cycle_date="2028-03-10"))
    assert first.event_key == again.event_key and first.events == again.events
    assert later.event_key != first.event_key
    assert later.events[0].fact_key != first.events[0].fact_key


def test_a_change_einlass_asked_for_takes_the_key_of_its_action() -> None:
    assert only_fact(nn.suspend(SUB, action_id=ACTION)).fact_key == f"action:{ACTION}"
    payload = nn.suspend(SUB, action_id=ACTION)
    payload["custom"]["inputval1"] = "robert'); DROP TABLE"
    with pytest.raises(MalformedPayload, match=r"custom.inputval1 must be the id of an einlass action"):
        deliver(payload)


# -- refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "next_cycle_date",
            "10.02.2027",
            r'subscription.next_cycle_date must be a date such as "2027-02-10"',
        ),
        ("next_cycle_date", "2027-02-30", r"subscription.next_cycle_date is not a calendar date"),
        ("next_cycle_date", "9999-12-31", r"subscription.next_cycle_date is out of range"),
        ("next_cycle_date", ["2027-02-10"], r"subscription.next_cycle_date must be a string, not a list"),
        ("interval", "monthly", r'subscription.interval must be a Novalnet interval such as "1m"'),
        ("amount", -1, r"subscription.amount must be a non-negative integer"),
    ],
)
def test_malformed_subscription_object(field: str, value: object, message: str) -> None:
    payload = start()
    payload["subscription"][field] = value
    with pytest.raises(MalformedPayload, match=message):
        deliver(payload)


def test_unsigned_subscription_notification_is_refused() -> None:
    payload = nn.suspend(SUB)
    body, headers = nn.signed(payload, "not-the-merchants-key")
    with pytest.raises(InvalidSignature, match=r"event.checksum does not match"):
        gateway.verify(body, headers, SECRETS, NOW)
    payload["event"]["checksum"] = ""
    with pytest.raises(InvalidSignature, match=r"event.checksum is missing"):
        gateway.verify(json.dumps(payload).encode(), {}, SECRETS, NOW)


values = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.lists(st.integers(), max_size=2)
)
TEMPLATES = [
    start(),
    nn.renewal(RENEWED, parent_tid=SUB, amount=990),
    nn.suspend(SUB, action_id=ACTION),
    nn.subscription_update(SUB, amount=1490, next_cycle_date="2027-03-01"),
]
FIELDS = [
    "tid",
    "parent_tid",
    "next_cycle_date",
    "interval",
    "amount",
    "trial_interval",
    "update_type",
    "inputval1",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(TEMPLATES),
    st.lists(
        st.tuples(st.sampled_from(["event", "subscription", "custom"]), st.sampled_from(FIELDS), values)
    ),
)
def test_mutated_subscription_notifications_raise_only_gateway_errors(
    template: dict[str, Any], mutations: list[tuple[str, str, object]]
) -> None:
    payload = json.loads(json.dumps(template))
    for section, field, value in mutations:
        payload.setdefault(section, {})[field] = value
    with contextlib.suppress(GatewayError):
        deliver(payload)


# -- the subscription API -------------------------------------------------------------------

KEY_HEADER = base64.b64encode(KEY.encode()).decode()


def request(kind: str, **fields: Any) -> ActionRequest:
    return ActionRequest(action_id=ACTION, kind=kind, subscription_ref=SUB, merchant_slug="shop", **fields)


def novalnet(request_seen: Request) -> Reply:
    """Novalnet's subscription API as documented: the access key decides, SUCCESS or FAILURE."""
    if request_seen.headers.get("x-nn-access-key") != KEY_HEADER:
        return Reply(200, nn.api_answer("Authentication failed", status="FAILURE"))
    return Reply(200, nn.api_answer(subscription={"tid": int(SUB), "next_cycle_date": "2027-08-09"}))


async def call(
    respond: Any, action: ActionRequest | None = None, secrets: dict[str, str] = SECRETS, path: str = ""
) -> tuple[Any, list[Request]]:
    """Send one action to a stand-in answering with ``respond``: what came back, what was sent."""
    with serve(respond) as standin:
        settings = Settings(novalnet_api_url=standin.url + path, gateway_api_timeout_s=5.0)
        try:
            outcome: Any = await NovalnetApi().perform(action or request("pause"), secrets, settings)
        except (ActionRefused, GatewayUnavailable) as error:
            outcome = error
    return outcome, standin.requests


@pytest.mark.parametrize(
    ("action", "path", "subscription"),
    [
        (request("pause"), "/subscription/suspend", {"tid": int(SUB)}),
        (request("resume"), "/subscription/reactivate", {"tid": int(SUB)}),
        (
            request("cancel", reason="too dear"),
            "/subscription/cancel",
            {"tid": int(SUB), "reason": "too dear"},
        ),
        (request("cancel"), "/subscription/cancel", {"tid": int(SUB), "reason": "Cancelled in einlass"}),
        (
            request("change_plan", product_ref="10004", amount=9900, interval="P1Y"),
            "/subscription/update",
            {"tid": int(SUB), "tariff": 10004, "amount": 9900},
        ),
    ],
    ids=["pause", "resume", "cancel-reason", "cancel", "change_plan"],
)
async def test_action_goes_to_its_endpoint(
    action: ActionRequest, path: str, subscription: dict[str, Any]
) -> None:
    result, (sent,) = await call(novalnet, action, path="/v2/")
    assert (sent.method, sent.path) == ("POST", f"/v2{path}")
    assert sent.headers["x-nn-access-key"] == KEY_HEADER
    assert sent.json() == {
        "subscription": subscription,
        "custom": {"lang": "EN", "input1": "einlass_action", "inputval1": ACTION},
    }
    assert result.response["result"]["status"] == "SUCCESS"


async def test_refusal_carries_novalnets_status_text() -> None:
    answer = nn.api_answer("Subscription is already suspended", status="FAILURE")
    refused, _ = await call(lambda _: Reply(200, answer))
    assert isinstance(refused, ActionRefused)
    assert (str(refused), refused.response) == ("Subscription is already suspended", answer)


async def test_wrong_access_key_is_refused_without_showing_the_key() -> None:
    refused, (sent,) = await call(novalnet, secrets={"payment_access_key": "a-key-of-another-project"})
    assert isinstance(refused, ActionRefused) and str(refused) == "Authentication failed"
    assert sent.headers["x-nn-access-key"] == base64.b64encode(b"a-key-of-another-project").decode()
    assert "another-project" not in str(refused)


async def test_client_error_without_json_is_a_refusal() -> None:
    refused, _ = await call(lambda _: Reply(403, b"Forbidden"))
    assert isinstance(refused, ActionRefused)
    assert str(refused) == "Novalnet refused subscription/suspend (HTTP 403)"


async def test_missing_key_is_refused_before_calling() -> None:
    refused, sent = await call(novalnet, secrets={})
    assert isinstance(refused, ActionRefused) and "no payment_access_key is configured" in str(refused)
    assert sent == []


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, b"oops"),
        Reply(503, nn.api_answer("Maintenance", status="FAILURE")),
        Reply(429),
        Reply(200, b"<html>"),
    ],
    ids=["500", "503", "429", "not-json"],
)
async def test_no_usable_answer_is_retried(reply: Reply) -> None:
    unavailable, _ = await call(lambda _: reply, request("cancel"))
    assert isinstance(unavailable, GatewayUnavailable) and "Novalnet" in str(unavailable)


async def test_unreachable_api_is_retried_and_the_message_has_no_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(novalnet_api_url=f"http://127.0.0.1:{port}/v2", gateway_api_timeout_s=5.0)
    with pytest.raises(GatewayUnavailable, match="Novalnet could not be reached") as unavailable:
        await NovalnetApi().perform(request("pause"), SECRETS, settings)
    assert KEY not in str(unavailable.value) and KEY_HEADER not in str(unavailable.value)
