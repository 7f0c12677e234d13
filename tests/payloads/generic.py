"""Builders for "generic" gateway deliveries (see docs/gateways/generic.md).

Each builder returns the JSON document as a dict; ``signed`` turns one into the
body bytes and Standard Webhooks headers of a request.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from einlass import standard_webhooks

DEFAULT_TIMESTAMP = "2026-01-01T00:00:00Z"


def event(type: str, timestamp: str = DEFAULT_TIMESTAMP, **data: Any) -> dict[str, Any]:
    """``{"type": type, "timestamp": timestamp, "data": data}``; None values are left out of data."""
    return {
        "type": type,
        "timestamp": timestamp,
        "data": {key: value for key, value in data.items() if value is not None},
    }


def customer(
    email: str | None = None, name: str | None = None, locale: str | None = None
) -> dict[str, str] | None:
    fields = {"email": email, "name": name, "locale": locale}
    present = {key: value for key, value in fields.items() if value is not None}
    return present or None


def payment_pending(
    payment_id: str,
    *,
    amount: int,
    currency: str = "EUR",
    email: str | None = None,
    order_no: str | None = None,
    product_id: str | None = None,
    name: str | None = None,
    locale: str | None = None,
) -> dict[str, Any]:
    return event(
        "payment.pending",
        payment_id=payment_id,
        amount=amount,
        currency=currency,
        order_no=order_no,
        product_id=product_id,
        customer=customer(email, name, locale),
    )


def payment_confirmed(
    payment_id: str,
    *,
    amount: int,
    email: str,
    currency: str = "EUR",
    order_no: str | None = None,
    product_id: str | None = None,
    name: str | None = None,
    locale: str | None = None,
) -> dict[str, Any]:
    return event(
        "payment.confirmed",
        payment_id=payment_id,
        amount=amount,
        currency=currency,
        order_no=order_no,
        product_id=product_id,
        customer=customer(email, name, locale),
    )


def payment_failed(
    payment_id: str,
    *,
    amount: int | None = None,
    currency: str | None = None,
    email: str | None = None,
    order_no: str | None = None,
    product_id: str | None = None,
) -> dict[str, Any]:
    if amount is not None and currency is None:
        currency = "EUR"
    return event(
        "payment.failed",
        payment_id=payment_id,
        amount=amount,
        currency=currency,
        order_no=order_no,
        product_id=product_id,
        customer=customer(email),
    )


def payment_refunded(
    payment_id: str, *, refund_id: str, amount: int, currency: str = "EUR"
) -> dict[str, Any]:
    return event(
        "payment.refunded", payment_id=payment_id, refund_id=refund_id, amount=amount, currency=currency
    )


def payment_chargeback(
    payment_id: str, *, chargeback_id: str, amount: int, currency: str = "EUR"
) -> dict[str, Any]:
    return event(
        "payment.chargeback",
        payment_id=payment_id,
        chargeback_id=chargeback_id,
        amount=amount,
        currency=currency,
    )


def payment_chargeback_reversed(
    payment_id: str, *, chargeback_id: str, amount: int, currency: str = "EUR"
) -> dict[str, Any]:
    return event(
        "payment.chargeback_reversed",
        payment_id=payment_id,
        chargeback_id=chargeback_id,
        amount=amount,
        currency=currency,
    )


# Subscription events. ``at`` is the fact's time (a datetime or an ISO string);
# None fields are left out, so each builder sends only what a test names.

When = datetime | str


def _iso(value: When | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def subscription_event(
    type: str, subscription_id: str, at: When = DEFAULT_TIMESTAMP, **data: Any
) -> dict[str, Any]:
    """A ``subscription.*`` document; datetimes in ``data`` become ISO strings."""
    fields = {key: _iso(value) if isinstance(value, datetime) else value for key, value in data.items()}
    timestamp = _iso(at)
    assert timestamp is not None
    return event(type, timestamp, subscription_id=subscription_id, **fields)


def subscription_created(
    subscription_id: str,
    *,
    at: When = DEFAULT_TIMESTAMP,
    product_id: str | None = None,
    payment_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    interval: str | None = None,
    trial_end: When | None = None,
    period_end: When | None = None,
    order_no: str | None = None,
    email: str | None = None,
    name: str | None = None,
    locale: str | None = None,
) -> dict[str, Any]:
    if amount is not None and currency is None:
        currency = "EUR"
    return subscription_event(
        "subscription.created",
        subscription_id,
        at,
        product_id=product_id,
        payment_id=payment_id,
        amount=amount,
        currency=currency,
        interval=interval,
        trial_end=trial_end,
        period_end=period_end,
        order_no=order_no,
        customer=customer(email, name, locale),
    )


def subscription_renewed(
    subscription_id: str,
    payment_id: str,
    *,
    at: When = DEFAULT_TIMESTAMP,
    amount: int | None = None,
    currency: str | None = None,
    period_end: When | None = None,
    product_id: str | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    if amount is not None and currency is None:
        currency = "EUR"
    return subscription_event(
        "subscription.renewed",
        subscription_id,
        at,
        payment_id=payment_id,
        amount=amount,
        currency=currency,
        period_end=period_end,
        product_id=product_id,
        customer=customer(email),
    )


def subscription_renewal_failed(
    subscription_id: str, *, at: When = DEFAULT_TIMESTAMP, payment_id: str | None = None
) -> dict[str, Any]:
    return subscription_event("subscription.renewal_failed", subscription_id, at, payment_id=payment_id)


def subscription_paused(
    subscription_id: str, *, at: When = DEFAULT_TIMESTAMP, resume_at: When | None = None
) -> dict[str, Any]:
    return subscription_event("subscription.paused", subscription_id, at, resume_at=resume_at)


def subscription_resumed(
    subscription_id: str, *, at: When = DEFAULT_TIMESTAMP, period_end: When | None = None
) -> dict[str, Any]:
    return subscription_event("subscription.resumed", subscription_id, at, period_end=period_end)


def subscription_updated(
    subscription_id: str,
    *,
    at: When = DEFAULT_TIMESTAMP,
    amount: int | None = None,
    currency: str | None = None,
    interval: str | None = None,
    period_end: When | None = None,
    cancel_at_period_end: bool | None = None,
) -> dict[str, Any]:
    if amount is not None and currency is None:
        currency = "EUR"
    return subscription_event(
        "subscription.updated",
        subscription_id,
        at,
        amount=amount,
        currency=currency,
        interval=interval,
        period_end=period_end,
        cancel_at_period_end=cancel_at_period_end,
    )


def subscription_cancelled(
    subscription_id: str,
    *,
    at: When = DEFAULT_TIMESTAMP,
    at_period_end: bool | None = None,
    cancel_at: When | None = None,
) -> dict[str, Any]:
    return subscription_event(
        "subscription.cancelled", subscription_id, at, at_period_end=at_period_end, cancel_at=cancel_at
    )


def subscription_plan_changed(
    subscription_id: str, product_id: str, *, at: When = DEFAULT_TIMESTAMP, at_period_end: bool | None = None
) -> dict[str, Any]:
    return subscription_event(
        "subscription.plan_changed", subscription_id, at, product_id=product_id, at_period_end=at_period_end
    )


def encode(payload: dict[str, Any]) -> bytes:
    """Minified JSON, as a sender would put it on the wire."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signed(payload: dict[str, Any], secret: str, msg_id: str, timestamp: int) -> tuple[bytes, dict[str, str]]:
    """The body bytes and headers of a signed delivery of ``payload``."""
    body = encode(payload)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_webhooks.sign(secret, msg_id, timestamp, body),
    }
    return body, headers
