"""REST: the merchant itself, API keys, gateway secrets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from einlass.rest.common import ApiContext, api_context, iso
from einlass.tenants import service
from einlass.tenants.models import ApiKey, Merchant

router = APIRouter(tags=["merchant"])


def render_merchant(merchant: Merchant) -> dict[str, Any]:
    return {
        "id": merchant.id,
        "object": "merchant",
        "slug": merchant.slug,
        "name": merchant.name,
        "settings": merchant.settings,
        "created_at": iso(merchant.created_at),
    }


def render_api_key(api_key: ApiKey) -> dict[str, Any]:
    return {
        "id": api_key.id,
        "object": "api_key",
        "name": api_key.name,
        "prefix": api_key.prefix,
        "created_at": iso(api_key.created_at),
        "revoked_at": iso(api_key.revoked_at),
        "last_used_at": iso(api_key.last_used_at),
    }


class MerchantUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None


class ApiKeyCreate(BaseModel):
    name: str = Field(default="", max_length=200)


class GatewaySecrets(BaseModel):
    secrets: dict[str, str] = Field(description="Write-only; never returned")


@router.get("/merchant")
async def get_merchant(ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    return render_merchant(ctx.merchant)


@router.post("/merchant")
async def update_merchant(body: MerchantUpdate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        merchant = await session.get_one(Merchant, ctx.merchant_id)
        await service.update_merchant(
            session, merchant, name=body.name, settings=body.settings, actor=ctx.actor
        )
        return render_merchant(merchant)


@router.get("/api_keys")
async def list_api_keys(ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        keys = await service.list_api_keys(session, ctx.merchant_id)
        return {
            "object": "list",
            "url": "/api/v1/api_keys",
            "data": [render_api_key(k) for k in keys],
            "has_more": False,
        }


@router.post("/api_keys", status_code=201)
async def create_api_key(body: ApiKeyCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        issued = await service.create_api_key(session, ctx.merchant, body.name, ctx.actor)
        return {**render_api_key(issued.api_key), "secret": issued.secret}


@router.delete("/api_keys/{key_id}")
async def revoke_api_key(key_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        return render_api_key(await service.revoke_api_key(session, ctx.merchant_id, key_id, ctx.actor))


@router.get("/gateways")
async def list_gateways(ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        configured = await service.configured_gateways(session, ctx.settings.secret_key, ctx.merchant_id)
    base = ctx.settings.base_url.rstrip("/")
    return {
        "object": "list",
        "url": "/api/v1/gateways",
        "has_more": False,
        "data": [
            {
                "object": "gateway",
                "id": name,
                "configured_secrets": fields,
                "webhook_url": f"{base}/webhooks/{ctx.merchant.slug}/{name}",
            }
            for name, fields in sorted(configured.items())
        ],
    }


@router.put("/gateways/{gateway}")
async def set_gateway(
    gateway: str, body: GatewaySecrets, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    async with ctx.transaction() as session:
        await service.set_gateway_secrets(
            session, ctx.settings.secret_key, ctx.merchant, gateway, body.secrets, ctx.actor
        )
    base = ctx.settings.base_url.rstrip("/")
    return {
        "object": "gateway",
        "id": gateway,
        "configured_secrets": sorted(k for k, v in body.secrets.items() if v),
        "webhook_url": f"{base}/webhooks/{ctx.merchant.slug}/{gateway}",
    }
