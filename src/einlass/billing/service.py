"""Applying normalised gateway events to the ledger, members and grants.

Everything here runs inside the caller's transaction, under a row lock on the
payment, so an event's effects (ledger, member, grants, jobs, audit) commit
together or not at all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.billing.catalogue import grant_end, plan_area_ids, plan_for_reference
from einlass.billing.gateways import gateway_registry
from einlass.billing.gateways.base import (
    OPENING_FACTS,
    FactKind,
    GatewayError,
    PaymentEvent,
    SubscriptionEvent,
)
from einlass.billing.ledger import Fact, PaymentState, fold
from einlass.billing.models import (
    INBOX_APPLIED,
    INBOX_FAILED,
    INBOX_IGNORED,
    INBOX_PARKED,
    INBOX_RECEIVED,
    PLAN_SUBSCRIPTION,
    InboxEvent,
    Order,
    Payment,
    PaymentFact,
    PaymentStatusChange,
    Plan,
)
from einlass.billing.subscriptions.models import Subscription
from einlass.billing.subscriptions.service import (
    apply_subscription_event,
    refresh,
    subscription_for_payment,
)
from einlass.config import Settings
from einlass.db.util import insert_ignoring_conflict
from einlass.errors import InvalidInput, NotFound
from einlass.ids import new_id
from einlass.members.models import GRANT_SOURCE_PAYMENT, Grant, Member
from einlass.members.service import access_changed, create_member, normalize_email, send_credentials
from einlass.screening.decisions import screen_payment
from einlass.screening.models import OUTCOME_REJECT
from einlass.screening.service import report_chargeback
from einlass.tenants.models import PARTIAL_REFUND_KEEPS_ACCESS, Merchant

log = structlog.get_logger(__name__)

APPLIED, PARKED = "applied", "parked"


async def apply_inbox_event(session: AsyncSession, settings: Settings, event_id: str) -> str:
    """Apply one stored delivery; returns its new inbox status. Idempotent."""
    event = await session.scalar(select(InboxEvent).where(InboxEvent.id == event_id).with_for_update())
    if event is None or event.status in (INBOX_APPLIED, INBOX_IGNORED):
        return event.status if event else INBOX_IGNORED
    event.attempts += 1
    try:
        delivery = gateway_registry()[event.gateway].parse(event.body, event.headers)
    except GatewayError as error:
        event.status, event.error = INBOX_FAILED, str(error)
        return event.status
    if not delivery.events:
        event.status, event.applied_at = INBOX_IGNORED, clock.now()
        return event.status
    merchant = await session.get_one(Merchant, event.merchant_id)
    actor = Actor("gateway_event", event.id)
    outcomes = []
    # The changes of one event are written once, at the end, not before every query.
    with session.no_autoflush:
        try:
            for item in delivery.events:
                if isinstance(item, SubscriptionEvent):
                    outcome, created = await apply_subscription_event(
                        session, merchant, event.gateway, event.id, item, actor
                    )
                    if created:
                        await session.flush()
                        await _apply_parked(session, settings, merchant, event.gateway, item.subscription_ref)
                else:
                    outcome = await apply_payment_event(session, settings, merchant, event, item, actor)
                outcomes.append(outcome)
        except InvalidInput as error:
            # An unknown plan (the merchant adds the gateway reference) or a dynamic
            # purchase out of the plan's bounds: kept, shown, reprocessable.
            event.status, event.error = INBOX_FAILED, str(error)
            return event.status
    if PARKED in outcomes:
        event.status = INBOX_PARKED
        event.parked_on = next(
            e.subscription_ref if isinstance(e, SubscriptionEvent) else e.payment_ref
            for e, o in zip(delivery.events, outcomes, strict=True)
            if o == PARKED
        )
    else:
        event.status, event.applied_at, event.parked_on, event.error = INBOX_APPLIED, clock.now(), None, None
    return event.status


async def apply_payment_event(
    session: AsyncSession,
    settings: Settings,
    merchant: Merchant,
    inbox: InboxEvent,
    event: PaymentEvent,
    actor: Actor,
) -> str:
    payment = await _locked_payment(session, merchant.id, inbox.gateway, event.payment_ref)
    created = False
    if payment is None:
        if event.fact not in OPENING_FACTS:
            # A refund or chargeback before its payment waits for the payment.
            return PARKED
        payment, created = await _open_payment(session, merchant, inbox.gateway, event)
    inbox.payment_id = inbox.payment_id or payment.id
    await _fill_in(session, merchant, inbox.gateway, payment, event)
    await insert_ignoring_conflict(
        session,
        PaymentFact,
        {
            "id": new_id("fct"),
            "merchant_id": merchant.id,
            "payment_id": payment.id,
            "fact_key": event.fact_key[:255],
            "kind": event.fact.value,
            "amount": event.amount,
            "inbox_event_id": inbox.id,
            "occurred_at": event.occurred_at or clock.now(),
        },
    )
    state = await _fold_payment(session, payment)
    was_charged_back = payment.charged_back
    await _record_state(session, payment, state, inbox.id, actor, created)
    await _settle_member_and_grants(session, settings, merchant, payment, state, event, actor)
    if state.charged_back and not was_charged_back:
        await report_chargeback(session, settings, merchant, payment)
    if created:
        # Parked events read this payment's grants and member: write them first.
        await session.flush()
        await _apply_parked(session, settings, merchant, inbox.gateway, event.payment_ref)
    return APPLIED


async def _locked_payment(
    session: AsyncSession, merchant_id: str, gateway: str, external_id: str
) -> Payment | None:
    return await session.scalar(
        select(Payment)
        .where(
            Payment.merchant_id == merchant_id, Payment.gateway == gateway, Payment.external_id == external_id
        )
        .with_for_update()
    )


async def _open_payment(
    session: AsyncSession, merchant: Merchant, gateway: str, event: PaymentEvent
) -> tuple[Payment, bool]:
    now = clock.now()
    created = await insert_ignoring_conflict(
        session,
        Payment,
        {
            "id": new_id("pay"),
            "merchant_id": merchant.id,
            "gateway": gateway,
            "external_id": event.payment_ref,
            "amount": event.amount or 0,
            "currency": (event.currency or "EUR").upper(),
            "status": event.fact.value,
            "amount_paid": 0,
            "amount_refunded": 0,
            "charged_back": False,
            "created_at": now,
            "updated_at": now,
        },
    )
    payment = await _locked_payment(session, merchant.id, gateway, event.payment_ref)
    assert payment is not None  # inserted above, or by a concurrent delivery that committed
    return payment, created


async def _fill_in(
    session: AsyncSession, merchant: Merchant, gateway: str, payment: Payment, event: PaymentEvent
) -> None:
    """Customer, order and plan come from whichever event carries them first."""
    if payment.order_id is None and event.order_no:
        order = await session.scalar(
            select(Order)
            .where(Order.merchant_id == merchant.id, Order.order_no == event.order_no)
            .with_for_update()
        )
        if order is not None:
            payment.order_id = order.id
            order.payment_id = payment.id
            payment.plan_id = payment.plan_id or order.plan_id
            if payment.amount == 0:
                payment.amount, payment.currency = order.amount, order.currency
            payment.customer_email = payment.customer_email or order.customer_email
    if payment.plan_id is None and event.product_ref:
        plan = await plan_for_reference(session, merchant.id, gateway, event.product_ref)
        if plan is not None:
            payment.plan_id = plan.id
    customer = event.customer
    if customer is not None:
        if payment.customer_email is None and customer.email:
            payment.customer_email = customer.email.strip()
        payment.customer_name = payment.customer_name or customer.name
        payment.customer_locale = payment.customer_locale or customer.locale


async def _fold_payment(session: AsyncSession, payment: Payment) -> PaymentState:
    rows = await session.scalars(select(PaymentFact).where(PaymentFact.payment_id == payment.id))
    facts = [Fact(row.fact_key, FactKind(row.kind), row.amount, row.occurred_at) for row in rows]
    return fold(facts, default_amount=payment.amount)


async def _record_state(
    session: AsyncSession, payment: Payment, state: PaymentState, inbox_id: str, actor: Actor, created: bool
) -> None:
    previous = None if created else payment.status
    if previous != state.status.value:
        session.add(
            PaymentStatusChange(
                id=new_id("psc"),
                merchant_id=payment.merchant_id,
                payment_id=payment.id,
                from_status=previous,
                to_status=state.status.value,
                inbox_event_id=inbox_id,
                at=clock.now(),
            )
        )
        record(
            session,
            merchant_id=payment.merchant_id,
            actor=actor,
            action="payment.status_changed",
            entity_kind="payment",
            entity_id=payment.id,
            member_id=payment.member_id,
            before={"status": previous},
            after={"status": state.status.value},
        )
    payment.status = state.status.value
    payment.amount = state.amount
    payment.amount_paid = state.amount_paid
    payment.amount_refunded = state.amount_refunded
    payment.charged_back = state.charged_back
    if state.was_paid and payment.confirmed_at is None:
        # Access starts when einlass learns of the payment, not at the gateway's
        # timestamp: a late webhook must not eat into a 30-day pass.
        payment.confirmed_at = clock.now()
    payment.updated_at = clock.now()


async def _settle_member_and_grants(
    session: AsyncSession,
    settings: Settings,
    merchant: Merchant,
    payment: Payment,
    state: PaymentState,
    event: PaymentEvent,
    actor: Actor,
) -> None:
    if payment.order_id and state.was_paid:
        order = await session.get(Order, payment.order_id)
        if order is not None and order.status != "paid":
            order.status, order.updated_at = "paid", clock.now()
    subscription = await subscription_for_payment(session, payment)
    if payment.member_id is None and subscription is not None and subscription.member_id is not None:
        # A renewal names no customer: it is the subscription member's payment (and screened as theirs).
        payment.member_id = subscription.member_id
    if state.was_paid and payment.screening_outcome is None:
        # Before access is granted (and before a new customer gets credentials).
        payment.screening_outcome = await screen_payment(session, settings, merchant, payment)
    rejected = payment.screening_outcome == OUTCOME_REJECT
    if payment.member_id is None and state.was_paid and payment.customer_email and not rejected:
        member = await _member_for_payment(session, settings, merchant, payment, event, actor)
        if member is None:
            return
        payment.member_id = member.id
    if subscription is not None:
        # A subscription's payments pay its periods; its grants come from it.
        if subscription.member_id is None:
            subscription.member_id = payment.member_id
        await refresh(session, merchant, subscription, actor, cause="payment")
        return
    if payment.member_id is None or payment.plan_id is None:
        return
    plan = await session.get_one(Plan, payment.plan_id)
    if plan.kind == PLAN_SUBSCRIPTION:
        return
    keeps = merchant.setting("partial_refund") == PARTIAL_REFUND_KEEPS_ACCESS
    opens = state.opens_access(partial_refund_keeps_access=keeps) and not rejected
    reason = "screening rejected" if rejected else f"payment {state.status.value}"
    changed = False
    now = clock.now()
    for area_id in await plan_area_ids(session, plan):
        grant = await session.scalar(
            select(Grant)
            .where(
                Grant.merchant_id == merchant.id,
                Grant.source_kind == GRANT_SOURCE_PAYMENT,
                Grant.source_id == payment.id,
                Grant.area_id == area_id,
            )
            .with_for_update()
        )
        if grant is None:
            # A payment that was paid has its grants, revoked when a refund or
            # chargeback came first: the same rows whatever the arrival order.
            starts = payment.confirmed_at or now
            grant = Grant(
                id=new_id("grt"),
                merchant_id=merchant.id,
                member_id=payment.member_id,
                area_id=area_id,
                source_kind=GRANT_SOURCE_PAYMENT,
                source_id=payment.id,
                starts_at=starts,
                ends_at=grant_end(starts, plan.access_period),
                revoked_at=None if opens else now,
                revoked_reason=None if opens else reason,
                created_at=now,
                updated_at=now,
            )
            session.add(grant)
            changed = True
            record(
                session,
                merchant_id=merchant.id,
                actor=actor,
                action="grant.created",
                entity_kind="grant",
                entity_id=grant.id,
                member_id=payment.member_id,
                after={
                    "area_id": area_id,
                    "payment_id": payment.id,
                    "ends_at": _iso(grant.ends_at),
                    "revoked": not opens,
                },
            )
        elif opens and grant is not None and grant.revoked_at is not None:
            grant.revoked_at, grant.revoked_reason, grant.updated_at = None, None, now
            changed = True
            record(
                session,
                merchant_id=merchant.id,
                actor=actor,
                action="grant.restored",
                entity_kind="grant",
                entity_id=grant.id,
                member_id=payment.member_id,
                after={"payment_status": state.status.value},
            )
        elif not opens and grant is not None and grant.revoked_at is None:
            grant.revoked_at, grant.revoked_reason, grant.updated_at = now, reason, now
            changed = True
            record(
                session,
                merchant_id=merchant.id,
                actor=actor,
                action="grant.revoked",
                entity_kind="grant",
                entity_id=grant.id,
                member_id=payment.member_id,
                after={"payment_status": state.status.value},
            )
    if changed:
        await access_changed(session, merchant.id, payment.member_id, f"payment {payment.id}")


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


async def _member_for_payment(
    session: AsyncSession,
    settings: Settings,
    merchant: Merchant,
    payment: Payment,
    event: PaymentEvent,
    actor: Actor,
) -> Member | None:
    """The first confirmed payment of a new customer creates the member (matched by normalised email)."""
    return await member_for_customer(
        session,
        merchant,
        email=payment.customer_email or "",
        name=payment.customer_name,
        locale=payment.customer_locale,
        actor=actor,
    )


async def member_for_customer(
    session: AsyncSession,
    merchant: Merchant,
    *,
    email: str,
    name: str | None,
    locale: str | None,
    actor: Actor,
) -> Member | None:
    """The member with this email, or a new one; either way the credentials mail is queued."""
    try:
        normalized = normalize_email(email)
    except InvalidInput:
        log.warning("customer email is unusable; no member created", merchant_id=merchant.id)
        return None
    member = await session.scalar(
        select(Member)
        .where(Member.merchant_id == merchant.id, Member.email_normalized == normalized)
        .with_for_update()
    )
    if member is not None and member.deleted_at is None:
        await send_credentials(session, merchant, member, new_password=False)
        return member
    member, _ = await create_member(session, merchant, email=email, name=name, actor=actor, locale=locale)
    await send_credentials(session, merchant, member, new_password=True, only_if_unset=True)
    return member


async def _apply_parked(
    session: AsyncSession, settings: Settings, merchant: Merchant, gateway: str, payment_ref: str
) -> None:
    parked = await session.scalars(
        select(InboxEvent)
        .where(
            InboxEvent.merchant_id == merchant.id,
            InboxEvent.gateway == gateway,
            InboxEvent.parked_on == payment_ref,
            InboxEvent.status == INBOX_PARKED,
        )
        .order_by(InboxEvent.received_at)
    )
    for event in list(parked):
        await apply_inbox_event(session, settings, event.id)


async def pending_inbox_event_ids(
    session: AsyncSession, older_than: timedelta, limit: int = 100
) -> list[str]:
    """Deliveries stored but not applied (a crash in between), and parked ones whose payment is here now."""
    cutoff = clock.now() - older_than
    received = select(InboxEvent.id).where(
        InboxEvent.status == INBOX_RECEIVED, InboxEvent.received_at < cutoff
    )
    unparkable = (
        select(InboxEvent.id)
        .join(
            Payment,
            (Payment.merchant_id == InboxEvent.merchant_id)
            & (Payment.gateway == InboxEvent.gateway)
            & (Payment.external_id == InboxEvent.parked_on),
        )
        .where(InboxEvent.status == INBOX_PARKED)
    )
    waiting_for_subscription = (
        select(InboxEvent.id)
        .join(
            Subscription,
            (Subscription.merchant_id == InboxEvent.merchant_id)
            & (Subscription.gateway == InboxEvent.gateway)
            & (Subscription.external_id == InboxEvent.parked_on),
        )
        .where(InboxEvent.status == INBOX_PARKED)
    )
    ids = list(await session.scalars(received.limit(limit)))
    ids += list(await session.scalars(unparkable.limit(limit)))
    ids += list(await session.scalars(waiting_for_subscription.limit(limit)))
    return list(dict.fromkeys(ids))


async def reprocess(
    session: AsyncSession, settings: Settings, merchant_id: str, event_id: str, actor: Actor
) -> str:
    event = await session.scalar(
        select(InboxEvent)
        .where(InboxEvent.id == event_id, InboxEvent.merchant_id == merchant_id)
        .with_for_update()
    )
    if event is None:
        raise NotFound(f"no webhook event {event_id!r}")
    if event.status in (INBOX_FAILED, INBOX_PARKED):
        event.status = INBOX_RECEIVED
    record(
        session,
        merchant_id=merchant_id,
        actor=actor,
        action="webhook_event.reprocessed",
        entity_kind="webhook_event",
        entity_id=event_id,
    )
    return await apply_inbox_event(session, settings, event_id)
