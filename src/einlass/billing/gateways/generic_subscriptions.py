"""The generic gateway's subscription events: ``subscription.*`` into subscription facts.

A subscription event looks like a payment event (see generic.py) with
``data.subscription_id`` (required: the sender's id of the subscription) in place
of the payment id::

    {"type": "subscription.renewed", "timestamp": "2027-02-10T10:00:00Z",
     "data": {"subscription_id": "sub_1", "payment_id": "pay_2", "amount": 990, "currency": "EUR"}}

``timestamp`` is when the fact happened; the subscription's life is folded from
its facts in that order, whatever order they arrive in. The per-type fields, the
keys that make a fact count once and the effects are in docs/gateways/generic.md
(the authoritative schema), in short:

* ``subscription.created``: ``product_id`` (or ``order_no``) finds the plan;
  ``trial_end``; ``amount``/``currency``/``interval`` for dynamic plans;
  ``payment_id`` of the first payment, with ``period_end`` of the period it pays.
* ``subscription.renewed``: ``payment_id`` (required), ``period_end``.
* ``subscription.renewal_failed``, ``subscription.paused`` (``resume_at``),
  ``subscription.resumed`` (``period_end``: the next billing date),
  ``subscription.updated`` (``amount``/``currency``, ``interval``, ``period_end``,
  ``cancel_at_period_end``), ``subscription.cancelled`` (``at_period_end``,
  ``cancel_at``), ``subscription.plan_changed`` (``product_id``, ``at_period_end``).

A payment named with its ``amount`` is confirmed by the event itself (a
PaymentEvent before the subscription facts); named without, it is confirmed by
its own ``payment.confirmed``. Either way a period counts only while its payment
is confirmed, so a later ``payment.refunded`` for it takes the period back.

Facts with a natural identity count once per subscription (``created``, a period
per payment); the others count once per delivery (``webhook-id``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from einlass.billing.gateways.base import (
    Customer,
    FactKind,
    MalformedPayload,
    PaymentEvent,
    SubscriptionEvent,
)
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.gateways.generic import (
    MAX_ID,
    MAX_ORDER_NO,
    check_text,
    optional_text,
    read_customer,
    read_money,
    read_time,
    required_id,
    shorten,
)
from einlass.billing.subscriptions.plans import check_duration
from einlass.errors import InvalidInput

Events = tuple[PaymentEvent | SubscriptionEvent, ...]

# Column sizes: subscription_facts.fact_key and subscriptions.interval.
MAX_FACT_KEY = 255
MAX_INTERVAL = 32
# Dates a subscription can sensibly have; the fold adds intervals to them, and
# a year-9999 date would overflow there rather than be refused here.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Delivery:
    """One subscription event's document and what every type reads from it."""

    event_type: str
    delivery_id: str
    data: dict[str, Any]
    subscription_ref: str
    occurred_at: datetime | None
    order_no: str | None
    product_ref: str | None
    customer: Customer | None
    amount: int | None
    currency: str | None
    interval: str | None

    def once_per_delivery(self, kind: Kind) -> str:
        """A fact key for facts without an identity of their own: the delivery's."""
        key = f"{kind.value}:{self.delivery_id}"
        if len(key) <= MAX_FACT_KEY:
            return key
        return f"{kind.value}:sha256:{hashlib.sha256(self.delivery_id.encode()).hexdigest()}"

    def fact(self, kind: Kind, key: str, **fields: Any) -> SubscriptionEvent:
        return SubscriptionEvent(
            kind=kind,
            subscription_ref=self.subscription_ref,
            fact_key=key,
            occurred_at=self.occurred_at,
            order_no=self.order_no,
            product_ref=self.product_ref,
            customer=self.customer,
            **fields,
        )

    def price(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency, "interval": self.interval}

    def optional_id(self, field: str) -> str | None:
        return None if self.data.get(field) is None else required_id(self.data, field, self.event_type)

    def time(self, field: str) -> datetime | None:
        return _in_range(read_time(self.data.get(field), f"data.{field}"), f"data.{field}")

    def flag(self, field: str, default: bool) -> bool:
        value = self.data.get(field, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise MalformedPayload(f"data.{field} must be true or false")
        return value

    def paid_period(self, payment_ref: str, period_end: datetime | None, *, first: bool) -> Events:
        """The period a payment pays, preceded by that payment when the event carries its amount."""
        period = self.fact(
            Kind.PERIOD,
            f"period:{payment_ref}",
            payment_ref=payment_ref,
            period_end=period_end,
            **self.price(),
        )
        if self.amount is None:
            # The payment is told on its own (payment.confirmed with this payment_id).
            return (period,)
        payment = PaymentEvent(
            fact=FactKind.CONFIRMED,
            payment_ref=payment_ref,
            fact_key=FactKind.CONFIRMED.value,
            amount=self.amount,
            currency=self.currency,
            # The order is paid by the first payment; a renewal must not take it over.
            order_no=self.order_no if first else None,
            product_ref=self.product_ref,
            customer=self.customer,
            occurred_at=self.occurred_at,
            subscription_ref=self.subscription_ref,
        )
        return (payment, period)


def _created(d: _Delivery) -> Events:
    payment_ref = d.optional_id("payment_id")
    period_end = d.time("period_end")
    if payment_ref is None and period_end is not None:
        raise MalformedPayload(
            "data.period_end on subscription.created needs data.payment_id (the payment that pays "
            "that period); the end of a free trial is data.trial_end"
        )
    if payment_ref is None and d.product_ref is None and d.order_no is None:
        raise MalformedPayload(
            "data.product_id is required for subscription.created (or data.order_no of an order "
            "einlass created): it finds the plan"
        )
    created = d.fact(
        Kind.CREATED, Kind.CREATED.value, payment_ref=payment_ref, trial_end=d.time("trial_end"), **d.price()
    )
    if payment_ref is None:
        return (created,)
    paid = d.paid_period(payment_ref, period_end, first=True)
    # The first payment comes before every subscription fact that refers to it.
    payments = tuple(event for event in paid if isinstance(event, PaymentEvent))
    periods = tuple(event for event in paid if isinstance(event, SubscriptionEvent))
    return (*payments, created, *periods)


def _renewed(d: _Delivery) -> Events:
    payment_ref = required_id(d.data, "payment_id", d.event_type)
    return d.paid_period(payment_ref, d.time("period_end"), first=False)


def _renewal_failed(d: _Delivery) -> Events:
    payment_ref = d.optional_id("payment_id")
    # One failed attempt counts once, whatever delivery tells it.
    key = f"{Kind.RENEWAL_FAILED.value}:{payment_ref}" if payment_ref else None
    return (d.fact(Kind.RENEWAL_FAILED, key or d.once_per_delivery(Kind.RENEWAL_FAILED)),)


def _paused(d: _Delivery) -> Events:
    return (d.fact(Kind.PAUSED, d.once_per_delivery(Kind.PAUSED), resume_at=d.time("resume_at")),)


def _resumed(d: _Delivery) -> Events:
    return (d.fact(Kind.RESUMED, d.once_per_delivery(Kind.RESUMED), period_end=d.time("period_end")),)


def _updated(d: _Delivery) -> Events:
    events: list[SubscriptionEvent] = []
    period_end = d.time("period_end")
    if d.amount is not None or d.interval is not None or period_end is not None:
        events.append(
            d.fact(Kind.UPDATED, d.once_per_delivery(Kind.UPDATED), period_end=period_end, **d.price())
        )
    if d.data.get("cancel_at_period_end") is not None:
        if d.flag("cancel_at_period_end", False):
            events.append(d.fact(Kind.CANCELLED, d.once_per_delivery(Kind.CANCELLED)))
        else:
            events.append(d.fact(Kind.CANCEL_WITHDRAWN, d.once_per_delivery(Kind.CANCEL_WITHDRAWN)))
    return tuple(events)


def _cancelled(d: _Delivery) -> Events:
    cancel_at = d.time("cancel_at")
    at_period_end = d.flag("at_period_end", True)
    if cancel_at is not None and not at_period_end:
        raise MalformedPayload(
            "data.at_period_end false (cancelled now) contradicts data.cancel_at; give one of them"
        )
    key = d.once_per_delivery(Kind.CANCELLED)
    return (d.fact(Kind.CANCELLED, key, cancel_at=cancel_at, at_period_end=at_period_end),)


def _plan_changed(d: _Delivery) -> Events:
    if d.product_ref is None:
        raise MalformedPayload("data.product_id is required for subscription.plan_changed: the new plan")
    # The change has happened unless the sender says it waits for the period end.
    at_period_end = d.flag("at_period_end", False)
    key = d.once_per_delivery(Kind.PLAN_CHANGED)
    return (d.fact(Kind.PLAN_CHANGED, key, at_period_end=at_period_end),)


PARSERS: Mapping[str, Callable[[_Delivery], Events]] = {
    "subscription.created": _created,
    "subscription.renewed": _renewed,
    "subscription.renewal_failed": _renewal_failed,
    "subscription.paused": _paused,
    "subscription.resumed": _resumed,
    "subscription.updated": _updated,
    "subscription.cancelled": _cancelled,
    "subscription.plan_changed": _plan_changed,
}
SUBSCRIPTION_EVENT_TYPES = tuple(PARSERS)


def subscription_events(event_type: str, document: dict[str, Any], delivery_id: str) -> Events:
    """The facts of one delivery; none for a type einlass does not act on."""
    parser = PARSERS.get(event_type)
    if parser is None:
        return ()
    occurred_at = _in_range(read_time(document.get("timestamp")), "timestamp")
    data = document.get("data")
    if data is None:
        raise MalformedPayload(f"data is required for {event_type}")
    if not isinstance(data, dict):
        raise MalformedPayload("data must be a JSON object")
    amount, currency = read_money(data, event_type, required=False)
    delivery = _Delivery(
        event_type=event_type,
        delivery_id=delivery_id,
        data=data,
        subscription_ref=required_id(data, "subscription_id", event_type),
        occurred_at=occurred_at,
        order_no=optional_text(data, "order_no", MAX_ORDER_NO),
        product_ref=optional_text(data, "product_id", MAX_ID),
        customer=read_customer(data.get("customer")),
        amount=amount,
        currency=currency,
        interval=_interval(data.get("interval")),
    )
    return parser(delivery)


def _interval(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MalformedPayload('data.interval must be an ISO 8601 duration such as "P1M"')
    check_text("data.interval", value, MAX_INTERVAL)
    try:
        check_duration(value, "data.interval")
    except InvalidInput as error:
        raise MalformedPayload(str(error)) from None
    return value


def _in_range(moment: datetime | None, label: str) -> datetime | None:
    if moment is not None and not EARLIEST <= moment < LATEST:
        shown = shorten(moment.isoformat())
        raise MalformedPayload(f"{label} {shown} is out of range (years 1970 to 2999)")
    return moment
