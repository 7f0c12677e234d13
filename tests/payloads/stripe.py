"""Builders for Stripe webhook deliveries in Stripe's wire format.

Each builder returns a complete Event object (``object: "event"``, ``api_version``,
``pending_webhooks``, ``request``, ``data.object`` ...) shaped like what Stripe
sends for API version ``API_VERSION``, with a full-looking inner object. Ids
not passed in are derived deterministically from the given ones, so a builder
called twice with the same arguments returns the same event.

``signed`` serialises an event the way Stripe does (indented JSON) and signs it
with the documented ``Stripe-Signature`` scheme, computed here independently of
the adapter under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

API_VERSION = "2024-06-20"
# The version that moved current_period_* onto subscription items and replaced
# invoice.subscription / payment_intent and line.price by parent and pricing objects.
BASIL = "2025-03-31.basil"
# 2026-01-01T00:00:00Z, the start of einlass's FrozenClock.
DEFAULT_CREATED = 1_767_225_600

_ALPHABET = string.digits + string.ascii_letters


def fake_id(prefix: str, *seed: object, length: int = 24) -> str:
    """A Stripe-looking id (``pi_3Q...``), stable for the same prefix and seed."""
    digest = hashlib.sha256(":".join([prefix, *map(str, seed)]).encode()).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return f"{prefix}_{''.join(chars)}"


def envelope(
    event_id: str,
    event_type: str,
    obj: Mapping[str, Any],
    *,
    created: int = DEFAULT_CREATED,
    previous_attributes: Mapping[str, Any] | None = None,
    api_request: bool = False,
    api_version: str = API_VERSION,
) -> dict[str, Any]:
    """Wrap ``obj`` in a Stripe Event (snapshot payload, as sent to webhook endpoints)."""
    data: dict[str, Any] = {"object": dict(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = dict(previous_attributes)
    request: dict[str, Any] = {"id": None, "idempotency_key": None}
    if api_request:
        request = {
            "id": fake_id("req", event_id, length=14),
            "idempotency_key": str(
                uuid.UUID(bytes=hashlib.sha256(event_id.encode()).digest()[:16], version=4)
            ),
        }
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": request,
        "type": event_type,
    }


def unknown_event(event_id: str, event_type: str = "customer.created") -> dict[str, Any]:
    """An event einlass does not act on (a Customer object)."""
    customer = {
        "id": fake_id("cus", event_id, length=14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": DEFAULT_CREATED,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": "erika@example.com",
        "invoice_prefix": "7D2F1A3C",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": "Erika Mustermann",
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": ["de"],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    return envelope(event_id, event_type, customer)


# --- Checkout Sessions --------------------------------------------------------------------------


def _checkout_session(
    *,
    session_id: str,
    payment_intent: str | None,
    amount: int,
    email: str,
    currency: str,
    order_no: str | None,
    payment_status: str,
    name: str,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": "https://shop.example.com/cancel",
        "client_reference_id": order_no,
        "client_secret": None,
        "consent": None,
        "consent_collection": None,
        "created": DEFAULT_CREATED - 120,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_creation": "if_required",
        "customer_details": {
            "address": {
                "city": "Berlin",
                "country": "DE",
                "line1": "Musterstraße 12",
                "line2": None,
                "postal_code": "10115",
                "state": None,
            },
            "email": email,
            "name": name,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "customer_email": None,
        "expires_at": DEFAULT_CREATED - 120 + 86_400,
        "invoice": None,
        "invoice_creation": {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        "livemode": False,
        "locale": None,
        "metadata": dict(metadata or {}),
        "mode": "payment",
        "payment_intent": payment_intent,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card", "sepa_debit"],
        "payment_status": payment_status,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_details": None,
        "shipping_options": [],
        "status": "complete",
        "submit_type": None,
        "subscription": None,
        "success_url": "https://shop.example.com/thanks?session_id={CHECKOUT_SESSION_ID}",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": None,
    }


def _checkout_event(
    event_type: str,
    event_id: str,
    *,
    payment_intent: str | None,
    amount: int,
    email: str,
    currency: str,
    order_no: str | None,
    payment_status: str,
    name: str,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    session = _checkout_session(
        session_id="cs_test_" + fake_id("a1", payment_intent, length=56)[3:],
        payment_intent=payment_intent,
        amount=amount,
        email=email,
        currency=currency,
        order_no=order_no,
        payment_status=payment_status,
        name=name,
        metadata=metadata,
    )
    return envelope(event_id, event_type, session)


def checkout_session_completed(
    event_id: str,
    *,
    payment_intent: str | None,
    amount: int,
    email: str,
    currency: str = "eur",
    order_no: str | None = None,
    payment_status: str = "paid",
    name: str = "Erika Mustermann",
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``checkout.session.completed`` for a payment-mode session.

    ``order_no`` becomes ``client_reference_id``; ``payment_status="unpaid"`` is a
    delayed method (SEPA debit, ...) whose money has not arrived yet.
    """
    return _checkout_event(
        "checkout.session.completed",
        event_id,
        payment_intent=payment_intent,
        amount=amount,
        email=email,
        currency=currency,
        order_no=order_no,
        payment_status=payment_status,
        name=name,
        metadata=metadata,
    )


