"""Novalnet webhook adapter ("webhook / notification" v2 JSON): payments and subscriptions.

A delivery is one JSON object, for example::

    {
      "event": {"type": "PAYMENT", "tid": 14632500000000001, "checksum": "3ddf55..."},
      "merchant": {"vendor": 4, "project": 1234, "tariff": 30},
      "result": {"status": "SUCCESS", "status_code": 100, "status_text": "Successful"},
      "transaction": {"tid": 14632500000000001, "amount": 1990, "currency": "EUR",
                      "order_no": "A-1001", "payment_type": "CREDITCARD", "status": "CONFIRMED"},
      "customer": {"first_name": "Max", "last_name": "Mustermann", "email": "max@example.com"},
      "custom": {"lang": "DE"}
    }

Authentication is the checksum Novalnet puts in ``event.checksum``::

    sha256_hex(event.tid + event.type + result.status
               + transaction.amount + transaction.currency   # each only when present
               + reverse(payment_access_key))

(the PHP reference integrations concatenate the JSON values as they decode, skip
``null``, and reverse the key with ``strrev``, i.e. byte-wise).

Follow-up events (CREDIT, CHARGEBACK, TRANSACTION_REFUND) carry their own new TID in
``event.tid`` and the original payment's TID in ``event.parent_tid``. For
TRANSACTION_CAPTURE / _CANCEL / _UPDATE, ``event.tid`` is the payment's own TID, so
one TID can be the subject of several deliveries. The event key is therefore
``{event.type}:{event.tid}:{event.checksum}``, followed for TRANSACTION_UPDATE by the
new status, update type and due date, and for TRANSACTION_REFUND by the status, the
refund's TID and amount and the total refunded: the checksum covers none of those.

What einlass does with each event type is listed in docs/gateways/novalnet.md. The
subscription events (a PAYMENT's ``subscription`` object, RENEWAL, SUBSCRIPTION_*) are
read in ``novalnet_subscriptions``, through the ``Delivery`` defined here.

``product_ref`` is ``subscription.tariff`` when present, else ``merchant.tariff`` (the
tariff id the payment was made under). Novalnet has no per-product field of its own,
so a merchant who sells several plans either uses one tariff per plan (and registers
the tariff id as the plan's gateway reference) or passes einlass's order number as
``transaction.order_no``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
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
from einlass.billing.gateways.novalnet_subscriptions import (
    LIFECYCLE_TYPES,
    RENEWAL,
    lifecycle_events,
    opening_events,
    renewal_events,
    subscription_identity,
)

SECRET_FIELD = "payment_access_key"

# Column sizes of the ledger and inbox: longer values are refused here, not by the database.
MAX_EVENT_KEY = 255
MAX_EVENT_TYPE = 100
MAX_ID = 200
MAX_ORDER_NO = 64
MAX_EMAIL = 320
MAX_NAME = 200
MAX_TEXT = 200
MAX_AMOUNT = 2**31 - 1

# Novalnet's event types einlass acts on, with RENEWAL and SUBSCRIPTION_* (see
# novalnet_subscriptions); every other type (INSTALMENT*, PAYMENT_REMINDER_*,
# COLLECTION, ...) is stored with no effect.
PAYMENT = "PAYMENT"
TRANSACTION_CAPTURE = "TRANSACTION_CAPTURE"
TRANSACTION_CANCEL = "TRANSACTION_CANCEL"
TRANSACTION_UPDATE = "TRANSACTION_UPDATE"
TRANSACTION_REFUND = "TRANSACTION_REFUND"
CREDIT = "CREDIT"
CHARGEBACK = "CHARGEBACK"

SUCCESS = "SUCCESS"

# transaction.status -> what it says about the payment.
STATUS_FACTS: Mapping[str, FactKind] = {
    "CONFIRMED": FactKind.CONFIRMED,
    "PENDING": FactKind.PENDING,
    "ON_HOLD": FactKind.ON_HOLD,
    "DEACTIVATED": FactKind.CANCELLED,
    "FAILURE": FactKind.FAILED,
}

# CREDIT payment types that pay (part of) an invoice, prepayment, cash or online
# transfer payment. Any other type ending in _CREDIT is treated the same way.
PAYMENT_CREDIT_TYPES = frozenset(
    {"INVOICE_CREDIT", "CASHPAYMENT_CREDIT", "MULTIBANCO_CREDIT", "ONLINE_TRANSFER_CREDIT"}
)
# CREDIT payment types that bring back money lost to a chargeback or return debit:
# a won dispute (*_REPRESENTMENT), the customer paying again (CREDIT_ENTRY_*,
# BANK_TRANSFER_BY_END_CUSTOMER) or a collection agency (DEBT_COLLECTION_*).
RECOVERY_CREDIT_TYPES = frozenset({"BANK_TRANSFER_BY_END_CUSTOMER"})
RECOVERY_CREDIT_PREFIXES = ("CREDIT_ENTRY_", "DEBT_COLLECTION_")
RECOVERY_CREDIT_SUFFIXES = ("_REPRESENTMENT",)

_DIGITS = re.compile(r"[0-9]+")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_LANGUAGE = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class NovalnetGateway(Gateway):
    name: ClassVar[str] = "novalnet"
    secret_fields: ClassVar[tuple[str, ...]] = (SECRET_FIELD,)

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: datetime
    ) -> None:
        document = load_json_object(body)
        signed = _signed_bytes(document)
        checksum = Section.root(document).required_section("event").data.get("checksum")
        if checksum is None or checksum == "":
            raise InvalidSignature("event.checksum is missing: the notification is not signed")
        if not isinstance(checksum, str):
            raise InvalidSignature("event.checksum must be a string of 64 hex digits")
        access_key = (secrets.get(SECRET_FIELD) or "").strip()
        if not access_key:
            raise InvalidSignature("no payment_access_key is configured for the Novalnet gateway")
        expected = hashlib.sha256(signed + access_key.encode()[::-1]).hexdigest()
        if not constant_time_equals(expected, checksum.strip().lower().encode("utf-8", "replace")):
            raise InvalidSignature(
                "event.checksum does not match: the body was changed or the "
                "payment_access_key is not this project's"
            )

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedDelivery:
        delivery = Delivery.read(load_json_object(body))
        return ParsedDelivery(
            event_key=delivery.event_key(),
            event_type=delivery.event_type,
            events=tuple(delivery.events()),
        )


def _signed_bytes(document: dict[str, Any]) -> bytes:
    """The checksummed values, concatenated the way Novalnet's PHP reference does."""
    root = Section.root(document)
    event = root.required_section("event")
    result = root.required_section("result")
    transaction = root.section("transaction")
    parts = [
        _required_token(event, "tid"),
        _required_token(event, "type"),
        _required_token(result, "status"),
    ]
    if transaction is not None:
        for field in ("amount", "currency"):
            value = transaction.data.get(field)
            if value is not None:  # PHP isset(): null counts as absent
                parts.append(_token(transaction.label(field), value))
    return "".join(parts).encode()


