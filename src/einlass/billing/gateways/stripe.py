"""Stripe webhooks: the signature, and the events of one-time payments (Checkout and PaymentIntents).

Subscription events (``customer.subscription.*``, ``invoice.*`` and Checkout in
``subscription`` mode) are mapped in ``stripe_subscriptions``; this module
dispatches to both and holds the field readers they share.

Verification follows Stripe's documented scheme: the ``Stripe-Signature``
header carries ``t=<unix seconds>`` and one or more ``v1=<hex>`` entries (more
than one while a rolled endpoint secret is still signing alongside the new
one); ``v1`` is the hex HMAC-SHA256 of ``"{t}.{raw body}"`` keyed with the
endpoint's signing secret (``whsec_...``, used as-is). A delivery is accepted
when any ``v1`` matches and ``t`` is within 300 s of ``now`` in either
direction. Other schemes (``v0``, the legacy test-mode scheme) are ignored.

How events map to payment facts (``payment_ref`` is always the PaymentIntent
id, so facts from Checkout, PaymentIntent, Charge and Dispute events meet on
one payment):

* ``checkout.session.completed`` in mode ``payment``: ``paid`` -> CONFIRMED,
  ``unpaid`` (delayed methods such as SEPA debit) -> PENDING; ``no_payment_required``
  and ``setup`` mode are ignored, ``subscription`` mode is ``stripe_subscriptions``'.
* ``checkout.session.async_payment_succeeded`` -> CONFIRMED,
  ``checkout.session.async_payment_failed`` -> FAILED.
* ``payment_intent.succeeded`` -> CONFIRMED, ``payment_intent.payment_failed`` -> FAILED.
* ``charge.refunded`` -> REFUND_TOTAL (the cumulative ``amount_refunded``).
* ``charge.dispute.created`` and ``charge.dispute.funds_withdrawn`` -> CHARGEBACK
  (one fact; inquiries ignored, see below).
* ``charge.dispute.closed``: ``won`` -> CHARGEBACK_REVERSED; ``lost`` and other
  outcomes -> the same CHARGEBACK again (idempotent); ``warning_closed`` (an
  inquiry that ended) ignored.

Every other event type (and every type ``stripe_subscriptions`` does not
handle) parses to no events: it is stored and acknowledged.

Fact keys: CONFIRMED is ``"confirmed"``, PENDING ``"pending"``, FAILED
``"failed"`` whichever event reports it, so a Checkout Session and the
``payment_intent.*`` event for the same intent count once. Refunds use
``"refund_total:{amount_refunded}"``; disputes ``"dispute:{id}"`` and
``"dispute_won:{id}"``.

Disputes whose status starts with ``warning_`` are *inquiries* (retrieval
requests): the card issuer asks questions but no money has left the
merchant's balance, so they are not chargebacks. If one escalates, Stripe sends
``charge.dispute.funds_withdrawn`` for the same dispute, which is the
CHARGEBACK.

Plans: Stripe events do not carry Checkout line items, so the product is
taken from metadata: ``metadata["price_id"]``, else ``metadata["product_id"]``,
else ``metadata["plan"]`` (on the Checkout Session, or on the PaymentIntent
for ``payment_intent.*`` events). The order is ``client_reference_id`` (set
it to the einlass order number), else ``metadata["order_no"]``.

Legacy charges created without a PaymentIntent have no ``payment_intent``;
their refunds and disputes use the charge id (``ch_...``) as ``payment_ref``,
consistently, so their facts still meet on one payment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar

from einlass.billing.gateways.base import (
    Customer,
    FactKind,
    Gateway,
    InvalidSignature,
    MalformedPayload,
    ParsedDelivery,
    PaymentEvent,
    SubscriptionEvent,
    constant_time_equals,
    load_json_object,
)

SIGNATURE_HEADER = "stripe-signature"
TOLERANCE_SECONDS = 300
SIGNATURE_SCHEME = "v1"

# Metadata keys that name the einlass plan, in order of preference.
PRODUCT_METADATA_KEYS = ("price_id", "product_id", "plan")
ORDER_METADATA_KEY = "order_no"

# Column sizes of the inbox and ledger (as in the generic gateway). Stripe's own ids
# are far shorter; a longer id, order number or product is refused here, not by the
# database. Over-long customer details are dropped instead: a payment is not refused
# because of what a customer typed.
MAX_EVENT_KEY = 255
MAX_EVENT_TYPE = 100
MAX_ID = 200
MAX_ORDER_NO = 64
MAX_EMAIL = 320
MAX_NAME = 200
MAX_LOCALE = 35
MAX_AMOUNT = 2**31 - 1

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
# 9999-12-31T23:59:59Z: anything later cannot be a datetime.
_MAX_UNIX_SECONDS = 253_402_300_799

JsonObject = dict[str, Any]


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Stripe's ``v1`` signature: hex HMAC-SHA256 of ``"{timestamp}.{body}"``."""
    signed_payload = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest()


