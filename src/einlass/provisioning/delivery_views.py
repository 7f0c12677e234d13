"""REST: the delivery log of a webhook target (what einlass sent to the merchant's app)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from einlass.db.util import newest_first
from einlass.errors import InvalidInput
from einlass.provisioning import service
from einlass.provisioning.models import WebhookDelivery
from einlass.provisioning.webhooks import DELIVERY_STATUSES
from einlass.rest.common import ApiContext, api_context, iso, list_response, page_limit

router = APIRouter(tags=["provisioning"])


def render_delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "object": "webhook_delivery",
        "target": delivery.target_id,
        "type": delivery.event_type,
        "member": delivery.member_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_status": delivery.response_status,
        "error": delivery.error,
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
    }


@router.get("/provisioning_targets/{target_id}/deliveries")
async def list_deliveries(
    target_id: str,
    ctx: ApiContext = Depends(api_context),
    limit: int = 20,
    starting_after: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """The webhooks sent to a webhook target, newest first.

    The ``id`` of a delivery is the ``webhook-id`` the receiver got; retries of a
    delivery keep it. ``status``: pending, failed (retried), delivered or
    superseded (a newer change replaced it before it was delivered).
    """
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}", param="status")
    limit = page_limit(limit)
    async with ctx.transaction() as session:
        target = await service.get_target(session, ctx.merchant_id, target_id)
        query = select(WebhookDelivery).where(
            WebhookDelivery.merchant_id == ctx.merchant_id, WebhookDelivery.target_id == target.id
        )
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        rows = await newest_first(
            session, query, WebhookDelivery.id, starting_after=starting_after, limit=limit + 1
        )
        return list_response(
            f"/api/v1/provisioning_targets/{target.id}/deliveries", rows, limit, render_delivery
        )
