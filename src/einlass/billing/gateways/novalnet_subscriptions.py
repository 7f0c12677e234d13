"""Novalnet subscriptions: a PAYMENT's ``subscription`` object, RENEWAL and SUBSCRIPTION_*.

Novalnet keeps the subscription (a tariff of type subscription, predefined or dynamic)
and charges it; einlass reads what it says. The subscription is known by the TID of its
first payment: ``transaction.tid`` of that PAYMENT, ``event.parent_tid`` of what follows
(Novalnet's "original/initial transaction TID"; its own shop plugins key subscriptions
so, and its subscription API takes that TID as ``subscription.tid``)::

    {"event": {"type": "RENEWAL", "tid": 14632500000000002, "parent_tid": 14632500000000001, ...},
     "result": {"status": "SUCCESS", "status_code": 100, "status_text": "Successful"},
     "transaction": {"tid": 14632500000000002, "amount": 990, "currency": "EUR", "status": "CONFIRMED"},
     "subscription": {"tid": 14632500000000001, "amount": 990, "next_cycle_date": "2027-03-10"}}

Dates: ``next_cycle_date`` is a calendar day without time or zone. einlass reads it as
00:00 UTC of that day: the period a payment pays ends when Novalnet's next charging day
begins. A renewal charged later that day arrives after the period end, so the status
reads ``past_due`` for those hours; access is unaffected (the grace period covers it).

Novalnet's notifications about one subscription (suspend, reactivate, update, cancel)
carry no id of their own and name the subscription's TID each time, so the fields of the
``subscription`` object join the event key. When einlass itself asked for the change
(``novalnet_api`` sends ``custom.input1 = "einlass_action"`` and the action's id in
``custom.inputval1``, which Novalnet echoes), the fact takes the action's key, so the
change that einlass applied already counts once.

Pure, like the adapter: the parsing helpers come with the ``Delivery`` of ``novalnet``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from einlass.billing.gateways.base import FactKind, MalformedPayload, PaymentEvent, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind

if TYPE_CHECKING:
    from einlass.billing.gateways.novalnet import Delivery, Section

RENEWAL = "RENEWAL"
SUBSCRIPTION_SUSPEND = "SUBSCRIPTION_SUSPEND"
SUBSCRIPTION_REACTIVATE = "SUBSCRIPTION_REACTIVATE"
SUBSCRIPTION_UPDATE = "SUBSCRIPTION_UPDATE"
SUBSCRIPTION_CANCEL = "SUBSCRIPTION_CANCEL"
LIFECYCLE_TYPES = frozenset(
    {SUBSCRIPTION_SUSPEND, SUBSCRIPTION_REACTIVATE, SUBSCRIPTION_UPDATE, SUBSCRIPTION_CANCEL}
)

# Marks einlass's own API calls in Novalnet's free fields custom.input1 / custom.inputval1.
ACTION_MARK = "einlass_action"
_ACTION_ID = re.compile(r"sac_[0-9A-Za-z]{1,60}")

# A payment that pays (or will pay, once confirmed) a period; a failed or voided one does not.
_PAYING = frozenset({FactKind.CONFIRMED, FactKind.PENDING, FactKind.ON_HOLD})

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T][0-9:.]{5,15})?")
_FIRST_YEAR, _LAST_YEAR = 1970, 2999
# Novalnet writes intervals as a count and a unit: "1m", "14d", "1y" (w for weeks is read too).
_NOVALNET_INTERVAL = re.compile(r"([1-9][0-9]{0,2})\s*([dwmy])", re.IGNORECASE)
_ISO_INTERVAL = re.compile(r"P(?:[1-9][0-9]{0,2}[YMWD])+")
_UNITS = {"d": "D", "w": "W", "m": "M", "y": "Y"}

# What tells two notifications about one subscription apart (the checksum covers none of it).
_IDENTITY_FIELDS = (
    "next_cycle_date",
    "amount",
    "interval",
    "tariff",
    "update_type",
    "reason",
    "termination_reason",
    "suspended_date",
    "reactivated_date",
)


# -- the first payment ------------------------------------------------------------


def opening_events(
    delivery: Delivery, payments: Sequence[PaymentEvent]
) -> Sequence[PaymentEvent | SubscriptionEvent]:
    """A PAYMENT that starts a subscription: the payment, then CREATED and the first PERIOD.

    A failed or voided first payment starts nothing. A free trial (``trial_interval``
    with a trial amount of 0) runs to ``next_cycle_date`` and has no paid period yet.
    """
    subscription = delivery.root.section("subscription")
    if subscription is None or len(payments) != 1 or payments[0].fact not in _PAYING:
        return payments
    payment = payments[0]
    ref = payment.payment_ref
    next_cycle = cycle_day(subscription, "next_cycle_date")
    trial_end = next_cycle if next_cycle is not None and _free_trial(subscription, payment) else None
    amount = subscription.amount("amount")
    created = SubscriptionEvent(
        Kind.CREATED,
        ref,
        delivery.key(f"created:{ref}"),
        trial_end=trial_end,
        amount=payment.amount if amount is None else amount,
        currency=payment.currency,
        interval=billing_interval(subscription),
        order_no=payment.order_no,
        product_ref=payment.product_ref,
        customer=payment.customer,
    )
    events: list[PaymentEvent | SubscriptionEvent] = [replace(payment, subscription_ref=ref), created]
    if trial_end is None:
        events.append(_period(delivery, ref, payment.payment_ref, next_cycle))
    return events


def _free_trial(subscription: Section, payment: PaymentEvent) -> bool:
    # A trial interval alone may be a first period at another price (Novalnet's shop
    # plugins use it so): only a free one is a trial.
    if subscription.text("trial_interval") is None:
        return False
    trial_amount = subscription.amount("trial_amount")
    return (payment.amount if trial_amount is None else trial_amount) == 0


# -- renewals -----------------------------------------------------------------------


def renewal_events(delivery: Delivery) -> Sequence[PaymentEvent | SubscriptionEvent]:
    """RENEWAL: the new transaction's payment fact, and the period it pays (or the failure).

    A failed renewal is a fact even though ``result.status`` is not SUCCESS.
    """
    ref = _parent_ref(delivery)
    if delivery.transaction is None:
        if delivery.success:
            raise MalformedPayload(f"transaction is required for {RENEWAL}")
        return [_failed(delivery, ref, delivery.event_tid)]
    tid = delivery.own_ref()
    fact = FactKind.FAILED if not delivery.success else delivery.status_fact()
    if fact is None:  # a status Novalnet may add later: stored, no effect
        return []
    payment = delivery.payment_event(fact, tid, f"payment:{tid}", delivery.tx_amount(), subscription_ref=ref)
    if fact in _PAYING:
        subscription = delivery.root.section("subscription")
        next_cycle = cycle_day(subscription, "next_cycle_date") if subscription is not None else None
        return [payment, _period(delivery, ref, tid, next_cycle)]
    return [payment, _failed(delivery, ref, tid)]


def _parent_ref(delivery: Delivery) -> str:
    ref = delivery.parent_tid
    if ref is None:
        raise MalformedPayload(
            f"event.parent_tid is required for {RENEWAL} (the TID of the subscription's first payment)"
        )
    return ref


def _period(delivery: Delivery, ref: str, payment_ref: str, period_end: datetime | None) -> SubscriptionEvent:
    # Without next_cycle_date the fold adds the plan's interval, anchored to the cycle.
    return SubscriptionEvent(
        Kind.PERIOD,
        ref,
        delivery.key(f"period:{payment_ref}"),
        payment_ref=payment_ref,
        period_end=period_end,
    )


def _failed(delivery: Delivery, ref: str, tid: str) -> SubscriptionEvent:
    return SubscriptionEvent(Kind.RENEWAL_FAILED, ref, delivery.key(f"renewal_failed:{tid}"), payment_ref=tid)


# -- suspend, reactivate, update, cancel ------------------------------------------------


def lifecycle_events(delivery: Delivery) -> Sequence[SubscriptionEvent]:
    """SUBSCRIPTION_SUSPEND, _REACTIVATE, _UPDATE and _CANCEL (``result.status`` SUCCESS only)."""
    subscription = delivery.root.section("subscription")
    # Novalnet's plugins read the subscription's TID the same way: parent_tid, else the event's.
    ref = delivery.parent_tid or delivery.event_tid
    next_cycle = cycle_day(subscription, "next_cycle_date") if subscription is not None else None
    event_type = delivery.event_type
    if event_type == SUBSCRIPTION_SUSPEND:
        return [SubscriptionEvent(Kind.PAUSED, ref, _fact_key(delivery, "suspend"))]
    if event_type == SUBSCRIPTION_REACTIVATE:
        # Novalnet names the next charging date: the resumed period ends there.
        key = _fact_key(delivery, "reactivate")
        return [SubscriptionEvent(Kind.RESUMED, ref, key, period_end=next_cycle)]
    if event_type == SUBSCRIPTION_CANCEL:
        # Novalnet stops charging; what was paid runs out.
        return [SubscriptionEvent(Kind.CANCELLED, ref, _fact_key(delivery, "cancel"), at_period_end=True)]
    return _update(delivery, ref, subscription, next_cycle)


def _update(
    delivery: Delivery, ref: str, subscription: Section | None, next_cycle: datetime | None
) -> Sequence[SubscriptionEvent]:
    """A new amount and next charging date; a new payment method alone changes nothing here.

    With an ``update_type`` (subscription's or transaction's) einlass takes only what it
    names: AMOUNT the amount, a DATE, CYCLE or INTERVAL the next charging date, PAYMENT
    neither. Without one, both are taken as Novalnet states them.
    """
    amount = subscription.amount("amount") if subscription is not None else None
    update_type = (subscription.text("update_type") if subscription is not None else None) or (
        delivery.transaction.text("update_type") if delivery.transaction is not None else None
    )
    if update_type is not None:
        words = update_type.upper()
        if "AMOUNT" not in words:
            amount = None
        if not any(word in words for word in ("DATE", "CYCLE", "INTERVAL")):
            next_cycle = None
    if amount is None and next_cycle is None:
        return []
    currency = delivery.transaction.currency("currency") if delivery.transaction is not None else None
    key = _fact_key(delivery, "update")
    return [
        SubscriptionEvent(Kind.UPDATED, ref, key, amount=amount, currency=currency, period_end=next_cycle)
    ]


def _fact_key(delivery: Delivery, word: str) -> str:
    """The einlass action's own key when einlass asked for this change, else this notification's."""
    action_id = einlass_action_id(delivery)
    if action_id is not None:
        return f"action:{action_id}"
    return delivery.key(f"{word}:{delivery.digest()}")


def einlass_action_id(delivery: Delivery) -> str | None:
    custom = delivery.root.section("custom")
    if custom is None or custom.text("input1") != ACTION_MARK:
        return None
    action_id = custom.text("inputval1", limit=64)
    if action_id is None or not _ACTION_ID.fullmatch(action_id):
        raise MalformedPayload(
            f'custom.inputval1 must be the id of an einlass action ("sac_...") when custom.input1 is "{ACTION_MARK}"'
        )
    return action_id


def subscription_identity(delivery: Delivery) -> list[str]:
    """The parts of a subscription notification that the event key adds to type, TID and checksum."""
    subscription = delivery.root.section("subscription")
    parts: list[str] = []
    for field in _IDENTITY_FIELDS:
        value: object = None
        if subscription is not None:
            value = subscription.amount(field) if field == "amount" else subscription.text(field)
        parts.append("" if value is None else str(value))
    return [*parts, einlass_action_id(delivery) or ""]


# -- values -------------------------------------------------------------------------


def cycle_day(section: Section, field: str) -> datetime | None:
    """A Novalnet date ("2027-02-10") as 00:00 UTC of that day; a time after it is ignored."""
    text = section.text(field, limit=40)
    if text is None:
        return None
    match = _DATE.fullmatch(text)
    if match is None:
        raise MalformedPayload(
            f'{section.label(field)} must be a date such as "2027-02-10", not {text[:40]!r}'
        )
    year, month, day = (int(part) for part in match.groups())
    try:
        value = date(year, month, day)
    except ValueError:
        raise MalformedPayload(f"{section.label(field)} is not a calendar date: {text[:40]!r}") from None
    if not _FIRST_YEAR <= value.year <= _LAST_YEAR:
        raise MalformedPayload(f"{section.label(field)} is out of range: {text[:40]!r}")
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def billing_interval(section: Section) -> str | None:
    """``subscription.interval`` ("1m", "14d", "1y") as an ISO 8601 duration ("P1M")."""
    text = section.text("interval", limit=20)
    if text is None:
        return None
    match = _NOVALNET_INTERVAL.fullmatch(text)
    if match is not None:
        return f"P{int(match.group(1))}{_UNITS[match.group(2).lower()]}"
    if _ISO_INTERVAL.fullmatch(text.upper()):
        return text.upper()
    raise MalformedPayload(
        f'{section.label("interval")} must be a Novalnet interval such as "1m", "14d" or "1y", not {text!r}'
    )
