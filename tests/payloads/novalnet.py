"""Builders for Novalnet webhook notifications in Novalnet's wire format (webhook v2 JSON).

Each builder returns one complete notification object: ``event`` (``type``, ``tid``,
``parent_tid`` for follow-up transactions, ``checksum`` left empty), ``merchant``,
``result``, ``transaction`` and, for the initial payment, ``customer`` and ``custom``.
TIDs are given as 17-digit strings and sent as JSON numbers, amounts in cents, as
Novalnet does.

Follow-up transactions (credit, refund, chargeback, renewal) carry their own new TID
in ``event.tid`` and the original payment's TID in ``event.parent_tid``; captures,
cancellations and updates reuse the payment's TID. A subscription is known by the TID
of its first payment (``subscription_payment``); its notifications
(``subscription_event``) name that TID.

``signed`` computes ``event.checksum`` with Novalnet's documented scheme, here
independently of the adapter under test, and serialises the notification.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ACCESS_KEY = "a87ff679a2f3e71d9181a67b7542122c"
VENDOR = 4
PROJECT = 4711
TEST_MODE = 1
DATE = "2026-01-01 12:00:00"

_RESULT_TEXTS = {"SUCCESS": "Successful", "FAILURE": "Transaction declined"}
_REFUND_TYPES = {
    "CREDITCARD": "CREDITCARD_BOOKBACK",
    "PAYPAL": "PAYPAL_BOOKBACK",
    "GOOGLEPAY": "CREDITCARD_BOOKBACK",
    "APPLEPAY": "CREDITCARD_BOOKBACK",
}


def tid_value(tid: str) -> int | str:
    """A TID as Novalnet sends it: a JSON number (kept a string if that would change it)."""
    if tid.isascii() and tid.isdigit() and not tid.startswith("0"):
        return int(tid)
    return tid


def notification(
    event_type: str,
    tid: str,
    *,
    transaction: dict[str, Any] | None,
    parent_tid: str | None = None,
    result_status: str = "SUCCESS",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The common frame of every notification; ``extra`` adds top-level objects."""
    event: dict[str, Any] = {"type": event_type, "tid": tid_value(tid), "checksum": ""}
    if parent_tid is not None:
        event["parent_tid"] = tid_value(parent_tid)
    result: dict[str, Any] = {"status": result_status}
    if result_status == "SUCCESS":
        result["status_code"] = 100
    result["status_text"] = _RESULT_TEXTS.get(result_status, result_status.title())
    payload: dict[str, Any] = {
        "event": event,
        "merchant": {"vendor": VENDOR, "project": PROJECT},
        "result": result,
    }
    if transaction is not None:
        payload["transaction"] = transaction
    payload.update(extra or {})
    return payload


