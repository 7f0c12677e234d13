"""The ledger rule: a payment's state is a fold of the facts known about it.

The fold treats the facts as a set, so the state does not depend on the order
in which a gateway delivered them, nor on how often (invariant 2). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from einlass.billing.gateways.base import FactKind


class PaymentStatus(StrEnum):
    PENDING = "pending"
    ON_HOLD = "on_hold"
    CONFIRMED = "confirmed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CHARGED_BACK = "charged_back"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Fact:
    key: str
    kind: FactKind
    amount: int | None
    occurred_at: datetime


@dataclass(frozen=True)
class PaymentState:
    status: PaymentStatus
    # Paid at some point, whatever came after: the member and the grants exist
    # from then on (revoked or not), whichever order the facts arrived in.
    was_paid: bool
    amount: int
    amount_paid: int
    amount_refunded: int
    charged_back: bool
    confirmed_at: datetime | None

    @property
    def is_paid(self) -> bool:
        return self.status in (PaymentStatus.CONFIRMED, PaymentStatus.PARTIALLY_REFUNDED)

    def opens_access(self, partial_refund_keeps_access: bool) -> bool:
        if self.status is PaymentStatus.CONFIRMED:
            return True
        return self.status is PaymentStatus.PARTIALLY_REFUNDED and partial_refund_keeps_access


# How far a payment got before it was paid; the highest rank among the facts wins.
_PROGRESS_RANK = {FactKind.PENDING: 1, FactKind.ON_HOLD: 2, FactKind.CONFIRMED: 3}


def fold(facts: Iterable[Fact], default_amount: int) -> PaymentState:
    """``default_amount`` (the order's) counts until a fact names the amount."""
    by_key = {fact.key: fact for fact in facts}
    facts = sorted(by_key.values(), key=lambda fact: (fact.occurred_at, fact.key))

    opening_amounts = [
        fact.amount for fact in facts if fact.kind in _PROGRESS_RANK and fact.amount is not None
    ]
    amount = opening_amounts[0] if opening_amounts else default_amount
    for fact in facts:
        if fact.kind is FactKind.AMOUNT_CHANGED and fact.amount is not None:
            amount = fact.amount  # the latest amount change wins

    progress = max((_PROGRESS_RANK.get(fact.kind, 0) for fact in facts), default=0)
    credited = sum(fact.amount or 0 for fact in facts if fact.kind is FactKind.CREDIT)
    confirmations = [fact.occurred_at for fact in facts if fact.kind is FactKind.CONFIRMED]
    covered_at = _credits_cover(facts, amount)
    if covered_at is not None:
        # An invoice or prepayment counts as paid once its credits cover it.
        progress = max(progress, _PROGRESS_RANK[FactKind.CONFIRMED])
        confirmations.append(covered_at)
    paid = progress == _PROGRESS_RANK[FactKind.CONFIRMED]
    amount_paid = max(amount, credited) if paid else credited

    refunded_single = sum(fact.amount or 0 for fact in facts if fact.kind is FactKind.REFUND)
    refunded_total = max(
        (fact.amount or 0 for fact in facts if fact.kind is FactKind.REFUND_TOTAL), default=0
    )
    amount_refunded = max(refunded_single, refunded_total)

    chargebacks = sum(1 for fact in facts if fact.kind is FactKind.CHARGEBACK)
    reversals = sum(1 for fact in facts if fact.kind is FactKind.CHARGEBACK_REVERSED)
    charged_back = chargebacks > reversals

    voided = any(fact.kind in (FactKind.CANCELLED, FactKind.FAILED) for fact in facts)
    status = _status(progress, paid, voided, facts, amount, amount_refunded, charged_back)
    return PaymentState(
        status=status,
        was_paid=paid,
        amount=amount,
        amount_paid=amount_paid,
        amount_refunded=amount_refunded,
        charged_back=charged_back,
        confirmed_at=min(confirmations) if paid and confirmations else None,
    )


def _credits_cover(facts: list[Fact], amount: int) -> datetime | None:
    """When the credits, in time order, first add up to the amount."""
    total = 0
    for fact in facts:
        if fact.kind is FactKind.CREDIT:
            total += fact.amount or 0
            if total >= amount > 0:
                return fact.occurred_at
    return None


def _status(
    progress: int,
    paid: bool,
    voided: bool,
    facts: list[Fact],
    amount: int,
    amount_refunded: int,
    charged_back: bool,
) -> PaymentStatus:
    if charged_back:
        return PaymentStatus.CHARGED_BACK
    if paid:
        if amount_refunded >= amount > 0:
            return PaymentStatus.REFUNDED
        if amount_refunded > 0:
            return PaymentStatus.PARTIALLY_REFUNDED
        return PaymentStatus.CONFIRMED
    if voided:
        cancelled = any(fact.kind is FactKind.CANCELLED for fact in facts)
        return PaymentStatus.CANCELLED if cancelled else PaymentStatus.FAILED
    if progress == _PROGRESS_RANK[FactKind.ON_HOLD]:
        return PaymentStatus.ON_HOLD
    return PaymentStatus.PENDING
