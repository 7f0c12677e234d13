"""The "generic" gateway: einlass's own normalised events, signed per Standard Webhooks.

Any billing system connects this way. A delivery is a JSON object::

    {
      "type": "payment.confirmed",
      "timestamp": "2026-03-01T12:00:00Z",
      "data": {
        "payment_id": "pay_123",
        "amount": 1990,
        "currency": "EUR",
        "order_no": "A-1001",
        "product_id": "gold-monthly",
        "customer": {"email": "anna@example.com", "name": "Anna Muster", "locale": "de"}
      }
    }

with the headers ``webhook-id`` (the delivery's identity, stable across retries),
``webhook-timestamp`` and ``webhook-signature`` (see einlass.standard_webhooks).

Top level:

* ``type`` (string, required): one of EVENT_TYPES (payments, below) or of
  generic_subscriptions.SUBSCRIPTION_EVENT_TYPES; any other type is stored and
  acknowledged with no effect.
* ``timestamp`` (ISO 8601 with a time zone, optional): when the event happened.
* ``data`` (object, required for the known types).

``data`` of the payment types:

* ``payment_id`` (string, always required): the sender's id of the original payment;
  every event about one payment carries the same id.
* ``amount`` (integer minor units, >= 0) and ``currency`` (ISO 4217, three letters):
  required for ``payment.pending``, ``payment.confirmed``, ``payment.refunded`` (the
  amount of this one refund) and ``payment.chargeback``; optional, but together,
  for the other types.
* ``refund_id`` (string): required for ``payment.refunded``; each refund id counts once.
* ``chargeback_id`` (string): required for ``payment.chargeback`` and
  ``payment.chargeback_reversed``; the reversal cancels the chargeback with the same id.
* ``order_no``, ``product_id`` (strings), ``customer`` (object with optional
  ``email``, ``name``, ``locale``): optional on every type.

The subscription types are described in generic_subscriptions. Unknown fields
are ignored, so a sender can add its own. The schema every sender relies on is
docs/gateways/generic.md. Merchant actions (pause, cancel, ...) go the other way,
as signed webhooks to the merchant's ``action_url``: see generic_api.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from einlass import standard_webhooks
from einlass.billing.gateways.base import (
    Customer,
    FactKind,
    Gateway,
    InvalidSignature,
    MalformedPayload,
    ParsedDelivery,
    PaymentEvent,
    load_json_object,
)

# Column sizes of the ledger and inbox: longer values are refused here, not by the database.
MAX_EVENT_KEY = 255
MAX_EVENT_TYPE = 100
MAX_ID = 200
MAX_ORDER_NO = 64
MAX_EMAIL = 320
MAX_NAME = 200
MAX_LOCALE = 35
MAX_AMOUNT = 2**31 - 1

_CURRENCY = re.compile(r"[A-Za-z]{3}")
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


@dataclass(frozen=True)
class EventSpec:
    fact: FactKind
    # Whether data.amount and data.currency must be present.
    amount_required: bool
    # The data field that names this fact within its payment (refund id, chargeback id).
    id_field: str | None = None

    def fact_key(self, fact_id: str | None) -> str:
        # pending / confirmed / failed happen once per payment; refunds and
        # chargebacks once per id. "chargeback:X" and "chargeback_reversed:X" pair up.
        return self.fact.value if fact_id is None else f"{self.fact.value}:{fact_id}"


EVENT_TYPES: Mapping[str, EventSpec] = {
    "payment.pending": EventSpec(FactKind.PENDING, amount_required=True),
    "payment.confirmed": EventSpec(FactKind.CONFIRMED, amount_required=True),
    "payment.failed": EventSpec(FactKind.FAILED, amount_required=False),
    "payment.refunded": EventSpec(FactKind.REFUND, amount_required=True, id_field="refund_id"),
    "payment.chargeback": EventSpec(FactKind.CHARGEBACK, amount_required=True, id_field="chargeback_id"),
    "payment.chargeback_reversed": EventSpec(
        FactKind.CHARGEBACK_REVERSED, amount_required=False, id_field="chargeback_id"
    ),
}


class GenericGateway(Gateway):
    name: ClassVar[str] = "generic"
    # action_url (optional): where merchant actions are sent, signed with signing_secret.
    secret_fields: ClassVar[tuple[str, ...]] = ("signing_secret", "action_url")

    tolerance_s: ClassVar[int] = standard_webhooks.DEFAULT_TOLERANCE_S

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: datetime
    ) -> None:
        secret = secrets.get("signing_secret")
        if not secret:
            raise InvalidSignature("no signing secret is configured for the generic gateway")
        standard_webhooks.verify(secret, headers, body, now, tolerance_s=self.tolerance_s)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedDelivery:
        event_key = standard_webhooks.get_header(headers, standard_webhooks.HEADER_ID)
        if not event_key:
            raise MalformedPayload(f"missing {standard_webhooks.HEADER_ID} header")
        check_text(f"the {standard_webhooks.HEADER_ID} header", event_key, MAX_EVENT_KEY)

        document = load_json_object(body)
        event_type = document.get("type")
        if event_type is None:
            raise MalformedPayload('type is required, e.g. "payment.confirmed"')
        if not isinstance(event_type, str) or not event_type.strip():
            raise MalformedPayload('type must be a non-empty string, e.g. "payment.confirmed"')
        check_text("type", event_type, MAX_EVENT_TYPE)

        spec = EVENT_TYPES.get(event_type)
        if spec is not None:
            event = _payment_event(event_type, spec, document)
            return ParsedDelivery(event_key=event_key, event_type=event_type, events=(event,))
        # Imported here: the subscription parser builds on the field readers below.
        from einlass.billing.gateways.generic_subscriptions import subscription_events

        events = subscription_events(event_type, document, event_key)
        return ParsedDelivery(event_key=event_key, event_type=event_type, events=events)


def _payment_event(event_type: str, spec: EventSpec, document: dict[str, Any]) -> PaymentEvent:
    occurred_at = read_time(document.get("timestamp"))
    data = document.get("data")
    if data is None:
        raise MalformedPayload(f"data is required for {event_type}")
    if not isinstance(data, dict):
        raise MalformedPayload("data must be a JSON object")

    payment_ref = required_id(data, "payment_id", event_type)
    fact_id = required_id(data, spec.id_field, event_type) if spec.id_field else None
    amount, currency = read_money(data, event_type, required=spec.amount_required)
    return PaymentEvent(
        fact=spec.fact,
        payment_ref=payment_ref,
        fact_key=spec.fact_key(fact_id),
        amount=amount,
        currency=currency,
        order_no=optional_text(data, "order_no", MAX_ORDER_NO),
        product_ref=optional_text(data, "product_id", MAX_ID),
        customer=read_customer(data.get("customer")),
        occurred_at=occurred_at,
    )


def read_time(value: object, label: str = "timestamp") -> datetime | None:
    """An ISO 8601 (RFC 3339) date-time with a time zone, in UTC; ``label`` names the field."""
    if value is None:
        return None
    example = "e.g. 2026-03-01T12:00:00Z"
    if not isinstance(value, str):
        raise MalformedPayload(f"{label} must be an ISO 8601 string with a time zone, {example}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedPayload(f"{label} {shorten(value)} is not an ISO 8601 date-time, {example}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MalformedPayload(f"{label} must include a time zone (Z or +01:00), {example}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise MalformedPayload(f"{label} {shorten(value)} is out of range") from None


def required_id(data: dict[str, Any], field: str, event_type: str) -> str:
    value = data.get(field)
    if value is None:
        raise MalformedPayload(f"data.{field} is required for {event_type}")
    if not isinstance(value, str) or not value.strip():
        raise MalformedPayload(f"data.{field} must be a non-empty string")
    check_text(f"data.{field}", value, MAX_ID)
    return value


def read_money(data: dict[str, Any], event_type: str, *, required: bool) -> tuple[int | None, str | None]:
    amount = data.get("amount")
    currency = data.get("currency")
    if amount is None and currency is None and not required:
        return None, None
    if amount is None:
        reason = f"for {event_type}" if required else "when data.currency is given"
        raise MalformedPayload(f"data.amount is required {reason} (integer minor units, e.g. 1990)")
    if currency is None:
        reason = f"for {event_type}" if required else "when data.amount is given"
        raise MalformedPayload(f'data.currency is required {reason} (ISO 4217 code, e.g. "EUR")')
    # bool is an int in Python, but true is no amount.
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise MalformedPayload(
            "data.amount must be a non-negative integer (minor units, e.g. 1990 for 19.90)"
        )
    if amount > MAX_AMOUNT:
        raise MalformedPayload(f"data.amount is too large (at most {MAX_AMOUNT} minor units)")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise MalformedPayload('data.currency must be an ISO 4217 code of three letters, e.g. "EUR"')
    return amount, currency.upper()


def read_customer(value: object) -> Customer | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedPayload("data.customer must be a JSON object")
    email = optional_text(value, "email", MAX_EMAIL, prefix="data.customer.")
    if email is not None and not _EMAIL.fullmatch(email):
        raise MalformedPayload(f"data.customer.email {shorten(email)} is not an email address")
    name = optional_text(value, "name", MAX_NAME, prefix="data.customer.")
    locale = optional_text(value, "locale", MAX_LOCALE, prefix="data.customer.")
    if locale is not None and not _LOCALE.fullmatch(locale):
        raise MalformedPayload('data.customer.locale must be a language tag such as "de" or "en-GB"')
    if email is None and name is None and locale is None:
        return None
    return Customer(email=email, name=name, locale=locale)


def optional_text(data: dict[str, Any], field: str, limit: int, *, prefix: str = "data.") -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"{prefix}{field} must be a string")
    value = value.strip()
    if not value:
        return None
    check_text(f"{prefix}{field}", value, limit)
    return value


def check_text(label: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise MalformedPayload(f"{label} is too long ({len(value)} characters, at most {limit})")
    if "\x00" in value:
        raise MalformedPayload(f"{label} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPayload(f"{label} is not valid Unicode (unpaired surrogate)") from None


def shorten(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
