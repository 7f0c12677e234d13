"""Subscription actions sent to Stripe's API (to be written)."""

from __future__ import annotations

from collections.abc import Mapping

from einlass.billing.subscriptions.actions import ActionRefused, ActionRequest, ActionResult
from einlass.config import Settings


class StripeApi:
    async def perform(
        self, request: ActionRequest, secrets: Mapping[str, str], settings: Settings
    ) -> ActionResult:
        raise ActionRefused("not implemented yet")
