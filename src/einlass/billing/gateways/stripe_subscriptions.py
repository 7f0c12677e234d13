"""Stripe subscription events: the Subscription object, its invoices, and Checkout in subscription mode.

Stripe does not promise the order of deliveries, and every ``customer.subscription.*``
event carries the whole Subscription object. So each one becomes a SNAPSHOT fact
dated by the event's ``created``; the fold (``billing.subscriptions.rules``) reads
facts in time order, so an older object delivered after a newer one does not undo
it, and a redelivery (same event id) counts once.

* ``customer.subscription.created`` / ``.updated`` / ``.paused`` / ``.resumed`` -> SNAPSHOT:
  ``status`` as Stripe says it, ``period_end`` from ``current_period_end`` (on the
  object, or on its first item since API version 2025-03-31.basil), ``trial_end``,
  ``cancel_at_period_end``, ``cancel_at``, ``paused`` when ``pause_collection`` is
  set and ``resume_at`` from its ``resumes_at``; the plan is the first item's price
  id; amount ``unit_amount x quantity``, currency, interval ``recurring.interval x
  interval_count`` as ISO 8601 (``month`` x 1 -> ``P1M``).
* ``customer.subscription.deleted`` -> the same SNAPSHOT with status ``canceled``,
  dated ``ended_at`` (when it ended, which may be a moment before the event).
* ``invoice.paid`` for a subscription with ``amount_paid > 0`` -> a CONFIRMED payment
  and a PERIOD it pays, ending at the subscription line's ``period.end``. The payment
  is filed under the invoice's PaymentIntent, so ``charge.refunded`` and disputes of
  a renewal reach it; without one (basil and later, where the invoice no longer
  names it unless ``payments`` is included) under the invoice id. A zero invoice
  (trial start, full discount) moves no money: the snapshot carries that period.
* ``invoice.payment_failed`` -> RENEWAL_FAILED, once per invoice and attempt.
* ``checkout.session.completed`` in ``subscription`` mode -> CREATED, when the session
  names an order (``client_reference_id``) or a plan (metadata): it lets the order
  decide the plan and brings the customer's name and locale. A session that names
  neither adds nothing the subscription's own events do not, and is ignored.

The invoice's subscription is ``invoice.subscription`` (before basil) or
``invoice.parent.subscription_details.subscription``; a line's subscription and price
are ``line.subscription`` / ``line.price.id`` or ``line.parent.*_details.subscription``
/ ``line.pricing.price_details.price``. Both shapes are read.

Customer: a Subscription names only its customer id, so the email comes from the
invoice (``customer_email``, ``customer_name``) or from ``metadata["email"]`` on the
subscription if the merchant sets it. The order is ``metadata["order_no"]`` of the
subscription (Stripe copies it onto each invoice as ``subscription_details.metadata``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from einlass.billing.gateways.base import (
    FactKind,
    MalformedPayload,
    PaymentEvent,
    SubscriptionEvent,
)
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.gateways.stripe import (
    MAX_AMOUNT,
    MAX_EMAIL,
    MAX_NAME,
    MAX_ORDER_NO,
    OBJECT_PATH,
    ORDER_METADATA_KEY,
    Envelope,
    HandlerTable,
    JsonObject,
    checkout_customer,
    checkout_order_no,
    customer_text,
    field_path,
    is_int,
    json_type,
    make_customer,
    metadata_of,
    metadata_product_ref,
    metadata_value,
    optional_amount,
    optional_currency,
    optional_object,
    optional_str,
    optional_timestamp,
    reference,
    required_amount,
    required_str,
    show_value,
)

EMAIL_METADATA_KEY = "email"
# Statuses a deleted subscription keeps; any other word becomes ``canceled``.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
# Stripe bills at most every three years; the longest interval per unit.
INTERVAL_UNITS = {"day": ("D", 1095), "week": ("W", 156), "month": ("M", 36), "year": ("Y", 3)}
MAX_QUANTITY = 1_000_000
MAX_ATTEMPTS = 10_000


# --- customer.subscription.* -------------------------------------------------------------------


def _subscription_snapshot(subscription: JsonObject, envelope: Envelope) -> tuple[SubscriptionEvent, ...]:
    return (_snapshot(subscription, envelope, deleted=False),)


def _subscription_deleted(subscription: JsonObject, envelope: Envelope) -> tuple[SubscriptionEvent, ...]:
    return (_snapshot(subscription, envelope, deleted=True),)


def _snapshot(subscription: JsonObject, envelope: Envelope, *, deleted: bool) -> SubscriptionEvent:
    where = OBJECT_PATH
    status = required_str(subscription, "status", where)
    occurred_at = envelope.created
    if deleted:
        if status not in ENDED_STATUSES:
            status = "canceled"
        occurred_at = optional_timestamp(subscription, "ended_at", where) or occurred_at
    item = _first_item(subscription)
    price = _Price.of(item) if item is not None else _Price()
    pause = optional_object(subscription, "pause_collection", where)
    pause_path = field_path(where, "pause_collection")
    metadata = metadata_of(subscription, where)
    email = customer_text(metadata, EMAIL_METADATA_KEY, field_path(where, "metadata"), MAX_EMAIL)
    return SubscriptionEvent(
        kind=Kind.SNAPSHOT,
        subscription_ref=required_str(subscription, "id", where),
        fact_key=envelope.id,
        occurred_at=occurred_at,
        period_end=_current_period_end(subscription, item),
        trial_end=optional_timestamp(subscription, "trial_end", where),
        cancel_at=optional_timestamp(subscription, "cancel_at", where),
        cancel_at_period_end=optional_bool(subscription, "cancel_at_period_end", where),
        status=status,
        paused=pause is not None,
        resume_at=optional_timestamp(pause, "resumes_at", pause_path) if pause is not None else None,
        amount=price.amount,
        currency=optional_currency(subscription, where) or price.currency,
        interval=price.interval,
        order_no=metadata_value(metadata, ORDER_METADATA_KEY, where, max_length=MAX_ORDER_NO),
        product_ref=price.price_id,
        customer=make_customer(email, None, None),
    )


@dataclass(frozen=True)
class _Item:
    obj: JsonObject
    path: str


def _first_item(subscription: JsonObject) -> _Item | None:
    items = optional_object(subscription, "items", OBJECT_PATH)
    if items is None:
        return None
    entries = list_entries(items, "data", field_path(OBJECT_PATH, "items"))
    return _Item(*entries[0]) if entries else None


def _current_period_end(subscription: JsonObject, item: _Item | None) -> datetime | None:
    end = optional_timestamp(subscription, "current_period_end", OBJECT_PATH)
    if end is None and item is not None:
        end = optional_timestamp(item.obj, "current_period_end", item.path)
    return end


@dataclass(frozen=True)
class _Price:
    """What a subscription item's price says; each part may be missing."""

    price_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    interval: str | None = None

    @classmethod
    def of(cls, item: _Item) -> _Price:
        price_id = reference(item.obj, "price", item.path)
        price = item.obj.get("price")
        if not isinstance(price, dict):
            return cls(price_id)
        path = field_path(item.path, "price")
        unit_amount = optional_amount(price, "unit_amount", path)
        quantity = optional_count(item.obj, "quantity", item.path, maximum=MAX_QUANTITY)
        amount = None
        if unit_amount is not None:
            amount = unit_amount * (1 if quantity is None else quantity)
            if amount > MAX_AMOUNT:
                raise MalformedPayload(
                    f"field {field_path(item.path, 'quantity')!r} times the unit amount exceeds "
                    f"{MAX_AMOUNT} minor units"
                )
        return cls(price_id, amount, optional_currency(price, path), _interval(price, path))