class StripeGateway(Gateway):
    name: ClassVar[str] = "stripe"
    # webhook_secret: the endpoint's signing secret (whsec_...). api_key: optional,
    # for later API calls; webhooks do not need it.
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_secret", "api_key")
    tolerance_seconds: ClassVar[int] = TOLERANCE_SECONDS

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: datetime
    ) -> None:
        secret = secrets.get("webhook_secret")
        if not secret:
            raise InvalidSignature("no Stripe webhook_secret is configured for this merchant")
        header = _header(headers, SIGNATURE_HEADER)
        if header is None:
            raise InvalidSignature("missing Stripe-Signature header")
        timestamp, signatures = _parse_signature_header(header)

        expected = compute_signature(secret, timestamp, body)
        matched = False
        for signature in signatures:
            # Compare every entry, no early exit; a non-ASCII value cannot be a hex digest.
            matched |= signature.isascii() and constant_time_equals(expected, signature)
        if not matched:
            raise InvalidSignature(
                "no v1 signature in the Stripe-Signature header matches the body "
                "(wrong webhook_secret, or the body was altered)"
            )

        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        skew = now.timestamp() - int(timestamp)
        if skew > self.tolerance_seconds:
            raise InvalidSignature(
                f"Stripe-Signature timestamp is {int(skew)} s old, "
                f"outside the {self.tolerance_seconds} s tolerance (replayed or delayed delivery)"
            )
        if -skew > self.tolerance_seconds:
            raise InvalidSignature(
                f"Stripe-Signature timestamp is {int(-skew)} s in the future, "
                f"outside the {self.tolerance_seconds} s tolerance (check the server clock)"
            )

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedDelivery:
        event = load_json_object(body)
        event_id = required_str(event, "id", "", max_length=MAX_EVENT_KEY)
        event_object = optional_str(event, "object", "")
        if event_object is not None and event_object != "event":
            raise MalformedPayload(f"field 'object' must be 'event', got {show_value(event_object)}")
        event_type = required_str(event, "type", "", max_length=MAX_EVENT_TYPE)
        created = optional_timestamp(event, "created", "")
        data = required_object(event, "data", "")
        obj = required_object(data, "object", "data")

        handler = _handler_table().get(event_type)
        if handler is None:
            return ParsedDelivery(event_key=event_id, event_type=event_type)
        expected_object, builders = handler
        found_object = optional_str(obj, "object", OBJECT_PATH)
        if found_object is not None and found_object != expected_object:
            raise MalformedPayload(
                f"field 'data.object.object' must be {expected_object!r} for {event_type} events, "
                f"got {show_value(found_object)}"
            )
        envelope = Envelope(event_id, event_type, created)
        events = tuple(event for build in builders for event in build(obj, envelope))
        return ParsedDelivery(event_key=event_id, event_type=event_type, events=events)


# --- signature header ---------------------------------------------------------------------------