def _transaction(
    tid: str,
    *,
    amount: int,
    currency: str,
    status: str,
    payment_type: str,
    order_no: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    transaction: dict[str, Any] = {
        "tid": tid_value(tid),
        "amount": amount,
        "currency": currency,
        "date": DATE,
        "payment_type": payment_type,
        "status": status,
        "test_mode": TEST_MODE,
    }
    if order_no is not None:
        transaction["order_no"] = order_no
    transaction.update(fields)
    return transaction


def payment(
    tid: str,
    *,
    amount: int,
    email: str,
    currency: str = "EUR",
    status: str = "CONFIRMED",
    order_no: str | None = None,
    tariff: str | None = None,
    payment_type: str = "CREDITCARD",
    first_name: str = "Max",
    last_name: str = "Mustermann",
    result_status: str = "SUCCESS",
    lang: str = "DE",
) -> dict[str, Any]:
    """PAYMENT: the initial transaction (status CONFIRMED, PENDING, ON_HOLD, DEACTIVATED).

    ``tariff`` is sent as ``merchant.tariff``, the tariff id the payment was made under.
    """
    transaction = _transaction(
        tid, amount=amount, currency=currency, status=status, payment_type=payment_type, order_no=order_no
    )
    if result_status != "SUCCESS":
        transaction["status"] = "FAILURE"
    payload = notification(
        "PAYMENT",
        tid,
        transaction=transaction,
        result_status=result_status,
        extra={
            "customer": {
                "first_name": first_name,
                "last_name": last_name,
                "email": email,
                "billing": {
                    "street": "Hauptstr.",
                    "house_no": "9",
                    "city": "Kaiserslautern",
                    "zip": "66862",
                    "country_code": "DE",
                },
            },
            "custom": {"lang": lang},
        },
    )
    if tariff is not None:
        payload["merchant"]["tariff"] = tariff_value(tariff)
    return payload


def tariff_value(tariff: str) -> int | str:
    """Novalnet tariff ids are numbers; other strings are kept as they are."""
    return int(tariff) if tariff.isascii() and tariff.isdigit() and not tariff.startswith("0") else tariff


def capture(
    tid: str,
    *,
    amount: int,
    currency: str = "EUR",
    order_no: str | None = None,
    payment_type: str = "CREDITCARD",
    status: str = "CONFIRMED",
) -> dict[str, Any]:
    """TRANSACTION_CAPTURE of an authorised (ON_HOLD) payment; ``event.tid`` is the payment's."""
    transaction = _transaction(
        tid, amount=amount, currency=currency, status=status, payment_type=payment_type, order_no=order_no
    )
    return notification("TRANSACTION_CAPTURE", tid, transaction=transaction)


def cancel(
    tid: str, *, amount: int, currency: str = "EUR", payment_type: str = "CREDITCARD"
) -> dict[str, Any]:
    """TRANSACTION_CANCEL of an authorised payment: the transaction is DEACTIVATED."""
    transaction = _transaction(
        tid, amount=amount, currency=currency, status="DEACTIVATED", payment_type=payment_type
    )
    return notification("TRANSACTION_CANCEL", tid, transaction=transaction)


def update(
    tid: str,
    *,
    status: str,
    amount: int,
    currency: str = "EUR",
    update_type: str = "STATUS",
    payment_type: str = "INVOICE",
    due_date: str = "2026-01-15",
) -> dict[str, Any]:
    """TRANSACTION_UPDATE: new status (update_type STATUS) or amount (AMOUNT, AMOUNT_DUE_DATE)."""
    fields: dict[str, Any] = {"update_type": update_type}
    if "DUE_DATE" in update_type:
        fields["due_date"] = due_date
    transaction = _transaction(
        tid, amount=amount, currency=currency, status=status, payment_type=payment_type, **fields
    )
    return notification("TRANSACTION_UPDATE", tid, transaction=transaction)


def credit(
    tid: str,
    *,
    parent_tid: str,
    amount: int,
    currency: str = "EUR",
    payment_type: str = "INVOICE_CREDIT",
    order_no: str | None = None,
) -> dict[str, Any]:
    """CREDIT: money came in for ``parent_tid``; ``tid`` is the credit's own TID."""
    transaction = _transaction(
        tid,
        amount=amount,
        currency=currency,
        status="CONFIRMED",
        payment_type=payment_type,
        order_no=order_no,
    )
    return notification("CREDIT", tid, parent_tid=parent_tid, transaction=transaction)


def refund(
    tid: str,
    *,
    parent_tid: str,
    amount: int,
    currency: str = "EUR",
    payment_type: str = "CREDITCARD",
    original_amount: int | None = None,
    refunded_amount: int | None = None,
    status: str = "CONFIRMED",
) -> dict[str, Any]:
    """TRANSACTION_REFUND of ``amount`` from ``parent_tid``; ``tid`` is the refund's own TID.

    ``transaction`` describes the original payment (its amount, default ``amount``;
    ``refunded_amount``, the total refunded so far); ``transaction.refund`` the refund.
    """
    refund_object: dict[str, Any] = {
        "tid": tid_value(tid),
        "amount": amount,
        "currency": currency,
        "payment_type": _REFUND_TYPES.get(payment_type, "REFUND_BY_BANK_TRANSFER_EU"),
    }
    transaction = _transaction(
        parent_tid,
        amount=amount if original_amount is None else original_amount,
        currency=currency,
        status=status,
        payment_type=payment_type,
        refunded_amount=amount if refunded_amount is None else refunded_amount,
        refund=refund_object,
    )
    return notification("TRANSACTION_REFUND", tid, parent_tid=parent_tid, transaction=transaction)


def chargeback(
    tid: str,
    *,
    parent_tid: str,
    amount: int,
    currency: str = "EUR",
    payment_type: str = "CREDITCARD_CHARGEBACK",
) -> dict[str, Any]:
    """CHARGEBACK (or SEPA return debit, RETURN_DEBIT_SEPA) of ``parent_tid``; ``tid`` is its own."""
    transaction = _transaction(
        tid, amount=amount, currency=currency, status="CONFIRMED", payment_type=payment_type, reason="Fraud"
    )
    return notification("CHARGEBACK", tid, parent_tid=parent_tid, transaction=transaction)


def chargeback_reversal(
    tid: str,
    *,
    parent_tid: str,
    amount: int,
    currency: str = "EUR",
    payment_type: str = "CREDITCARD_REPRESENTMENT",
) -> dict[str, Any]:
    """The money of a chargeback came back: a CREDIT of type CREDITCARD_REPRESENTMENT."""
    return credit(tid, parent_tid=parent_tid, amount=amount, currency=currency, payment_type=payment_type)


def subscription_payment(
    tid: str,
    *,
    amount: int,
    email: str,
    tariff: str,
    next_cycle_date: str,
    interval: str | None = "1m",
    status: str = "CONFIRMED",
    order_no: str | None = None,
    trial_interval: str | None = None,
    trial_amount: int | None = None,
    result_status: str = "SUCCESS",
) -> dict[str, Any]:
    """PAYMENT that starts a subscription: the payment plus its ``subscription`` object.

    The subscription's TID is the payment's; ``next_cycle_date`` is Novalnet's next
    charging day ("YYYY-MM-DD"), ``interval`` Novalnet's cycle ("1m", "14d", "1y").
    """
    payload = payment(
        tid,
        amount=amount,
        email=email,
        status=status,
        order_no=order_no,
        tariff=tariff,
        result_status=result_status,
    )
    subscription: dict[str, Any] = {
        "tid": tid_value(tid),
        "tariff": tariff_value(tariff),
        "amount": amount,
        "next_cycle_date": next_cycle_date,
    }
    if interval is not None:
        subscription["interval"] = interval
    if trial_interval is not None:
        subscription["trial_interval"] = trial_interval
        subscription["trial_amount"] = amount if trial_amount is None else trial_amount
    payload["subscription"] = subscription
    return payload


def renewal(
    tid: str,
    *,
    parent_tid: str,
    amount: int,
    currency: str = "EUR",
    next_cycle_date: str = "2026-02-01",
    status: str = "CONFIRMED",
    result_status: str = "SUCCESS",
    payment_type: str = "CREDITCARD",
) -> dict[str, Any]:
    """RENEWAL: Novalnet charged the subscription ``parent_tid`` again; ``tid`` is the new transaction.

    A failed charge comes with ``result_status="FAILURE"`` (and transaction status FAILURE).
    """
    transaction = _transaction(
        tid, amount=amount, currency=currency, status=status, payment_type=payment_type
    )
    if result_status != "SUCCESS":
        transaction["status"] = "FAILURE"
    subscription = {"tid": tid_value(parent_tid), "amount": amount, "next_cycle_date": next_cycle_date}
    return notification(
        "RENEWAL",
        tid,
        parent_tid=parent_tid,
        transaction=transaction,
        result_status=result_status,
        extra={"subscription": subscription},
    )


def subscription_event(
    event_type: str,
    subscription_tid: str,
    *,
    amount: int = 990,
    currency: str = "EUR",
    next_cycle_date: str | None = None,
    reason: str | None = None,
    update_type: str | None = None,
    action_id: str | None = None,
    payment_type: str = "CREDITCARD",
) -> dict[str, Any]:
    """SUBSCRIPTION_SUSPEND, _REACTIVATE, _UPDATE or _CANCEL of ``subscription_tid``.

    ``event.tid`` and ``event.parent_tid`` are the subscription's TID; ``transaction``
    describes its first payment. ``action_id`` is echoed in ``custom.input1/inputval1``,
    as Novalnet does for a change einlass asked for through the API.
    """
    transaction = _transaction(
        subscription_tid, amount=amount, currency=currency, status="CONFIRMED", payment_type=payment_type
    )
    subscription: dict[str, Any] = {"tid": tid_value(subscription_tid), "amount": amount}
    for field, value in (
        ("next_cycle_date", next_cycle_date),
        ("reason", reason),
        ("update_type", update_type),
    ):
        if value is not None:
            subscription[field] = value
    custom: dict[str, Any] = {"lang": "DE"}
    if action_id is not None:
        custom.update(input1="einlass_action", inputval1=action_id)
    return notification(
        event_type,
        subscription_tid,
        parent_tid=subscription_tid,
        transaction=transaction,
        extra={"subscription": subscription, "custom": custom},
    )


def suspend(subscription_tid: str, **fields: Any) -> dict[str, Any]:
    return subscription_event("SUBSCRIPTION_SUSPEND", subscription_tid, **fields)


def reactivate(subscription_tid: str, *, next_cycle_date: str, **fields: Any) -> dict[str, Any]:
    return subscription_event(
        "SUBSCRIPTION_REACTIVATE", subscription_tid, next_cycle_date=next_cycle_date, **fields
    )


def subscription_update(subscription_tid: str, **fields: Any) -> dict[str, Any]:
    return subscription_event("SUBSCRIPTION_UPDATE", subscription_tid, **fields)


def subscription_cancel(subscription_tid: str, *, reason: str = "Other", **fields: Any) -> dict[str, Any]:
    return subscription_event("SUBSCRIPTION_CANCEL", subscription_tid, reason=reason, **fields)


def api_answer(status_text: str = "Successful", *, status: str = "SUCCESS", **objects: Any) -> dict[str, Any]:
    """An answer of Novalnet's subscription API (``result`` plus objects such as ``subscription``)."""
    result: dict[str, Any] = {"status": status, "status_text": status_text}
    result["status_code"] = 100 if status == "SUCCESS" else 106
    return {"result": result, **objects}


def checksum(payload: dict[str, Any], access_key: str) -> str:
    """sha256_hex(event.tid + event.type + result.status + transaction.amount
    + transaction.currency + reverse(access_key)), amount and currency only where present."""
    event = payload["event"]
    transaction = payload.get("transaction") or {}
    token = f"{event['tid']}{event['type']}{payload['result']['status']}"
    for field in ("amount", "currency"):
        if transaction.get(field) is not None:
            token += str(transaction[field])
    return hashlib.sha256((token + access_key[::-1]).encode()).hexdigest()


def signed(payload: dict[str, Any], access_key: str = ACCESS_KEY) -> tuple[bytes, dict[str, str]]:
    """Set ``event.checksum`` and return the JSON body and the request headers."""
    payload["event"]["checksum"] = checksum(payload, access_key)
    body = json.dumps(payload).encode()
    return body, {"content-type": "application/json"}