def _interval(price: JsonObject, where: str) -> str | None:
    """``recurring.interval`` x ``interval_count`` as an ISO 8601 duration."""
    recurring = optional_object(price, "recurring", where)
    if recurring is None:
        return None
    path = field_path(where, "recurring")
    unit = optional_str(recurring, "interval", path)
    if unit is None:
        return None
    if unit not in INTERVAL_UNITS:
        raise MalformedPayload(
            f"field {field_path(path, 'interval')!r} must be one of {', '.join(INTERVAL_UNITS)}, "
            f"got {show_value(unit)}"
        )
    designator, longest = INTERVAL_UNITS[unit]
    count = optional_count(recurring, "interval_count", path, maximum=longest)
    if count == 0:
        raise MalformedPayload(f"field {field_path(path, 'interval_count')!r} must be at least 1")
    return f"P{count or 1}{designator}"


# --- invoices ----------------------------------------------------------------------------------


def _invoice_paid(invoice: JsonObject, envelope: Envelope) -> tuple[PaymentEvent | SubscriptionEvent, ...]:
    subscription_ref = _invoice_subscription(invoice)
    if subscription_ref is None:
        return ()  # a one-off invoice, not a subscription's
    invoice_id = required_str(invoice, "id", OBJECT_PATH)
    amount_paid = required_amount(invoice, "amount_paid", OBJECT_PATH)
    if amount_paid == 0:
        return ()
    payment_ref = _invoice_payment_intent(invoice) or invoice_id
    line = _subscription_line(invoice, subscription_ref)
    currency = optional_currency(invoice, OBJECT_PATH)
    order_no = _invoice_order_no(invoice)
    customer = make_customer(
        customer_text(invoice, "customer_email", OBJECT_PATH, MAX_EMAIL),
        customer_text(invoice, "customer_name", OBJECT_PATH, MAX_NAME),
        None,
    )
    payment = PaymentEvent(
        fact=FactKind.CONFIRMED,
        payment_ref=payment_ref,
        # The key payment_intent.succeeded uses too: the same payment confirms once.
        fact_key=FactKind.CONFIRMED.value,
        amount=amount_paid,
        currency=currency,
        order_no=order_no,
        product_ref=line.price_id,
        customer=customer,
        occurred_at=envelope.created,
        subscription_ref=subscription_ref,
    )
    period = SubscriptionEvent(
        kind=Kind.PERIOD,
        subscription_ref=subscription_ref,
        fact_key=f"period:{invoice_id}",
        occurred_at=envelope.created,
        payment_ref=payment_ref,
        period_end=line.period_end,
        amount=line.amount,
        currency=currency,
        interval=line.interval,
        order_no=order_no,
        product_ref=line.price_id,
        customer=customer,
    )
    return (payment, period)