def _header(headers: Mapping[str, str], wanted: str) -> str | None:
    value = headers.get(wanted)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _parse_signature_header(header: str) -> tuple[str, list[str]]:
    """Split ``t=...,v1=...[,v1=...][,v0=...]`` into the timestamp text and the v1 values."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for position, element in enumerate(header.split(","), start=1):
        key, separator, value = element.strip().partition("=")
        if not separator or not key:
            raise InvalidSignature(
                f"cannot parse the Stripe-Signature header: element {position} is not 'key=value' "
                "(expected 't=<unix time>,v1=<hex signature>')"
            )
        if key == "t":
            timestamps.append(value)
        elif key == SIGNATURE_SCHEME and value:
            signatures.append(value)
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise InvalidSignature(
            "cannot parse the Stripe-Signature header: it needs exactly one 't=<unix time>' element"
        )
    if not signatures:
        raise InvalidSignature("the Stripe-Signature header has no v1 signature")
    return timestamps[0], signatures


# --- event handlers -----------------------------------------------------------------------------

OBJECT_PATH = "data.object"


@dataclass(frozen=True)
class Envelope:
    """What a handler needs of the Event around ``data.object``."""

    id: str  # evt_...: the identity of a fact that only this event states (a subscription snapshot)
    type: str
    created: datetime | None  # when Stripe created the event: the time of its facts


Handler = Callable[[JsonObject, Envelope], tuple[PaymentEvent | SubscriptionEvent, ...]]
# event type -> (expected data.object.object, the handlers whose events are concatenated)
HandlerTable = dict[str, tuple[str, tuple[Handler, ...]]]


def _checkout_completed(session: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    if required_str(session, "mode", OBJECT_PATH) != "payment":
        return ()  # subscription and setup sessions are not one-time payments
    payment_status = required_str(session, "payment_status", OBJECT_PATH)
    if payment_status == "paid":
        return (_checkout_event(session, FactKind.CONFIRMED, envelope.created),)
    if payment_status == "unpaid":
        return (_checkout_event(session, FactKind.PENDING, envelope.created),)
    return ()  # no_payment_required: nothing was charged, there is no PaymentIntent


def _checkout_async_succeeded(session: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    if required_str(session, "mode", OBJECT_PATH) != "payment":
        return ()
    return (_checkout_event(session, FactKind.CONFIRMED, envelope.created),)


def _checkout_async_failed(session: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    if required_str(session, "mode", OBJECT_PATH) != "payment":
        return ()
    return (_checkout_event(session, FactKind.FAILED, envelope.created),)


def _checkout_event(session: JsonObject, fact: FactKind, occurred_at: datetime | None) -> PaymentEvent:
    payment_ref = reference(session, "payment_intent", OBJECT_PATH)
    if payment_ref is None:
        raise MalformedPayload("field 'data.object.payment_intent' is missing for a payment-mode session")
    metadata = metadata_of(session, OBJECT_PATH)
    return PaymentEvent(
        fact=fact,
        payment_ref=payment_ref,
        fact_key=fact.value,
        amount=optional_amount(session, "amount_total", OBJECT_PATH),
        currency=optional_currency(session, OBJECT_PATH),
        order_no=checkout_order_no(session, metadata),
        product_ref=metadata_product_ref(metadata, OBJECT_PATH),
        customer=checkout_customer(session),
        occurred_at=occurred_at,
    )


def checkout_order_no(session: JsonObject, metadata: JsonObject) -> str | None:
    """The order a Checkout Session names: ``client_reference_id``, else ``metadata["order_no"]``."""
    return optional_str(
        session, "client_reference_id", OBJECT_PATH, max_length=MAX_ORDER_NO
    ) or metadata_value(metadata, ORDER_METADATA_KEY, OBJECT_PATH, max_length=MAX_ORDER_NO)


def checkout_customer(session: JsonObject) -> Customer | None:
    details = optional_object(session, "customer_details", OBJECT_PATH) or {}
    details_path = f"{OBJECT_PATH}.customer_details"
    email = customer_text(details, "email", details_path, MAX_EMAIL) or customer_text(
        session, "customer_email", OBJECT_PATH, MAX_EMAIL
    )
    name = customer_text(details, "name", details_path, MAX_NAME)
    locale = customer_text(session, "locale", OBJECT_PATH, MAX_LOCALE)
    if locale == "auto":
        locale = None
    return make_customer(email, name, locale)


def _intent_succeeded(intent: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    received = optional_amount(intent, "amount_received", OBJECT_PATH)
    amount = received or optional_amount(intent, "amount", OBJECT_PATH)
    return (_intent_event(intent, FactKind.CONFIRMED, amount, envelope.created),)


def _intent_failed(intent: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    amount = optional_amount(intent, "amount", OBJECT_PATH)
    return (_intent_event(intent, FactKind.FAILED, amount, envelope.created),)


def _intent_event(
    intent: JsonObject, fact: FactKind, amount: int | None, occurred_at: datetime | None
) -> PaymentEvent:
    metadata = metadata_of(intent, OBJECT_PATH)
    email = customer_text(intent, "receipt_email", OBJECT_PATH, MAX_EMAIL)
    return PaymentEvent(
        fact=fact,
        payment_ref=required_str(intent, "id", OBJECT_PATH),
        fact_key=fact.value,
        amount=amount,
        currency=optional_currency(intent, OBJECT_PATH),
        order_no=metadata_value(metadata, ORDER_METADATA_KEY, OBJECT_PATH, max_length=MAX_ORDER_NO),
        product_ref=metadata_product_ref(metadata, OBJECT_PATH),
        customer=make_customer(email, None, None),
        occurred_at=occurred_at,
    )


def _charge_refunded(charge: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    charge_id = required_str(charge, "id", OBJECT_PATH)
    amount_refunded = required_amount(charge, "amount_refunded", OBJECT_PATH)
    return (
        PaymentEvent(
            fact=FactKind.REFUND_TOTAL,
            payment_ref=reference(charge, "payment_intent", OBJECT_PATH) or charge_id,
            fact_key=f"refund_total:{amount_refunded}",
            amount=amount_refunded,
            currency=optional_currency(charge, OBJECT_PATH),
            occurred_at=envelope.created,
        ),
    )


def _dispute_created(dispute: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    if required_str(dispute, "status", OBJECT_PATH).startswith("warning_"):
        return ()  # an inquiry: no money has moved yet
    return (_dispute_event(dispute, FactKind.CHARGEBACK, "dispute", envelope.created),)


def _dispute_funds_withdrawn(dispute: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    return (_dispute_event(dispute, FactKind.CHARGEBACK, "dispute", envelope.created),)


def _dispute_closed(dispute: JsonObject, envelope: Envelope) -> tuple[PaymentEvent, ...]:
    status = required_str(dispute, "status", OBJECT_PATH)
    if status == "won":
        return (_dispute_event(dispute, FactKind.CHARGEBACK_REVERSED, "dispute_won", envelope.created),)
    if status.startswith("warning_"):
        return ()  # an inquiry closed without becoming a chargeback
    # lost (or any other outcome): the chargeback stands; same fact as charge.dispute.created.
    return (_dispute_event(dispute, FactKind.CHARGEBACK, "dispute", envelope.created),)


def _dispute_event(
    dispute: JsonObject, fact: FactKind, key_prefix: str, occurred_at: datetime | None
) -> PaymentEvent:
    dispute_id = required_str(dispute, "id", OBJECT_PATH)
    charge_id = reference(dispute, "charge", OBJECT_PATH)
    payment_ref = reference(dispute, "payment_intent", OBJECT_PATH) or charge_id
    if payment_ref is None:
        raise MalformedPayload("field 'data.object.charge' is missing (the dispute has no payment_intent)")
    return PaymentEvent(
        fact=fact,
        payment_ref=payment_ref,
        fact_key=f"{key_prefix}:{dispute_id}",
        amount=required_amount(dispute, "amount", OBJECT_PATH),
        currency=optional_currency(dispute, OBJECT_PATH),
        occurred_at=occurred_at,
    )


PAYMENT_HANDLERS: HandlerTable = {
    "checkout.session.completed": ("checkout.session", (_checkout_completed,)),
    "checkout.session.async_payment_succeeded": ("checkout.session", (_checkout_async_succeeded,)),
    "checkout.session.async_payment_failed": ("checkout.session", (_checkout_async_failed,)),
    "payment_intent.succeeded": ("payment_intent", (_intent_succeeded,)),
    "payment_intent.payment_failed": ("payment_intent", (_intent_failed,)),
    "charge.refunded": ("charge", (_charge_refunded,)),
    "charge.dispute.created": ("dispute", (_dispute_created,)),
    "charge.dispute.funds_withdrawn": ("dispute", (_dispute_funds_withdrawn,)),
    "charge.dispute.closed": ("dispute", (_dispute_closed,)),
}


@cache
def _handler_table() -> HandlerTable:
    """Payment and subscription handlers together; a type both handle runs both (Checkout by mode)."""
    # Imported here, not at the top: stripe_subscriptions builds on this module's field readers.
    from einlass.billing.gateways.stripe_subscriptions import SUBSCRIPTION_HANDLERS

    table = dict(PAYMENT_HANDLERS)
    for event_type, (expected_object, builders) in SUBSCRIPTION_HANDLERS.items():
        known_object, known_builders = table.get(event_type, (expected_object, ()))
        assert known_object == expected_object, event_type
        table[event_type] = (expected_object, known_builders + builders)
    return table


def handled_event_types() -> tuple[str, ...]:
    return tuple(_handler_table())


# --- field access with precise errors -----------------------------------------------------------
#
# Shared with stripe_subscriptions. ``where`` is the dotted path of ``obj`` in the
# event, so that every refusal names the exact field (``data.object.items.data.0.price``).


def field_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def required_str(obj: JsonObject, key: str, where: str, *, max_length: int = MAX_ID) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        found = "missing" if key not in obj else "an empty string" if value == "" else json_type(value)
        raise MalformedPayload(f"field {field_path(where, key)!r} must be a non-empty string, got {found}")
    _check_text(field_path(where, key), value, max_length)
    return value


def optional_str(obj: JsonObject, key: str, where: str, *, max_length: int | None = MAX_ID) -> str | None:
    """A string or null; an empty string counts as null."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayload(
            f"field {field_path(where, key)!r} must be a string or null, got {json_type(value)}"
        )
    _check_text(field_path(where, key), value, max_length)
    return value or None


