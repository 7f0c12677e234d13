"""The one interface every payment gateway sits behind.

A gateway adapter is pure: it checks a request's signature on the raw bytes
and turns the body into normalised payment events. It does no I/O, so the
inbox can re-parse a stored raw request at any later time.
"""

from __future__ import annotations

import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar


class GatewayError(Exception):
    """Base for what a gateway adapter refuses; ``str(error)`` is shown to the sender."""


class InvalidSignature(GatewayError):
    """The request is not from the gateway (HTTP 401); nothing is stored or applied."""


class MalformedPayload(GatewayError):
    """The request is signed (or cannot be checked) but its body is unusable (HTTP 400)."""


class FactKind(StrEnum):
    """What a gateway can say about one payment. The ledger folds these."""

    PENDING = "pending"  # started, money not there yet (invoice, prepayment, redirect)
    ON_HOLD = "on_hold"  # authorised, waits for capture
    CONFIRMED = "confirmed"  # the money is the merchant's: opens access
    CREDIT = "credit"  # part or all of an invoice or prepayment came in (amount)
    FAILED = "failed"
    CANCELLED = "cancelled"  # an authorisation voided before capture
    REFUND = "refund"  # one refund of ``amount``
    REFUND_TOTAL = "refund_total"  # everything refunded so far is ``amount`` (cumulative)
    CHARGEBACK = "chargeback"
    CHARGEBACK_REVERSED = "chargeback_reversed"  # decided in the merchant's favour
    AMOUNT_CHANGED = "amount_changed"


# Facts that can create a payment the ledger has not seen; any other fact for
# an unknown payment is parked until its payment arrives.
OPENING_FACTS = frozenset(
    {FactKind.PENDING, FactKind.ON_HOLD, FactKind.CONFIRMED, FactKind.FAILED, FactKind.CANCELLED}
)


@dataclass(frozen=True)
class Customer:
    email: str | None = None
    name: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class PaymentEvent:
    fact: FactKind
    # The gateway's id of the original payment (Novalnet tid, Stripe payment_intent).
    payment_ref: str
    # Identity of this fact within its payment, stable across redeliveries
    # (refund id, dispute id, event tid): the same key counts once.
    fact_key: str
    amount: int | None = None  # integer minor units
    currency: str | None = None  # ISO 4217, upper case
    order_no: str | None = None
    # The gateway's product, tariff or price id, mapped to a plan by reference.
    product_ref: str | None = None
    customer: Customer | None = None
    occurred_at: datetime | None = None
    # A subscription's first payment and its renewals name it; their grants come from it.
    subscription_ref: str | None = None


class SubscriptionFactKind(StrEnum):
    """What a gateway can say about one subscription. ``billing.subscriptions.rules`` folds these."""

    CREATED = "created"  # started: trialing, or waiting for its first payment
    PERIOD = "period"  # a payment covers a period; counts while that payment opens access
    RENEWAL_FAILED = "renewal_failed"
    PAUSED = "paused"  # optional resume_at
    RESUMED = "resumed"  # optional period_end: the gateway's next billing date
    UPDATED = "updated"  # amount, currency, interval, period_end (next billing date)
    CANCELLED = "cancelled"  # at_period_end, or now; cancel_at names a date
    CANCEL_WITHDRAWN = "cancel_withdrawn"
    PLAN_CHANGED = "plan_changed"  # product_ref; at_period_end for a downgrade
    # The gateway's whole object (Stripe): compared with the state before it, in time order.
    SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class SubscriptionEvent:
    kind: SubscriptionFactKind
    # The gateway's id of the subscription (Novalnet: the first payment's tid; Stripe: sub_...).
    subscription_ref: str
    # Identity of this fact within its subscription, stable across redeliveries.
    fact_key: str
    occurred_at: datetime | None = None
    # PERIOD: the payment (in the same delivery, or an earlier one) that pays the period.
    payment_ref: str | None = None
    period_end: datetime | None = None
    trial_end: datetime | None = None
    resume_at: datetime | None = None
    cancel_at: datetime | None = None
    at_period_end: bool = True
    cancel_at_period_end: bool = False  # SNAPSHOT
    amount: int | None = None
    currency: str | None = None
    interval: str | None = None  # ISO 8601 duration, for dynamic subscriptions
    # SNAPSHOT: the gateway's status word (Stripe: active, past_due, canceled, ...).
    status: str | None = None
    paused: bool | None = None
    order_no: str | None = None
    product_ref: str | None = None
    customer: Customer | None = None


@dataclass(frozen=True)
class ParsedDelivery:
    # Deduplication identity of the whole delivery (unique per gateway and merchant).
    event_key: str
    # The gateway's own name for the event, stored for display.
    event_type: str
    # Empty for event types einlass does not act on: stored, acknowledged, no effect.
    # Payment events come before the subscription events that refer to their payments.
    events: tuple[PaymentEvent | SubscriptionEvent, ...] = field(default_factory=tuple)


class Gateway(ABC):
    name: ClassVar[str]
    # Names of the secrets a merchant configures for this gateway; the first is required.
    secret_fields: ClassVar[tuple[str, ...]]

    @abstractmethod
    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: datetime
    ) -> None:
        """Raise InvalidSignature (or MalformedPayload if it cannot even be checked)."""

    @abstractmethod
    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedDelivery:
        """Turn a verified body into normalised events; raise MalformedPayload."""


def load_json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedPayload(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise MalformedPayload("body is not usable JSON: nested too deeply") from None
    except ValueError as error:  # an integer literal past Python's digit limit
        raise MalformedPayload(f"body is not usable JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedPayload("body must be a JSON object")
    return document


def constant_time_equals(expected: str | bytes, given: str | bytes) -> bool:
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(given, str):
        given = given.encode()
    return hmac.compare_digest(expected, given)
