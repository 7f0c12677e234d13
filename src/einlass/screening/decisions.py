"""Screening decisions (to be written)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from einlass.billing.models import Payment
from einlass.config import Settings
from einlass.screening.models import OUTCOME_ACCEPT
from einlass.tenants.models import Merchant


async def screen_payment(
    session: AsyncSession, settings: Settings, merchant: Merchant, payment: Payment
) -> str:
    """Screen a payment the first time it is paid, before access; returns the outcome."""
    return OUTCOME_ACCEPT
