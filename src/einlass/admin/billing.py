"""Admin pages: the payments inbox (received gateway events, reprocess) and the payments ledger.

The subscriptions pages live in ``admin.billing_subscriptions``; their router is
included here, so the admin app mounts both through ``billing.router``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from starlette.responses import Response

from einlass.admin import billing_subscriptions
from einlass.admin.billing_common import (
    choice,
    keyset_page,
    label,
    member_name,
    members_by_id,
    options,
    pager_links,
    plans_by_id,
)
from einlass.admin.page import Page, merchant_page
from einlass.billing.gateways import GATEWAY_NAMES
from einlass.billing.ledger import PaymentStatus
from einlass.billing.models import (
    INBOX_APPLIED,
    INBOX_FAILED,
    INBOX_IGNORED,
    INBOX_PARKED,
    INBOX_RECEIVED,
    InboxEvent,
    Payment,
    PaymentStatusChange,
)
from einlass.billing.service import reprocess
from einlass.billing.subscriptions.models import Subscription, SubscriptionFact
from einlass.errors import EinlassError

router = APIRouter()
router.include_router(billing_subscriptions.router)

INBOX_STATUSES = (INBOX_PARKED, INBOX_FAILED, INBOX_RECEIVED, INBOX_APPLIED, INBOX_IGNORED)
# Events a person may want to apply again: waiting for a parent, failed, or stuck before applying.
REPROCESSABLE = frozenset({INBOX_PARKED, INBOX_FAILED, INBOX_RECEIVED})
PAYMENT_STATUSES = tuple(status.value for status in PaymentStatus)
# Header names whose values are credentials or signatures: never shown.
_SECRET_HEADER_WORDS = (
    "signature",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api-key",
    "apikey",
    "password",
)


def redacted_headers(headers: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The stored headers, sorted; ``None`` as the value of one that must not be shown."""
    shown: list[tuple[str, str | None]] = []
    for name in sorted(headers):
        secret = any(word in name.lower() for word in _SECRET_HEADER_WORDS)
        shown.append((name, None if secret else str(headers[name])))
    return shown