def customer_text(obj: JsonObject, key: str, where: str, max_length: int) -> str | None:
    """Customer details: a value longer than its column is dropped, not refused."""
    value = optional_str(obj, key, where, max_length=None)
    if value is None or len(value) > max_length:
        return None
    return value


def _check_text(path: str, value: str, max_length: int | None) -> None:
    if max_length is not None and len(value) > max_length:
        raise MalformedPayload(
            f"field {path!r} is too long ({len(value)} characters, at most {max_length}): {show_value(value)}"
        )
    if "\x00" in value:
        raise MalformedPayload(f"field {path!r} must not contain NUL characters")
    if not _encodable(value):
        raise MalformedPayload(f"field {path!r} is not valid Unicode (unpaired surrogate)")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def show_value(value: str) -> str:
    """A value quoted for an error message, cut short."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def required_object(obj: JsonObject, key: str, where: str) -> JsonObject:
    value = obj.get(key)
    if not isinstance(value, dict):
        found = "missing" if key not in obj else json_type(value)
        raise MalformedPayload(f"field {field_path(where, key)!r} must be a JSON object, got {found}")
    return value


def optional_object(obj: JsonObject, key: str, where: str) -> JsonObject | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedPayload(
            f"field {field_path(where, key)!r} must be a JSON object or null, got {json_type(value)}"
        )
    return value


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def optional_amount(obj: JsonObject, key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not is_int(value):
        raise MalformedPayload(
            f"field {field_path(where, key)!r} must be an integer amount in minor units, got {json_type(value)}"
        )
    if not 0 <= value <= MAX_AMOUNT:
        raise MalformedPayload(
            f"field {field_path(where, key)!r} must be between 0 and {MAX_AMOUNT} minor units, "
            f"got {'a negative number' if value < 0 else 'a larger number'}"
        )
    return int(value)


def required_amount(obj: JsonObject, key: str, where: str) -> int:
    value = optional_amount(obj, key, where)
    if value is None:
        found = "missing" if key not in obj else "null"
        raise MalformedPayload(
            f"field {field_path(where, key)!r} must be an integer amount in minor units, got {found}"
        )
    return value


def optional_currency(obj: JsonObject, where: str) -> str | None:
    value = optional_str(obj, "currency", where)
    if value is None:
        return None
    if not _CURRENCY.fullmatch(value):
        raise MalformedPayload(
            f"field {field_path(where, 'currency')!r} must be a three-letter ISO 4217 code, got {show_value(value)}"
        )
    return value.upper()


def optional_timestamp(obj: JsonObject, key: str, where: str) -> datetime | None:
    value = obj.get(key)
    if value is None:
        return None
    if not is_int(value):
        raise MalformedPayload(
            f"field {field_path(where, key)!r} must be a Unix timestamp in seconds, got {json_type(value)}"
        )
    if not 0 <= value <= _MAX_UNIX_SECONDS:
        raise MalformedPayload(f"field {field_path(where, key)!r} is out of range for a Unix timestamp")
    return datetime.fromtimestamp(value, UTC)


def reference(obj: JsonObject, key: str, where: str) -> str | None:
    """An id field that Stripe may expand into the object it names."""
    value = obj.get(key)
    if isinstance(value, dict):
        return required_str(value, "id", field_path(where, key))
    return optional_str(obj, key, where)


def metadata_of(obj: JsonObject, where: str) -> JsonObject:
    return optional_object(obj, "metadata", where) or {}


def metadata_value(metadata: JsonObject, key: str, where: str, *, max_length: int = MAX_ID) -> str | None:
    return optional_str(metadata, key, field_path(where, "metadata"), max_length=max_length)


def metadata_product_ref(metadata: JsonObject, where: str) -> str | None:
    for key in PRODUCT_METADATA_KEYS:
        value = metadata_value(metadata, key, where)
        if value is not None:
            return value
    return None


def make_customer(email: str | None, name: str | None, locale: str | None) -> Customer | None:
    if email is None and name is None and locale is None:
        return None
    return Customer(email=email, name=name, locale=locale)
