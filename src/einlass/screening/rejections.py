"""Telling the merchant that screening rejected a payment, so that it refunds it.

The job ``screening.payment_rejected`` (queued by ``decisions.screen_payment``
in the payment's transaction) POSTs a signed event to each of the merchant's
webhook targets, the same Standard Webhooks signing the member events use.
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from sqlalchemy import select

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.billing.models import Payment
from einlass.config import Settings
from einlass.crypto import decrypt_json
from einlass.outbox.models import Job
from einlass.outbox.worker import JobContext
from einlass.provisioning.models import TARGET_WEBHOOK, ProvisioningTarget
from einlass.provisioning.webhooks import DEFAULT_TIMEOUT_S, body_of, signed_headers
from einlass.screening.decisions import JOB_PAYMENT_REJECTED, decision_document
from einlass.screening.models import ScreeningDecision

log = structlog.get_logger(__name__)


def rejection_event(payment: Payment, decision: ScreeningDecision) -> dict[str, Any]:
    """The signed event's body: which payment to refund, and why (kind and category only)."""
    return {
        "type": JOB_PAYMENT_REJECTED,
        "timestamp": decision.created_at.isoformat(),
        "data": {
            "payment": {
                "id": payment.id,
                "gateway": payment.gateway,
                "external_id": payment.external_id,
                "order": payment.order_id,
                "amount": payment.amount,
                "amount_paid": payment.amount_paid,
                "currency": payment.currency,
                "customer_email": payment.customer_email,
            },
            "screening": decision_document(decision),
        },
    }


async def notify_payment_rejected(context: JobContext, job: Job) -> None:
    """Outbox handler: POST a signed ``screening.payment_rejected`` to each webhook target.

    Without webhook targets there is nobody to call: the rejection is logged and
    audited, and the merchant sees it on the payment and in the member's decisions.
    A receiver that fails makes the job retry; receivers that got it already get
    it again with the same ``webhook-id`` (the decision's id) and drop the copy.
    """
    merchant_id = job.merchant_id
    async with context.db.transaction() as session:
        payment = await session.scalar(
            select(Payment).where(Payment.id == job.payload["payment_id"], Payment.merchant_id == merchant_id)
        )
        decision = await session.scalar(
            select(ScreeningDecision).where(
                ScreeningDecision.id == job.payload["decision_id"],
                ScreeningDecision.merchant_id == merchant_id,
            )
        )
        targets = list(
            await session.scalars(
                select(ProvisioningTarget).where(
                    ProvisioningTarget.merchant_id == merchant_id,
                    ProvisioningTarget.kind == TARGET_WEBHOOK,
                    ProvisioningTarget.enabled.is_(True),
                )
            )
        )
        if payment is None or decision is None:
            return  # erased since
        if not targets:
            log.warning(
                "rejected payment: no webhook target to tell", merchant_id=merchant_id, payment_id=payment.id
            )
            record(
                session,
                merchant_id=merchant_id,
                actor=Actor("job", job.id),
                action="payment.screening_rejected",
                entity_kind="payment",
                entity_id=payment.id,
                member_id=decision.member_id,
                after={"screening": decision.id, "notified": []},
            )
            return
    body = body_of(rejection_event(payment, decision))
    failed: list[str] = []
    async with httpx.AsyncClient(follow_redirects=False) as client:
        for target in targets:
            if not await _post_signed(client, context.settings, target, decision.id, body):
                failed.append(target.id)
    if failed:
        raise RuntimeError(f"the rejection did not reach webhook targets {', '.join(failed)}")
    async with context.db.transaction() as session:
        record(
            session,
            merchant_id=merchant_id,
            actor=Actor("job", job.id),
            action="payment.screening_rejected",
            entity_kind="payment",
            entity_id=payment.id,
            member_id=decision.member_id,
            after={"screening": decision.id, "notified": [target.id for target in targets]},
        )


async def _post_signed(
    client: httpx.AsyncClient, settings: Settings, target: ProvisioningTarget, message_id: str, body: bytes
) -> bool:
    config = target.config or {}
    url = config.get("url")
    secrets = decrypt_json(settings.secret_key, target.encrypted_secrets) if target.encrypted_secrets else {}
    secret = secrets.get("signing_secret")
    if not isinstance(url, str) or not isinstance(secret, str) or not secret:
        log.warning("webhook target unusable for the rejection", target_id=target.id)
        return False
    timeout = config.get("timeout")
    headers = signed_headers(secret, message_id, int(clock.now().timestamp()), body)
    try:
        response = await client.post(
            url,
            content=body,
            headers=headers,
            timeout=float(timeout) if isinstance(timeout, int | float) and timeout > 0 else DEFAULT_TIMEOUT_S,
        )
    except httpx.HTTPError as error:
        # The message names the error type only: a URL may carry credentials.
        log.warning("rejection not delivered", target_id=target.id, error=type(error).__name__)
        return False
    if not 200 <= response.status_code < 300:
        log.warning("rejection refused", target_id=target.id, status=response.status_code)
        return False
    return True