def _invoice_payment_failed(invoice: JsonObject, envelope: Envelope) -> tuple[SubscriptionEvent, ...]:
    subscription_ref = _invoice_subscription(invoice)
    if subscription_ref is None:
        return ()
    invoice_id = required_str(invoice, "id", OBJECT_PATH)
    # Each retry of the same invoice is a failure of its own.
    attempt = optional_count(invoice, "attempt_count", OBJECT_PATH, maximum=MAX_ATTEMPTS) or 0
    return (
        SubscriptionEvent(
            kind=Kind.RENEWAL_FAILED,
            subscription_ref=subscription_ref,
            fact_key=f"renewal_failed:{invoice_id}:{attempt}",
            occurred_at=envelope.created,
        ),
    )


def _invoice_subscription(invoice: JsonObject) -> str | None:
    subscription = reference(invoice, "subscription", OBJECT_PATH)
    if subscription is not None:
        return subscription
    details = _parent_subscription_details(invoice)
    if details is None:
        return None
    return reference(details, "subscription", field_path(OBJECT_PATH, "parent.subscription_details"))


def _parent_subscription_details(invoice: JsonObject) -> JsonObject | None:
    parent = optional_object(invoice, "parent", OBJECT_PATH)
    if parent is None:
        return None
    return optional_object(parent, "subscription_details", field_path(OBJECT_PATH, "parent"))


def _invoice_payment_intent(invoice: JsonObject) -> str | None:
    """The invoice's PaymentIntent: ``payment_intent``, or the paid one of ``payments`` (basil)."""
    intent = reference(invoice, "payment_intent", OBJECT_PATH)
    if intent is not None:
        return intent
    payments = optional_object(invoice, "payments", OBJECT_PATH)
    if payments is None:
        return None
    found: list[tuple[bool, str]] = []
    for entry, path in list_entries(payments, "data", field_path(OBJECT_PATH, "payments")):
        payment = optional_object(entry, "payment", path)
        if payment is None or payment.get("type") != "payment_intent":
            continue
        intent = reference(payment, "payment_intent", field_path(path, "payment"))
        if intent is not None:
            found.append((optional_str(entry, "status", path) == "paid", intent))
    paid_first = sorted(found, key=lambda candidate: not candidate[0])
    return paid_first[0][1] if paid_first else None


def _invoice_order_no(invoice: JsonObject) -> str | None:
    """``metadata["order_no"]`` of the subscription as the invoice copied it, else of the invoice."""
    details = optional_object(invoice, "subscription_details", OBJECT_PATH)
    where = field_path(OBJECT_PATH, "subscription_details")
    if details is None:
        details = _parent_subscription_details(invoice)
        where = field_path(OBJECT_PATH, "parent.subscription_details")
    for obj, path in ((details, where), (invoice, OBJECT_PATH)):
        if obj is not None:
            order_no = metadata_value(
                metadata_of(obj, path), ORDER_METADATA_KEY, path, max_length=MAX_ORDER_NO
            )
            if order_no is not None:
                return order_no
    return None


@dataclass(frozen=True)
class _Line:
    price_id: str | None = None
    period_end: datetime | None = None
    amount: int | None = None  # only for a regular (non-proration) line
    interval: str | None = None


def _subscription_line(invoice: JsonObject, subscription_ref: str) -> _Line:
    """The invoice line that bills the subscription's period; prorations only when nothing else."""
    lines = optional_object(invoice, "lines", OBJECT_PATH)
    if lines is None:
        return _Line()
    prorations: list[tuple[JsonObject, str]] = []
    for line, path in list_entries(lines, "data", field_path(OBJECT_PATH, "lines")):
        owner, proration = _line_owner(line, path)
        if owner != subscription_ref:
            continue
        if not proration:
            return _read_line(line, path, regular=True)
        prorations.append((line, path))
    return _read_line(*prorations[0], regular=False) if prorations else _Line()


