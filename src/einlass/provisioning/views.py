"""REST: push targets (htpasswd files, FTP/FTPS/SFTP uploads, webhooks) and reconciling on demand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.audit.service import Actor
from einlass.errors import NotFound
from einlass.provisioning import service
from einlass.provisioning.hashing import target_scheme_key
from einlass.provisioning.models import HTPASSWD_KINDS, ProvisioningTarget
from einlass.provisioning.reconciler import ReconcileResult, reconcile_merchant, reconcile_target
from einlass.rest.common import ApiContext, api_context, iso, list_response, page_limit

router = APIRouter(tags=["provisioning"])


def render_target(target: ProvisioningTarget, areas: list[str], secrets: list[str]) -> dict[str, Any]:
    """A target as the API shows it: secret names, never their values."""
    document: dict[str, Any] = {
        "id": target.id,
        "object": "provisioning_target",
        "name": target.name,
        "kind": target.kind,
        "enabled": target.enabled,
        "config": dict(target.config or {}),
        "areas": areas,
        "secrets": secrets,
        "status": target.status,
        "last_attempt_at": iso(target.last_attempt_at),
        "last_reconciled_at": iso(target.last_reconciled_at),
        "last_error": target.last_error,
        "last_drift": target.last_drift,
        "consecutive_failures": target.consecutive_failures,
        "created_at": iso(target.created_at),
        "updated_at": iso(target.updated_at),
    }
    if target.kind in HTPASSWD_KINDS:
        try:
            document["hash_scheme"] = target_scheme_key(target.config or {})
        except ValueError:
            document["hash_scheme"] = None
    return document


class TargetCreate(BaseModel):
    name: str = Field(description="Unique per merchant, e.g. 'www'", max_length=64)
    kind: str = Field(description="htpasswd_file, ftp, ftps, sftp or webhook")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="htpasswd_file: path; ftp/ftps/sftp: host, port, username, remote_path "
        "(sftp: known_host_key); all htpasswd kinds: hash_scheme (sha512_crypt, bcrypt, apr1) "
        "and hash_cost; webhook: url. Optional: timeout (seconds).",
    )
    secrets: dict[str, Any] | None = Field(
        default=None,
        description="ftp/ftps: password; sftp: password and/or private_key; webhook: signing_secret",
    )
    areas: list[str] = Field(description="Area slugs or ids whose members the target lists")
    enabled: bool = True


class TargetUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=64)
    config: dict[str, Any] | None = Field(
        default=None, description="Keys given replace the stored ones; a null value removes a key"
    )
    secrets: dict[str, Any] | None = Field(
        default=None, description="Keys given replace the stored ones; a null value removes a key"
    )
    areas: list[str] | None = None
    enabled: bool | None = None


class ReissueRequest(BaseModel):
    everyone: bool = Field(
        default=False,
        description="Mail new passwords to every member the target lists, not only those "
        "without a hash in its scheme",
    )


async def create_target_from_body(
    session: AsyncSession, secret_key: str, merchant_id: str, body: TargetCreate, actor: Actor
) -> ProvisioningTarget:
    """The service call for a TargetCreate body: the API and the admin's form both create through it."""
    return await service.create_target(
        session,
        secret_key,
        merchant_id,
        name=body.name,
        kind=body.kind,
        config=body.config,
        secrets=body.secrets,
        areas=body.areas,
        enabled=body.enabled,
        actor=actor,
    )


async def _render(ctx: ApiContext, session: Any, target: ProvisioningTarget) -> dict[str, Any]:
    areas = await service.area_slugs(session, ctx.merchant_id, [target.id])
    return render_target(target, areas[target.id], service.secret_names(ctx.settings.secret_key, target))


