"""Gateway adapters by name."""

from __future__ import annotations

from einlass.billing.gateways.base import Gateway


def gateway_registry() -> dict[str, Gateway]:
    from einlass.billing.gateways.generic import GenericGateway
    from einlass.billing.gateways.novalnet import NovalnetGateway
    from einlass.billing.gateways.stripe import StripeGateway

    return {gateway.name: gateway for gateway in (NovalnetGateway(), StripeGateway(), GenericGateway())}


GATEWAY_NAMES = ("novalnet", "stripe", "generic")
