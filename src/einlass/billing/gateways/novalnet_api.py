"""Subscription actions sent to Novalnet's API (to be written)."""

from __future__ import annotations

from collections.abc import Mapping

from einlass.billing.subscriptions.actions import ActionRefused, ActionRequest, ActionResult
from einlass.config import Settings


class NovalnetApi:
    async def perform(
        self, request: ActionRequest, secrets: Mapping[str, str], settings: Settings
    ) -> ActionResult:
        raise ActionRefused("not implemented yet")