def readable_body(body: bytes) -> tuple[str, bool]:
    """The raw payload for people: pretty-printed JSON, else the text, else Base64 (then ``True``)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False), False
    except ValueError:
        return text, False


def _tabs(page: Page, current: str) -> list[dict[str, Any]]:
    return [
        {"href": page.url("payments"), "label": page.t("billing_tab_inbox"), "current": current == "inbox"},
        {
            "href": page.url("payments/ledger"),
            "label": page.t("billing_tab_ledger"),
            "current": current == "ledger",
        },
    ]


def _labels(page: Page) -> Any:
    return lambda group, value: label(page, group, value)


@router.get("/m/{slug}/payments")
async def inbox(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    params = request.query_params
    status = choice(params.get("status"), INBOX_STATUSES)
    gateway = choice(params.get("gateway"), GATEWAY_NAMES)
    query = (
        select(InboxEvent)
        .where(InboxEvent.merchant_id == page.merchant_id)
        .options(defer(InboxEvent.body), defer(InboxEvent.headers))
    )
    if status:
        query = query.where(InboxEvent.status == status)
    if gateway:
        query = query.where(InboxEvent.gateway == gateway)
    async with page.db.transaction() as session:
        found = await keyset_page(session, query, InboxEvent.id, params.get("after"))
    return page.render(
        "billing/inbox.html",
        title=page.t("nav_payments"),
        tabs=_tabs(page, "inbox"),
        events=found.rows,
        selected_status=status,
        selected_gateway=gateway,
        status_options=options(page, INBOX_STATUSES, "inbox"),
        gateway_options=options(page, GATEWAY_NAMES),
        **pager_links(page, "payments", found, status=status, gateway=gateway),
        label=_labels(page),
    )


@router.get("/m/{slug}/payments/ledger")
async def ledger(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    params = request.query_params
    status = choice(params.get("status"), PAYMENT_STATUSES)
    gateway = choice(params.get("gateway"), GATEWAY_NAMES)
    query = select(Payment).where(Payment.merchant_id == page.merchant_id)
    if status:
        query = query.where(Payment.status == status)
    if gateway:
        query = query.where(Payment.gateway == gateway)
    async with page.db.transaction() as session:
        found = await keyset_page(session, query, Payment.id, params.get("after"))
        members = await members_by_id(session, page.merchant_id, (p.member_id for p in found.rows))
        plans = await plans_by_id(session, page.merchant_id)
    return page.render(
        "billing/ledger.html",
        title=page.t("nav_payments"),
        tabs=_tabs(page, "ledger"),
        payments=found.rows,
        members=members,
        plans=plans,
        member_name=member_name,
        selected_status=status,
        selected_gateway=gateway,
        status_options=options(page, PAYMENT_STATUSES, "payment"),
        gateway_options=options(page, GATEWAY_NAMES),
        **pager_links(page, "payments/ledger", found, status=status, gateway=gateway),
        label=_labels(page),
    )


Owned = TypeVar("Owned", Payment, InboxEvent)


async def _owned(page: Page, session: AsyncSession, model: type[Owned], row_id: str) -> Owned:
    """The merchant's payment or event with this id, or the page's 404."""
    found = await session.scalar(
        select(model).where(model.merchant_id == page.merchant_id, model.id == row_id)
    )
    if found is None:
        raise page.not_found()
    return found


@router.get("/m/{slug}/payments/ledger/{payment_id}")
async def payment_detail(request: Request, slug: str, payment_id: str) -> Response:
    page = await merchant_page(request, slug)
    async with page.db.transaction() as session:
        payment = await _owned(page, session, Payment, payment_id)
        history = list(
            await session.scalars(
                select(PaymentStatusChange)
                .where(
                    PaymentStatusChange.merchant_id == page.merchant_id,
                    PaymentStatusChange.payment_id == payment.id,
                )
                .order_by(PaymentStatusChange.id)
            )
        )
        event_ids = {change.inbox_event_id for change in history if change.inbox_event_id}
        events = list(
            await session.scalars(
                select(InboxEvent)
                .where(
                    InboxEvent.merchant_id == page.merchant_id,
                    (InboxEvent.payment_id == payment.id) | InboxEvent.id.in_(sorted(event_ids)),
                )
                .options(defer(InboxEvent.body), defer(InboxEvent.headers))
                .order_by(InboxEvent.id.desc())
            )
        )
        members = await members_by_id(session, page.merchant_id, [payment.member_id])
        plans = await plans_by_id(session, page.merchant_id)
    return page.render(
        "billing/payment.html",
        title=page.t("billing_title_payment", id=payment.id),
        tabs=_tabs(page, "ledger"),
        payment=payment,
        history=history,
        events=events,
        member=members.get(payment.member_id or ""),
        plan=plans.get(payment.plan_id or ""),
        member_name=member_name,
        label=_labels(page),
    )


@router.get("/m/{slug}/payments/{event_id}")
async def event_detail(request: Request, slug: str, event_id: str) -> Response:
    page = await merchant_page(request, slug)
    async with page.db.transaction() as session:
        event = await _owned(page, session, InboxEvent, event_id)
        payments = list(
            await session.scalars(
                select(Payment).where(Payment.merchant_id == page.merchant_id, Payment.id == event.payment_id)
            )
            if event.payment_id
            else []
        )
        subscription_ids = set(
            await session.scalars(
                select(SubscriptionFact.subscription_id).where(
                    SubscriptionFact.merchant_id == page.merchant_id,
                    SubscriptionFact.inbox_event_id == event.id,
                )
            )
        )
        subscription_ids |= {p.subscription_id for p in payments if p.subscription_id}
        subscriptions = list(
            await session.scalars(
                select(Subscription)
                .where(
                    Subscription.merchant_id == page.merchant_id,
                    Subscription.id.in_(sorted(subscription_ids)),
                )
                .order_by(Subscription.id)
            )
        )
        members = await members_by_id(
            session,
            page.merchant_id,
            [p.member_id for p in payments] + [s.member_id for s in subscriptions],
        )
        plans = await plans_by_id(session, page.merchant_id)
    body, binary = readable_body(event.body)
    return page.render(
        "billing/event.html",
        title=page.t("billing_title_event", id=event.id),
        tabs=_tabs(page, "inbox"),
        event=event,
        body=body,
        binary=binary,
        headers=redacted_headers(event.headers or {}),
        payments=payments,
        subscriptions=subscriptions,
        members=members,
        plans=plans,
        member_name=member_name,
        reprocessable=event.status in REPROCESSABLE,
        label=_labels(page),
    )


@router.post("/m/{slug}/payments/{event_id}/reprocess")
async def reprocess_event(request: Request, slug: str, event_id: str) -> Response:
    """Apply a stored event again, through the service the API's reprocess endpoint calls."""
    page = await merchant_page(request, slug)
    await page.form()
    back = page.url(f"payments/{event_id}")
    try:
        async with page.db.transaction() as session:
            exists = await session.scalar(
                select(InboxEvent.id).where(
                    InboxEvent.merchant_id == page.merchant_id, InboxEvent.id == event_id
                )
            )
            if exists is None:
                raise page.not_found()
            status = await reprocess(session, page.settings, page.merchant_id, event_id, page.actor)
    except EinlassError as error:
        return page.redirect(back, error=page.failed(error.message))
    notice = page.t("billing_reprocessed", status=label(page, "inbox", status))
    if status in (INBOX_FAILED, INBOX_PARKED):
        return page.redirect(back, error=notice)
    return page.redirect(back, notice=notice)
