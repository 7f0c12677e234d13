"""Receiving gateway webhooks: verify, store durably, then apply (invariant 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from einlass import clock
from einlass.billing.gateways import GATEWAY_NAMES, gateway_registry
from einlass.billing.gateways.base import GatewayError, InvalidSignature
from einlass.billing.models import INBOX_RECEIVED, InboxEvent
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.db.util import insert_ignoring_conflict
from einlass.ids import new_id
from einlass.metrics import WEBHOOKS
from einlass.tenants.models import Merchant
from einlass.tenants.service import gateway_secrets

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 1_000_000
# Headers worth keeping with the raw request; credentials and cookies are not.
_DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True)
class Receipt:
    status_code: int
    outcome: str  # stored, duplicate, rejected, malformed, unknown_merchant, ...
    message: str
    event_id: str | None = None


async def receive(
    db: Database,
    settings: Settings,
    merchant_slug: str,
    gateway_name: str,
    body: bytes,
    headers: Mapping[str, str],
) -> Receipt:
    if gateway_name not in GATEWAY_NAMES:
        return Receipt(
            404, "unknown_gateway", f"unknown gateway {gateway_name!r}; one of {', '.join(GATEWAY_NAMES)}"
        )
    async with db.read_sessionmaker() as session:
        merchant = await session.scalar(select(Merchant).where(Merchant.slug == merchant_slug))
        secrets = (
            None
            if merchant is None
            else await gateway_secrets(session, settings.secret_key, merchant.id, gateway_name)
        )
    if merchant is None:
        return _count(gateway_name, Receipt(404, "unknown_merchant", f"unknown merchant {merchant_slug!r}"))
    if secrets is None:
        return _count(
            gateway_name,
            Receipt(
                404,
                "not_configured",
                f"gateway {gateway_name!r} is not configured for merchant {merchant_slug!r}",
            ),
        )
    if len(body) > MAX_BODY_BYTES:
        return _count(gateway_name, Receipt(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes"))

    gateway = gateway_registry()[gateway_name]
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        gateway.verify(body, lowered, secrets, clock.now())
    except InvalidSignature as error:
        log.warning("webhook rejected", merchant=merchant_slug, gateway=gateway_name, reason=str(error))
        return _count(gateway_name, Receipt(401, "rejected", str(error)))
    except GatewayError as error:
        return _count(gateway_name, Receipt(400, "malformed", str(error)))
    try:
        delivery = gateway.parse(body, lowered)
    except GatewayError as error:
        log.warning("webhook malformed", merchant=merchant_slug, gateway=gateway_name, reason=str(error))
        return _count(gateway_name, Receipt(400, "malformed", str(error)))

    event_id = new_id("whe")
    async with db.transaction() as session:
        stored = await insert_ignoring_conflict(
            session,
            InboxEvent,
            {
                "id": event_id,
                "merchant_id": merchant.id,
                "gateway": gateway_name,
                "event_key": delivery.event_key[:255],
                "event_type": delivery.event_type[:100],
                "headers": {key: value for key, value in lowered.items() if key not in _DROPPED_HEADERS},
                "body": body,
                "status": INBOX_RECEIVED,
                "attempts": 0,
                "received_at": clock.now(),
            },
        )
    if not stored:
        return _count(gateway_name, Receipt(200, "duplicate", "already received"))
    # Stored and committed: from here on the gateway gets its 2xx whatever happens;
    # an apply that fails is retried by the worker's inbox sweep.
    try:
        await apply_with_retries(db, settings, event_id)
    except Exception:
        log.exception("applying webhook failed; the worker retries", event_id=event_id)
    return _count(gateway_name, Receipt(200, "stored", "received", event_id))


def _count(gateway: str, receipt: Receipt) -> Receipt:
    WEBHOOKS.labels(gateway, receipt.outcome).inc()
    return receipt


async def apply_with_retries(db: Database, settings: Settings, event_id: str, attempts: int = 5) -> None:
    """Apply in its own transaction; concurrent writers of one member may collide, so retry."""
    from einlass.billing.service import apply_inbox_event

    for attempt in range(attempts):
        try:
            async with db.transaction() as session:
                await apply_inbox_event(session, settings, event_id)
            return
        except (IntegrityError, DBAPIError) as error:
            if attempt == attempts - 1 or not _is_retryable(error):
                raise
            await asyncio.sleep(0.01 * 2**attempt)


def _is_retryable(error: Exception) -> bool:
    if isinstance(error, IntegrityError):
        return True
    text = str(error).lower()
    return any(word in text for word in ("deadlock", "could not serialize", "database is locked"))