def _line_owner(line: JsonObject, path: str) -> tuple[str | None, bool]:
    """(subscription, is a proration) of a line, in either API shape."""
    parent = optional_object(line, "parent", path)
    if parent is not None:
        parent_path = field_path(path, "parent")
        for kind in ("subscription_item_details", "invoice_item_details"):
            details = optional_object(parent, kind, parent_path)
            if details is not None:
                details_path = field_path(parent_path, kind)
                return (
                    optional_str(details, "subscription", details_path),
                    optional_bool(details, "proration", details_path),
                )
        return None, False
    return optional_str(line, "subscription", path), optional_bool(line, "proration", path)


def _read_line(line: JsonObject, path: str, *, regular: bool) -> _Line:
    price_id = reference(line, "price", path)
    interval = None
    price = line.get("price")
    if isinstance(price, dict):
        interval = _interval(price, field_path(path, "price"))
    else:
        pricing = optional_object(line, "pricing", path)
        details = optional_object(pricing, "price_details", field_path(path, "pricing")) if pricing else None
        if details is not None:
            price_id = reference(details, "price", field_path(path, "pricing.price_details"))
    period = optional_object(line, "period", path)
    period_end = optional_timestamp(period, "end", field_path(path, "period")) if period else None
    # A proration line's amount is a part (or a negative credit), not the price of a period.
    amount = optional_amount(line, "amount", path) if regular else None
    return _Line(price_id, period_end, amount, interval if regular else None)


# --- Checkout in subscription mode -------------------------------------------------------------


def _checkout_subscription_started(session: JsonObject, envelope: Envelope) -> tuple[SubscriptionEvent, ...]:
    if required_str(session, "mode", OBJECT_PATH) != "subscription":
        return ()
    subscription_ref = reference(session, "subscription", OBJECT_PATH)
    if subscription_ref is None:
        return ()
    metadata = metadata_of(session, OBJECT_PATH)
    order_no = checkout_order_no(session, metadata)
    product_ref = metadata_product_ref(metadata, OBJECT_PATH)
    if order_no is None and product_ref is None:
        # Nothing to find a plan by: opening the subscription here could only fail;
        # its own events (which name the price) open it.
        return ()
    return (
        SubscriptionEvent(
            kind=Kind.CREATED,
            subscription_ref=subscription_ref,
            fact_key=f"checkout:{required_str(session, 'id', OBJECT_PATH)}",
            occurred_at=envelope.created,
            order_no=order_no,
            product_ref=product_ref,
            customer=checkout_customer(session),
        ),
    )


SUBSCRIPTION_HANDLERS: HandlerTable = {
    "customer.subscription.created": ("subscription", (_subscription_snapshot,)),
    "customer.subscription.updated": ("subscription", (_subscription_snapshot,)),
    "customer.subscription.paused": ("subscription", (_subscription_snapshot,)),
    "customer.subscription.resumed": ("subscription", (_subscription_snapshot,)),
    "customer.subscription.deleted": ("subscription", (_subscription_deleted,)),
    "invoice.paid": ("invoice", (_invoice_paid,)),
    "invoice.payment_failed": ("invoice", (_invoice_payment_failed,)),
    "checkout.session.completed": ("checkout.session", (_checkout_subscription_started,)),
}


# --- field access (besides stripe.py's) --------------------------------------------------------


def optional_bool(obj: JsonObject, key: str, where: str) -> bool:
    """A boolean; missing or null is False."""
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise MalformedPayload(f"field {field_path(where, key)!r} must be a boolean, got {json_type(value)}")
    return value


def optional_count(obj: JsonObject, key: str, where: str, *, maximum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not is_int(value):
        raise MalformedPayload(f"field {field_path(where, key)!r} must be an integer, got {json_type(value)}")
    if not 0 <= value <= maximum:
        raise MalformedPayload(f"field {field_path(where, key)!r} must be between 0 and {maximum}")
    return int(value)


def list_entries(obj: JsonObject, key: str, where: str) -> list[tuple[JsonObject, str]]:
    """The objects of a Stripe list's ``data`` array, each with its path."""
    value = obj.get(key)
    path = field_path(where, key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"field {path!r} must be an array, got {json_type(value)}")
    entries = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise MalformedPayload(f"field '{path}.{index}' must be a JSON object, got {json_type(entry)}")
        entries.append((entry, f"{path}.{index}"))
    return entries
