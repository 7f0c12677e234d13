"""Builders for "generic" gateway deliveries (see docs/gateways/generic.md).

Each builder returns the JSON document as a dict; ``signed`` turns one into the
body bytes and Standard Webhooks headers of a request.
"""

from __future__ import annotations

import json
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