def checkout_session_async_payment_succeeded(
    event_id: str,
    *,
    payment_intent: str,
    amount: int,
    email: str,
    currency: str = "eur",
    order_no: str | None = None,
    name: str = "Erika Mustermann",
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The delayed payment of a completed session arrived."""
    return _checkout_event(
        "checkout.session.async_payment_succeeded",
        event_id,
        payment_intent=payment_intent,
        amount=amount,
        email=email,
        currency=currency,
        order_no=order_no,
        payment_status="paid",
        name=name,
        metadata=metadata,
    )


def checkout_session_async_payment_failed(
    event_id: str,
    *,
    payment_intent: str,
    amount: int,
    email: str,
    currency: str = "eur",
    order_no: str | None = None,
    name: str = "Erika Mustermann",
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The delayed payment of a completed session failed."""
    return _checkout_event(
        "checkout.session.async_payment_failed",
        event_id,
        payment_intent=payment_intent,
        amount=amount,
        email=email,
        currency=currency,
        order_no=order_no,
        payment_status="unpaid",
        name=name,
        metadata=metadata,
    )


# --- PaymentIntents -----------------------------------------------------------------------------


def _payment_intent(
    *,
    payment_intent: str,
    amount: int,
    currency: str,
    email: str | None,
    order_no: str | None,
    metadata: Mapping[str, str] | None,
    succeeded: bool,
) -> dict[str, Any]:
    full_metadata = dict(metadata or {})
    if order_no is not None:
        full_metadata["order_no"] = order_no
    charge_id = fake_id("ch", payment_intent)
    payment_method = fake_id("pm", payment_intent)
    last_payment_error = None
    if not succeeded:
        last_payment_error = {
            "charge": charge_id,
            "code": "card_declined",
            "decline_code": "generic_decline",
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "message": "Your card was declined.",
            "payment_method": {
                "id": payment_method,
                "object": "payment_method",
                "billing_details": {"address": None, "email": email, "name": None, "phone": None},
                "card": {
                    "brand": "visa",
                    "country": "DE",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "last4": "0002",
                },
                "created": DEFAULT_CREATED - 30,
                "customer": None,
                "livemode": False,
                "metadata": {},
                "type": "card",
            },
            "type": "card_error",
        }
    return {
        "id": payment_intent,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if succeeded else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{payment_intent}_secret_{fake_id('s', payment_intent)[2:]}",
        "confirmation_method": "automatic",
        "created": DEFAULT_CREATED - 60,
        "currency": currency,
        "customer": None,
        "description": None,
        "invoice": None,
        "last_payment_error": last_payment_error,
        "latest_charge": charge_id,
        "livemode": False,
        "metadata": full_metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method if succeeded else None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": email,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded" if succeeded else "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }


def payment_intent_succeeded(
    event_id: str,
    *,
    payment_intent: str,
    amount: int,
    currency: str = "eur",
    email: str | None = None,
    order_no: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``payment_intent.succeeded``; ``order_no`` goes into ``metadata["order_no"]``."""
    intent = _payment_intent(
        payment_intent=payment_intent,
        amount=amount,
        currency=currency,
        email=email,
        order_no=order_no,
        metadata=metadata,
        succeeded=True,
    )
    return envelope(event_id, "payment_intent.succeeded", intent)


def payment_intent_payment_failed(
    event_id: str,
    *,
    payment_intent: str,
    amount: int,
    currency: str = "eur",
    email: str | None = None,
    order_no: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``payment_intent.payment_failed`` after a declined card."""
    intent = _payment_intent(
        payment_intent=payment_intent,
        amount=amount,
        currency=currency,
        email=email,
        order_no=order_no,
        metadata=metadata,
        succeeded=False,
    )
    return envelope(event_id, "payment_intent.payment_failed", intent)


# --- Charges ------------------------------------------------------------------------------------


def charge_refunded(
    event_id: str,
    *,
    payment_intent: str | None,
    charge_id: str,
    amount: int,
    amount_refunded: int,
    currency: str = "eur",
) -> dict[str, Any]:
    """``charge.refunded``; ``amount_refunded`` is the cumulative total so far.

    ``payment_intent=None`` is a legacy charge created without a PaymentIntent.
    """
    charge = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": fake_id("txn", charge_id),
        "billing_details": {
            "address": {
                "city": None,
                "country": "DE",
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": "erika@example.com",
            "name": "Erika Mustermann",
            "phone": None,
        },
        "calculated_statement_descriptor": "EXAMPLE SHOP",
        "captured": True,
        "created": DEFAULT_CREATED - 86_400,
        "currency": currency,
        "customer": None,
        "description": None,
        "destination": None,
        "dispute": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "order": None,
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 21,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": fake_id("pm", charge_id),
        "payment_method_details": {
            "card": {
                "amount_authorized": amount,
                "brand": "visa",
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": "DE",
                "exp_month": 12,
                "exp_year": 2030,
                "fingerprint": fake_id("fp", charge_id, length=16)[3:],
                "funding": "credit",
                "last4": "4242",
                "network": "visa",
                "three_d_secure": None,
                "wallet": None,
            },
            "type": "card",
        },
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{fake_id('CAcQARoX', charge_id, length=40)}",
        "refunded": amount_refunded >= amount,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    return envelope(event_id, "charge.refunded", charge, api_request=True)


# --- Disputes -----------------------------------------------------------------------------------


def _balance_transaction(dispute_id: str, charge_id: str, amount: int, currency: str) -> dict[str, Any]:
    withdrawal = amount < 0
    return {
        "id": fake_id("txn", dispute_id, amount),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": DEFAULT_CREATED + 2 * 86_400,
        "created": DEFAULT_CREATED,
        "currency": currency,
        "description": f"Chargeback {'withdrawal' if withdrawal else 'reversal'} for {charge_id}",
        "exchange_rate": None,
        "fee": 2000 if withdrawal else -2000,
        "fee_details": [
            {
                "amount": 2000 if withdrawal else -2000,
                "application": None,
                "currency": currency,
                "description": "Dispute fee",
                "type": "stripe_fee",
            }
        ],
        "net": amount - 2000 if withdrawal else amount + 2000,
        "reporting_category": "dispute" if withdrawal else "dispute_reversal",
        "source": dispute_id,
        "status": "pending",
        "type": "adjustment",
    }


def _dispute(
    *,
    dispute_id: str,
    payment_intent: str | None,
    charge_id: str,
    amount: int,
    currency: str,
    status: str,
) -> dict[str, Any]:
    inquiry = status.startswith("warning_")
    transactions: list[dict[str, Any]] = []
    if not inquiry:
        transactions.append(_balance_transaction(dispute_id, charge_id, -amount, currency))
        if status == "won":
            transactions.append(_balance_transaction(dispute_id, charge_id, amount, currency))
    submitted = status in {"under_review", "won", "lost", "warning_under_review"}
    evidence_fields = [
        "access_activity_log",
        "billing_address",
        "cancellation_policy",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_communication",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "customer_signature",
        "duplicate_charge_documentation",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "receipt",
        "refund_policy",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "service_documentation",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_documentation",
        "shipping_tracking_number",
        "uncategorized_file",
        "uncategorized_text",
    ]
    evidence: dict[str, Any] = dict.fromkeys(evidence_fields)
    if submitted:
        evidence["customer_email_address"] = "erika@example.com"
        evidence["product_description"] = "Membership, members area access"
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": transactions,
        "charge": charge_id,
        "created": DEFAULT_CREATED - 3_600,
        "currency": currency,
        "evidence": evidence,
        "evidence_details": {
            "due_by": DEFAULT_CREATED + 14 * 86_400,
            "has_evidence": submitted,
            "past_due": False,
            "submission_count": 1 if submitted else 0,
        },
        "is_charge_refundable": inquiry,
        "livemode": False,
        "metadata": {},
        "network_reason_code": "10.4",
        "payment_intent": payment_intent,
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": "10.4",
            },
            "type": "card",
        },
        "reason": "fraudulent",
        "status": status,
    }


def dispute_created(
    event_id: str,
    *,
    dispute_id: str,
    payment_intent: str | None,
    charge_id: str,
    amount: int,
    currency: str = "eur",
) -> dict[str, Any]:
    """``charge.dispute.created`` for a chargeback (funds withdrawn, ``needs_response``)."""
    dispute = _dispute(
        dispute_id=dispute_id,
        payment_intent=payment_intent,
        charge_id=charge_id,
        amount=amount,
        currency=currency,
        status="needs_response",
    )
    return envelope(event_id, "charge.dispute.created", dispute)


def dispute_inquiry_created(
    event_id: str,
    *,
    dispute_id: str,
    payment_intent: str | None,
    charge_id: str,
    amount: int,
    currency: str = "eur",
) -> dict[str, Any]:
    """``charge.dispute.created`` for an inquiry (``warning_needs_response``, no money moved)."""
    dispute = _dispute(
        dispute_id=dispute_id,
        payment_intent=payment_intent,
        charge_id=charge_id,
        amount=amount,
        currency=currency,
        status="warning_needs_response",
    )
    return envelope(event_id, "charge.dispute.created", dispute)


def dispute_funds_withdrawn(
    event_id: str,
    *,
    dispute_id: str,
    payment_intent: str | None,
    charge_id: str,
    amount: int,
    currency: str = "eur",
) -> dict[str, Any]:
    """``charge.dispute.funds_withdrawn``: the disputed amount left the balance."""
    dispute = _dispute(
        dispute_id=dispute_id,
        payment_intent=payment_intent,
        charge_id=charge_id,
        amount=amount,
        currency=currency,
        status="needs_response",
    )
    return envelope(event_id, "charge.dispute.funds_withdrawn", dispute)


def dispute_closed(
    event_id: str,
    *,
    dispute_id: str,
    payment_intent: str | None,
    charge_id: str,
    amount: int,
    status: str = "won",
    currency: str = "eur",
) -> dict[str, Any]:
    """``charge.dispute.closed`` with the final ``status`` (won, lost, warning_closed, ...)."""
    dispute = _dispute(
        dispute_id=dispute_id,
        payment_intent=payment_intent,
        charge_id=charge_id,
        amount=amount,
        currency=currency,
        status=status,
    )
    previous = "warning_under_review" if status.startswith("warning_") else "under_review"
    return envelope(event_id, "charge.dispute.closed", dispute, previous_attributes={"status": previous})


# --- Subscriptions ------------------------------------------------------------------------------
#
# Shapes for API_VERSION (2024-06-20) and, with ``basil=True``, for BASIL: the
# subscription's period lives on its items, an invoice names its subscription in
# ``parent.subscription_details`` and no longer names its PaymentIntent, and a line
# names its price in ``pricing.price_details`` and its subscription in ``parent``.

DAY = 86_400


def _price(
    price: str, *, unit_amount: int, currency: str, interval: str, interval_count: int
) -> dict[str, Any]:
    return {
        "id": price,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": DEFAULT_CREATED - 90 * DAY,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": fake_id("prod", price, length=14),
        "recurring": {
            "aggregate_usage": None,
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def subscription(
    subscription_id: str,
    *,
    period_start: int,
    period_end: int,
    status: str = "active",
    price: str = "price_monthly",
    unit_amount: int = 990,
    currency: str = "eur",
    interval: str = "month",
    interval_count: int = 1,
    quantity: int = 1,
    created: int | None = None,
    trial_end: int | None = None,
    cancel_at_period_end: bool = False,
    cancel_at: int | None = None,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    paused: bool = False,
    resumes_at: int | None = None,
    metadata: Mapping[str, str] | None = None,
    basil: bool = False,
) -> dict[str, Any]:
    """A Subscription object with one item; ``paused`` sets ``pause_collection`` (behavior void)."""
    start = period_start if created is None else created
    item: dict[str, Any] = {
        "id": fake_id("si", subscription_id, length=14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": start,
        "discounts": [],
        "metadata": {},
        "price": _price(
            price,
            unit_amount=unit_amount,
            currency=currency,
            interval=interval,
            interval_count=interval_count,
        ),
        "quantity": quantity,
        "subscription": subscription_id,
        "tax_rates": [],
    }
    obj: dict[str, Any] = {
        "id": subscription_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": start,
        "billing_cycle_anchor_config": None,
        "billing_thresholds": None,
        "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": start,
        "currency": currency,
        "customer": fake_id("cus", subscription_id, length=14),
        "days_until_due": None,
        "default_payment_method": fake_id("pm", subscription_id),
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discount": None,
        "discounts": [],
        "ended_at": ended_at,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [item],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={subscription_id}",
        },
        "latest_invoice": fake_id("in", subscription_id, period_start),
        "livemode": False,
        "metadata": dict(metadata or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": {"behavior": "void", "resumes_at": resumes_at} if paused else None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None if trial_end is None else start,
    }
    if basil:
        item.update(current_period_start=period_start, current_period_end=period_end)
    else:
        obj.update(current_period_start=period_start, current_period_end=period_end, quantity=quantity)
    return obj


def subscription_event(
    event_id: str,
    event_type: str,
    obj: Mapping[str, Any],
    *,
    created: int = DEFAULT_CREATED,
    previous_attributes: Mapping[str, Any] | None = None,
    basil: bool = False,
) -> dict[str, Any]:
    """``customer.subscription.created`` / ``.updated`` / ``.deleted`` ... around a Subscription."""
    return envelope(
        event_id,
        event_type,
        obj,
        created=created,
        previous_attributes=previous_attributes,
        api_version=BASIL if basil else API_VERSION,
    )


def _invoice_line(
    invoice_id: str,
    *,
    subscription_id: str,
    price: str,
    amount: int,
    currency: str,
    period_start: int,
    period_end: int,
    basil: bool,
) -> dict[str, Any]:
    item_id = fake_id("si", subscription_id, length=14)
    line: dict[str, Any] = {
        "id": fake_id("il", invoice_id),
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": f"1 \u00d7 Membership (at {amount / 100:.2f} {currency.upper()} / month)",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "period": {"end": period_end, "start": period_start},
        "quantity": 1,
    }
    if basil:
        line["parent"] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
                "subscription_item": item_id,
            },
        }
        line["pricing"] = {
            "type": "price_details",
            "price_details": {"price": price, "product": fake_id("prod", price, length=14)},
            "unit_amount_decimal": str(amount),
        }
        line["pretax_credit_amounts"] = []
        line["taxes"] = []
    else:
        line.update(
            price=_price(price, unit_amount=amount, currency=currency, interval="month", interval_count=1),
            proration=False,
            proration_details={"credited_items": None},
            subscription=subscription_id,
            subscription_item=item_id,
            tax_amounts=[],
            tax_rates=[],
            type="subscription",
            unit_amount_excluding_tax=str(amount),
        )
    return line


def invoice(
    invoice_id: str,
    *,
    subscription_id: str,
    amount: int,
    period_start: int,
    period_end: int,
    paid: bool,
    payment_intent: str | None = None,
    email: str = "erika@example.com",
    price: str = "price_monthly",
    currency: str = "eur",
    created: int | None = None,
    attempt_count: int = 1,
    billing_reason: str = "subscription_cycle",
    subscription_metadata: Mapping[str, str] | None = None,
    basil: bool = False,
) -> dict[str, Any]:
    """An Invoice for one period of a subscription (one line), paid or still open."""
    created = period_start if created is None else created
    line = _invoice_line(
        invoice_id,
        subscription_id=subscription_id,
        price=price,
        amount=amount,
        currency=currency,
        period_start=period_start,
        period_end=period_end,
        basil=basil,
    )
    obj: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "DE",
        "account_name": "Example Shop",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": attempt_count,
        "attempted": True,
        "auto_advance": not paid,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "customer": fake_id("cus", subscription_id, length=14),
        "customer_address": None,
        "customer_email": email,
        "customer_name": "Erika Mustermann",
        "description": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_1/{fake_id('test', invoice_id, length=40)}",
        "lines": {
            "object": "list",
            "data": [line],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None if paid else created + 3 * DAY,
        "number": f"EX-{int(hashlib.sha256(invoice_id.encode()).hexdigest(), 16) % 10_000:04d}",
        "period_end": period_start,
        "period_start": period_start - 30 * DAY,
        "status": "paid" if paid else "open",
        "status_transitions": {
            "finalized_at": created,
            "marked_uncollectible_at": None,
            "paid_at": created if paid else None,
            "voided_at": None,
        },
        "subtotal": amount,
        "total": amount,
        "webhooks_delivered_at": created,
    }
    metadata = dict(subscription_metadata or {})
    if basil:
        obj["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": metadata, "subscription": subscription_id},
        }
    else:
        obj.update(
            charge=fake_id("ch", payment_intent) if payment_intent else None,
            paid=paid,
            payment_intent=payment_intent,
            subscription=subscription_id,
            subscription_details={"metadata": metadata},
        )
    return obj


def invoice_paid(
    event_id: str,
    *,
    invoice_id: str,
    subscription_id: str,
    amount: int,
    period_start: int,
    period_end: int,
    payment_intent: str | None = None,
    created: int | None = None,
    basil: bool = False,
    **details: Any,
) -> dict[str, Any]:
    """``invoice.paid`` for a subscription's period (``details``: see ``invoice``)."""
    created = period_start if created is None else created
    obj = invoice(
        invoice_id,
        subscription_id=subscription_id,
        amount=amount,
        period_start=period_start,
        period_end=period_end,
        paid=True,
        payment_intent=None if basil else payment_intent,
        created=created,
        basil=basil,
        **details,
    )
    return envelope(
        event_id, "invoice.paid", obj, created=created, api_version=BASIL if basil else API_VERSION
    )


def invoice_payment_failed(
    event_id: str,
    *,
    invoice_id: str,
    subscription_id: str,
    amount: int,
    period_start: int,
    period_end: int,
    attempt_count: int = 1,
    payment_intent: str | None = None,
    created: int | None = None,
    basil: bool = False,
) -> dict[str, Any]:
    """``invoice.payment_failed``: the ``attempt_count``-th charge of the invoice was declined."""
    created = period_start if created is None else created
    obj = invoice(
        invoice_id,
        subscription_id=subscription_id,
        amount=amount,
        period_start=period_start,
        period_end=period_end,
        paid=False,
        payment_intent=None if basil else payment_intent,
        created=created,
        attempt_count=attempt_count,
        basil=basil,
    )
    return envelope(
        event_id, "invoice.payment_failed", obj, created=created, api_version=BASIL if basil else API_VERSION
    )


def checkout_session_completed_subscription(
    event_id: str,
    *,
    subscription_id: str,
    email: str,
    amount: int = 990,
    order_no: str | None = None,
    metadata: Mapping[str, str] | None = None,
    created: int = DEFAULT_CREATED,
) -> dict[str, Any]:
    """``checkout.session.completed`` of a ``subscription``-mode session (no PaymentIntent)."""
    session = _checkout_session(
        session_id="cs_test_" + fake_id("a1", subscription_id, length=56)[3:],
        payment_intent=None,
        amount=amount,
        email=email,
        currency="eur",
        order_no=order_no,
        payment_status="paid",
        name="Erika Mustermann",
        metadata=metadata,
    )
    session.update(
        mode="subscription",
        subscription=subscription_id,
        invoice=fake_id("in", subscription_id, "first"),
        customer=fake_id("cus", subscription_id, length=14),
        payment_method_collection="always",
    )
    return envelope(event_id, "checkout.session.completed", session, created=created)


# --- signing ------------------------------------------------------------------------------------


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with the endpoint secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secrets: Sequence[str], timestamp: int, *, with_v0: bool = False) -> str:
    """``t=...,v1=...`` with one v1 per secret (several while a rolled secret is active)."""
    parts = [f"t={timestamp}"]
    parts += [f"v1={stripe_signature(body, secret, timestamp)}" for secret in secrets]
    if with_v0:
        parts.append(f"v0={stripe_signature(body, 'test-mode-legacy', timestamp)}")
    return ",".join(parts)


def encode(event: Mapping[str, Any]) -> bytes:
    """The body as Stripe sends it: JSON indented by two spaces."""
    return json.dumps(event, indent=2, ensure_ascii=False).encode()


def signed(event: dict[str, Any], secret: str, timestamp: int) -> tuple[bytes, dict[str, str]]:
    """The body bytes and the headers of a delivery of ``event`` signed with ``secret``."""
    body = encode(event)
    headers = {
        "content-type": "application/json",
        "stripe-signature": signature_header(body, [secret], timestamp),
    }
    return body, headers