def _required_token(section: Section, field: str) -> str:
    value = section.data.get(field)
    if value is None or value == "":
        raise MalformedPayload(f"{section.label(field)} is required")
    return _token(section.label(field), value)


def _token(label: str, value: object) -> str:
    # bool is an int in Python, but PHP would print true as "1": no such value is valid here.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedPayload(f"{label} must be a string or an integer, not {_kind(value)}")
    text = str(value)
    _check_text(label, text, MAX_TEXT)
    return text


@dataclass(frozen=True)
class Section:
    """A JSON object of the delivery, with its dotted path for error messages."""

    data: Mapping[str, Any]
    path: str

    @classmethod
    def root(cls, document: Mapping[str, Any]) -> Section:
        return cls(document, "")

    def label(self, field: str) -> str:
        return f"{self.path}.{field}" if self.path else field

    def section(self, field: str) -> Section | None:
        value = self.data.get(field)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise MalformedPayload(f"{self.label(field)} must be a JSON object, not {_kind(value)}")
        return Section(value, self.label(field))

    def required_section(self, field: str) -> Section:
        section = self.section(field)
        if section is None:
            raise MalformedPayload(f"{self.label(field)} is required (a JSON object)")
        return section

    def text(self, field: str, *, limit: int = MAX_TEXT) -> str | None:
        """A string field; numbers are accepted too (order numbers, tariff ids)."""
        value = self.data.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is not None and not isinstance(value, str):
            raise MalformedPayload(f"{self.label(field)} must be a string, not {_kind(value)}")
        if value is None or not value.strip():
            return None
        value = value.strip()
        _check_text(self.label(field), value, limit)
        return value

    def required_text(self, field: str, *, limit: int = MAX_TEXT, why: str = "") -> str:
        value = self.text(field, limit=limit)
        if value is None:
            raise MalformedPayload(f"{self.label(field)} is required{why}")
        return value

    def required_tid(self, field: str) -> str:
        value = self.tid(field)
        if value is None:
            raise MalformedPayload(f"{self.label(field)} is required (a Novalnet TID)")
        return value

    def tid(self, field: str) -> str | None:
        """A Novalnet TID: 17 digits, sent as a JSON number (a string is accepted)."""
        value = self.data.get(field)
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= MAX_ID:
            return value
        shown = _shorten(value) if isinstance(value, str) else _kind(value)
        raise MalformedPayload(f"{self.label(field)} must be a Novalnet TID (digits), not {shown}")

    def required_amount(self, field: str, why: str = "") -> int:
        value = self.amount(field)
        if value is None:
            raise MalformedPayload(f"{self.label(field)} is required{why} (integer minor units)")
        return value

    def amount(self, field: str) -> int | None:
        """An amount in minor units (cents), sent as a JSON number (a digit string is accepted)."""
        value = self.data.get(field)
        if value is None or value == "":
            return None
        amount: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            amount = value
        elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()) and len(value) <= 12:
            amount = int(value)
        if amount is None or amount < 0:
            shown = _shorten(value) if isinstance(value, str) else _kind(value)
            raise MalformedPayload(
                f"{self.label(field)} must be a non-negative integer amount in minor units "
                f"(e.g. 1990 for 19.90), not {shown}"
            )
        if amount > MAX_AMOUNT:
            raise MalformedPayload(f"{self.label(field)} is too large (at most {MAX_AMOUNT} minor units)")
        return amount

    def currency(self, field: str) -> str | None:
        value = self.text(field)
        if value is not None and not _CURRENCY.fullmatch(value):
            raise MalformedPayload(
                f'{self.label(field)} must be an ISO 4217 code of three letters (e.g. "EUR"), '
                f"not {_shorten(value)}"
            )
        return None if value is None else value.upper()


