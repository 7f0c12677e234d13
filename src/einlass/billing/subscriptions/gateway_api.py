"""The clients that send subscription actions to each gateway's API.

Each client speaks its gateway's documented wire format over httpx. It raises
``ActionRefused`` when the gateway answers no and ``GatewayUnavailable`` when
there is no usable answer (the outbox retries those).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from einlass.billing.subscriptions.actions import ActionRequest, ActionResult
from einlass.config import Settings


class GatewayApi(Protocol):
    async def perform(
        self, request: ActionRequest, secrets: Mapping[str, str], settings: Settings
    ) -> ActionResult: ...


def client_for(gateway: str) -> GatewayApi:
    from einlass.billing.gateways.generic_api import GenericApi
    from einlass.billing.gateways.novalnet_api import NovalnetApi
    from einlass.billing.gateways.stripe_api import StripeApi

    clients: dict[str, GatewayApi] = {
        "novalnet": NovalnetApi(),
        "stripe": StripeApi(),
        "generic": GenericApi(),
    }
    return clients[gateway]