@router.post("/provisioning_targets", status_code=201)
async def create_target(body: TargetCreate, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    """Create a target; the first reconciliation is queued at once."""
    async with ctx.transaction() as session:
        target = await create_target_from_body(
            session, ctx.settings.secret_key, ctx.merchant_id, body, ctx.actor
        )
        return await _render(ctx, session, target)


@router.get("/provisioning_targets")
async def list_targets(
    ctx: ApiContext = Depends(api_context), limit: int = 20, starting_after: str | None = None
) -> dict[str, Any]:
    limit = page_limit(limit)
    async with ctx.transaction() as session:
        rows = await service.list_targets(
            session, ctx.merchant_id, starting_after=starting_after, limit=limit + 1
        )
        areas = await service.area_slugs(session, ctx.merchant_id, [row.id for row in rows])
        secret_key = ctx.settings.secret_key
        return list_response(
            "/api/v1/provisioning_targets",
            rows,
            limit,
            lambda t: render_target(t, areas[t.id], service.secret_names(secret_key, t)),
        )


@router.get("/provisioning_targets/{target_id}")
async def get_target(target_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    async with ctx.transaction() as session:
        return await _render(ctx, session, await service.get_target(session, ctx.merchant_id, target_id))


@router.post("/provisioning_targets/{target_id}")
async def update_target(
    target_id: str, body: TargetUpdate, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    async with ctx.transaction() as session:
        target = await service.get_target(session, ctx.merchant_id, target_id, for_update=True)
        await service.update_target(
            session,
            ctx.settings.secret_key,
            target,
            name=body.name,
            config=body.config,
            secrets=body.secrets,
            areas=body.areas,
            enabled=body.enabled,
            actor=ctx.actor,
        )
        return await _render(ctx, session, target)


@router.delete("/provisioning_targets/{target_id}")
async def delete_target(target_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    """Forget the target; the file it wrote stays as it is."""
    async with ctx.transaction() as session:
        target = await service.get_target(session, ctx.merchant_id, target_id, for_update=True)
        await service.delete_target(session, ctx.settings.secret_key, target, ctx.actor)
        return {"id": target.id, "object": "provisioning_target", "deleted": True}


async def _retry_later(ctx: ApiContext, results: list[ReconcileResult]) -> None:
    """A failed reconciliation on demand leaves a job behind, which retries with backoff."""
    if any(result.failed for result in results):
        async with ctx.transaction() as session:
            await service.request_sync(session, ctx.merchant_id, "reconciliation on demand failed")


@router.post("/provisioning_targets/{target_id}/reconcile")
async def reconcile_one(target_id: str, ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    """Reconcile the target now and return what was found (also when disabled)."""
    async with ctx.transaction() as session:
        target = await service.get_target(session, ctx.merchant_id, target_id)
    result = await reconcile_target(ctx.db, ctx.settings, ctx.merchant_id, target.id, ctx.actor)
    if result is None:
        raise NotFound(f"no provisioning target {target_id!r}")
    await _retry_later(ctx, [result])
    return result.as_dict()


@router.post("/reconcile")
async def reconcile_all(ctx: ApiContext = Depends(api_context)) -> dict[str, Any]:
    """Reconcile every enabled target of the merchant now."""
    results = await reconcile_merchant(ctx.db, ctx.settings, ctx.merchant_id, ctx.actor)
    await _retry_later(ctx, results)
    return {
        "object": "list",
        "url": "/api/v1/reconcile",
        "data": [result.as_dict() for result in results],
        "has_more": False,
        "failed": sum(result.failed for result in results),
    }


@router.post("/provisioning_targets/{target_id}/reissue_credentials")
async def reissue_credentials(
    target_id: str, body: ReissueRequest | None = None, ctx: ApiContext = Depends(api_context)
) -> dict[str, Any]:
    """Mail new passwords, so that members get a hash in the target's scheme (see docs/provisioning.md)."""
    async with ctx.transaction() as session:
        target = await service.get_target(session, ctx.merchant_id, target_id)
        queued = await service.reissue_credentials(
            session, target, ctx.actor, everyone=bool(body and body.everyone)
        )
        return {"object": "credentials_reissue", "target": target.id, "members_queued": queued}