@dataclass(frozen=True)
class Delivery:
    """The fields of one notification that einlass reads, checked for type."""

    root: Section
    event_type: str
    event_tid: str
    parent_tid: str | None
    checksum: str
    success: bool
    transaction: Section | None

    @classmethod
    def read(cls, document: dict[str, Any]) -> Delivery:
        root = Section.root(document)
        event = root.required_section("event")
        result = root.required_section("result")
        return cls(
            root=root,
            event_type=event.required_text("type", limit=MAX_EVENT_TYPE),
            event_tid=event.required_tid("tid"),
            parent_tid=event.tid("parent_tid"),
            checksum=event.required_text("checksum", limit=128).lower(),
            success=result.required_text("status") == SUCCESS,
            transaction=root.section("transaction"),
        )

    def event_key(self) -> str:
        return _bounded(
            ":".join([self.event_type, self.event_tid, self.checksum, *self._unsigned_identity()])
        )

    def _unsigned_identity(self) -> list[str]:
        """What tells two deliveries apart that the checksum does not cover.

        TRANSACTION_UPDATE reuses the payment's TID and can happen many times; the
        checksum covers neither the new status, the update type nor the due date.
        A TRANSACTION_REFUND's checksum covers the original amount, not the refund.
        Subscription notifications name the same subscription TID each time.
        """
        if self.event_type in LIFECYCLE_TYPES:
            return subscription_identity(self)
        tx = self.transaction
        if tx is None:
            return []
        if self.event_type == TRANSACTION_UPDATE:
            return [tx.text("status") or "", tx.text("update_type") or "", tx.text("due_date") or ""]
        if self.event_type == TRANSACTION_REFUND:
            refund = tx.section("refund")
            refund_tid = refund.tid("tid") if refund is not None else None
            refund_amount = refund.amount("amount") if refund is not None else None
            refunded = tx.amount("refunded_amount")
            return [
                tx.text("status") or "",
                refund_tid or "",
                "" if refund_amount is None else str(refund_amount),
                "" if refunded is None else str(refunded),
            ]
        return []

    def events(self) -> Sequence[PaymentEvent | SubscriptionEvent]:
        if self.event_type == PAYMENT:
            return opening_events(self, self._payment())
        if self.event_type == RENEWAL:
            return renewal_events(self)
        if not self.success:
            return []
        if self.event_type in LIFECYCLE_TYPES:
            return lifecycle_events(self)
        if self.event_type == TRANSACTION_CAPTURE:
            return self._capture()
        if self.event_type == TRANSACTION_CANCEL:
            return [
                self.payment_event(
                    FactKind.CANCELLED, self.own_ref(), f"cancel:{self.own_ref()}", self.tx_amount()
                )
            ]
        if self.event_type == TRANSACTION_UPDATE:
            return self._update()
        if self.event_type == TRANSACTION_REFUND:
            return self._refund()
        if self.event_type == CREDIT:
            return self._credit()
        if self.event_type == CHARGEBACK:
            amount = self.tx().required_amount("amount", f" for {CHARGEBACK}")
            return [
                self.payment_event(
                    FactKind.CHARGEBACK, self._parent_ref(), f"chargeback:{self.event_tid}", amount
                )
            ]
        return []

    # -- one method per event type --------------------------------------------------

    def _payment(self) -> list[PaymentEvent]:
        if not self.success:
            if self.transaction is None:  # nothing to tell the payment apart by
                return []
            return [
                self.payment_event(
                    FactKind.FAILED, self.own_ref(), f"payment:{self.own_ref()}", self.tx_amount()
                )
            ]
        fact = self.status_fact()
        if fact is None:  # a status Novalnet may add later: stored, no effect
            return []
        return [self.payment_event(fact, self.own_ref(), f"payment:{self.own_ref()}", self.tx_amount())]

    def _capture(self) -> list[PaymentEvent]:
        # A captured invoice stays PENDING until the money comes in (a CREDIT follows).
        fact = FactKind.PENDING if self.tx().text("status") == "PENDING" else FactKind.CONFIRMED
        return [self.payment_event(fact, self.own_ref(), f"capture:{self.own_ref()}", self.tx_amount())]

    def _update(self) -> list[PaymentEvent]:
        tx = self.tx()
        status = tx.text("status")
        update_type = (tx.text("update_type") or "").upper()
        amount = tx.amount("amount")
        # The same for each redelivery of one update, distinct between updates.
        update_id = _digest(self.event_key())
        events: list[PaymentEvent] = []
        fact = STATUS_FACTS.get(status) if status is not None else None
        if fact is not None:
            events.append(
                self.payment_event(fact, self.own_ref(), f"update:{update_id}:{fact.value}", amount)
            )
        if amount is not None and "AMOUNT" in update_type:
            fact_key = f"update:{update_id}:{FactKind.AMOUNT_CHANGED.value}"
            events.append(self.payment_event(FactKind.AMOUNT_CHANGED, self.own_ref(), fact_key, amount))
        return events

    def _refund(self) -> list[PaymentEvent]:
        tx = self.tx()
        refund = tx.section("refund")
        payment_ref = self.parent_tid or tx.tid("tid") or self.event_tid
        amount = refund.amount("amount") if refund is not None else None
        if amount is None:
            amount = tx.required_amount("amount", f" for {TRANSACTION_REFUND} without refund.amount")
        currency = tx.currency("currency")
        if currency is None and refund is not None:
            currency = refund.currency("currency")

        refund_tid = refund.tid("tid") if refund is not None else None
        if refund_tid is None and self.event_tid != payment_ref:
            refund_tid = self.event_tid  # a follow-up's own TID
        # Without a TID of its own, one refund is told from another by its delivery.
        fact_key = f"refund:{refund_tid or _digest(self.event_key())}"
        events = [self.payment_event(FactKind.REFUND, payment_ref, fact_key, amount, currency=currency)]
        if tx.text("status") == "DEACTIVATED":
            # Refunded before the money moved (SEPA not yet debited, invoice not yet
            # paid): Novalnet voids the whole transaction instead.
            events.append(self.payment_event(FactKind.CANCELLED, payment_ref, f"cancel:{payment_ref}"))
        return events

    def _credit(self) -> list[PaymentEvent]:
        tx = self.tx()
        fact = credit_fact(tx.required_text("payment_type", why=f" for {CREDIT}").upper())
        if fact is None:  # e.g. REFUND_REVERSAL: stored, no effect
            return []
        amount = tx.required_amount("amount", f" for {CREDIT}")
        credit_tid = tx.tid("tid") or self.event_tid
        return [self.payment_event(fact, self._parent_ref(), f"{fact.value}:{credit_tid}", amount)]

    # -- shared ----------------------------------------------------------------------

    def tx(self) -> Section:
        if self.transaction is None:
            raise MalformedPayload(f"transaction is required for {self.event_type}")
        return self.transaction

    def tx_amount(self) -> int | None:
        return self.tx().amount("amount")

    def status_fact(self) -> FactKind | None:
        """What ``transaction.status`` (required) says about the transaction; None for a new word."""
        return STATUS_FACTS.get(self.tx().required_text("status", why=f" for {self.event_type}"))

    def key(self, text: str) -> str:
        """A fact or event key within the columns' size."""
        return _bounded(text)

    def digest(self) -> str:
        """Stable across redeliveries of this notification, distinct between notifications."""
        return _digest(self.event_key())

    def own_ref(self) -> str:
        """The payment an event about the payment itself refers to: its own TID."""
        return self.tx().tid("tid") or self.event_tid

    def _parent_ref(self) -> str:
        """The payment a follow-up transaction (credit, chargeback) belongs to."""
        return self.parent_tid or self.event_tid

    def payment_event(
        self,
        fact: FactKind,
        payment_ref: str,
        fact_key: str,
        amount: int | None = None,
        *,
        currency: str | None = None,
        subscription_ref: str | None = None,
    ) -> PaymentEvent:
        tx = self.tx()
        return PaymentEvent(
            fact=fact,
            payment_ref=payment_ref,
            fact_key=_bounded(fact_key),
            amount=amount,
            currency=currency or tx.currency("currency"),
            order_no=tx.text("order_no", limit=MAX_ORDER_NO),
            product_ref=self.product_ref(),
            customer=self.customer(),
            subscription_ref=subscription_ref,
        )

    def product_ref(self) -> str | None:
        for section_name in ("subscription", "merchant"):
            section = self.root.section(section_name)
            tariff = section.text("tariff", limit=MAX_ID) if section is not None else None
            if tariff is not None:
                return tariff
        return None

    def customer(self) -> Customer | None:
        customer = self.root.section("customer")
        custom = self.root.section("custom")
        email = name = None
        if customer is not None:
            email = customer.text("email", limit=MAX_EMAIL)
            if email is not None and not _EMAIL.fullmatch(email):
                raise MalformedPayload(f"customer.email {_shorten(email)} is not an email address")
            first = customer.text("first_name", limit=MAX_NAME)
            last = customer.text("last_name", limit=MAX_NAME)
            name = " ".join(part for part in (first, last) if part)[:MAX_NAME].rstrip() or None
        # Novalnet documents the language as custom.lang ("DE", "EN"); customer.lang is read too.
        locale = _language(custom, "lang") if custom is not None else None
        if locale is None and customer is not None:
            locale = _language(customer, "lang")
        if email is None and name is None and locale is None:
            return None
        return Customer(email=email, name=name, locale=locale)


def credit_fact(payment_type: str) -> FactKind | None:
    """What a CREDIT of this payment type says about the original payment."""
    if (
        payment_type in RECOVERY_CREDIT_TYPES
        or payment_type.startswith(RECOVERY_CREDIT_PREFIXES)
        or payment_type.endswith(RECOVERY_CREDIT_SUFFIXES)
    ):
        return FactKind.CHARGEBACK_REVERSED
    if payment_type in PAYMENT_CREDIT_TYPES or payment_type.endswith("_CREDIT"):
        return FactKind.CREDIT
    return None


def _language(section: Section, field: str) -> str | None:
    value = section.text(field, limit=35)
    if value is None:
        return None
    match = _LANGUAGE.fullmatch(value)
    if match is None:
        raise MalformedPayload(f'{section.label(field)} must be a language code such as "DE" or "EN"')
    return match.group(1).lower()


def _bounded(key: str) -> str:
    return key if len(key) <= MAX_EVENT_KEY else f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _check_text(label: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise MalformedPayload(f"{label} is too long ({len(value)} characters, at most {limit})")
    if "\x00" in value:
        raise MalformedPayload(f"{label} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPayload(f"{label} is not valid Unicode (unpaired surrogate)") from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_shorten(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shorten(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
