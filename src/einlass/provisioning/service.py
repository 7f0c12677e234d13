"""Push targets: create, change, delete, and the actions an admin takes on them."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock, standard_webhooks
from einlass.audit.service import Actor, record
from einlass.billing.catalogue import get_area
from einlass.billing.models import Area
from einlass.crypto import decrypt_json, encrypt_json
from einlass.db.util import newest_first
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.ids import new_id
from einlass.members.service import JOB_CREDENTIALS_EMAIL, JOB_PROVISION
from einlass.outbox.service import enqueue
from einlass.provisioning.hashing import DEFAULT_SCHEME, SCHEMES, scheme_key, target_scheme_key
from einlass.provisioning.models import (
    HTPASSWD_KINDS,
    TARGET_FTP,
    TARGET_FTPS,
    TARGET_HTPASSWD_FILE,
    TARGET_KINDS,
    TARGET_SFTP,
    TARGET_WEBHOOK,
    ProvisioningTarget,
    TargetArea,
)
from einlass.provisioning.reconciler import iter_entitled

_SCHEME_FIELDS = ("hash_scheme", "hash_cost")
_REMOTE_FIELDS = ("host", "port", "username", "remote_path", "timeout", *_SCHEME_FIELDS)
# Settings each kind takes (config) and the secrets it takes (stored encrypted, never shown).
CONFIG_FIELDS: dict[str, tuple[str, ...]] = {
    TARGET_HTPASSWD_FILE: ("path", *_SCHEME_FIELDS),
    TARGET_FTP: _REMOTE_FIELDS,
    TARGET_FTPS: (*_REMOTE_FIELDS, "verify_tls", "ca_file"),
    TARGET_SFTP: (*_REMOTE_FIELDS, "known_host_key", "insecure_accept_any_host_key"),
    TARGET_WEBHOOK: ("url", "timeout"),
}
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    TARGET_HTPASSWD_FILE: (),
    TARGET_FTP: ("password",),
    TARGET_FTPS: ("password",),
    TARGET_SFTP: ("password", "private_key"),
    TARGET_WEBHOOK: ("signing_secret",),
}
DEFAULT_PORTS = {TARGET_FTP: 21, TARGET_FTPS: 21, TARGET_SFTP: 22}
MAX_TIMEOUT_S = 300


def _fail(message: str, param: str) -> InvalidInput:
    return InvalidInput(message, param=param)


def _text(config: Mapping[str, Any], key: str, kind: str, *, required: bool = True) -> str | None:
    value = config.get(key)
    if value is None:
        if required:
            raise _fail(f"config.{key} is required for {kind} targets", f"config.{key}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"config.{key} must be a non-empty string", f"config.{key}")
    if any(ord(char) < 0x20 for char in value):
        raise _fail(f"config.{key} must not contain control characters", f"config.{key}")
    return value.strip()


def _file_path(value: str, key: str, *, absolute: bool) -> str:
    if absolute and not os.path.isabs(value):
        raise _fail(
            f"config.{key} must be an absolute path, such as /etc/nginx/einlass.htpasswd", f"config.{key}"
        )
    if value.endswith("/"):
        raise _fail(f"config.{key} must name a file, not a directory", f"config.{key}")
    if ".." in value.split("/"):
        raise _fail(f"config.{key} must not contain '..'", f"config.{key}")
    return value


def _int(config: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"config.{key} must be an integer", f"config.{key}")
    if not low <= value <= high:
        raise _fail(f"config.{key} must be between {low} and {high}, not {value}", f"config.{key}")
    return value


def _flag(config: Mapping[str, Any], key: str) -> bool | None:
    value = config.get(key)
    if value is not None and not isinstance(value, bool):
        raise _fail(f"config.{key} must be true or false", f"config.{key}")
    return value


def validate_config(kind: str, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """The checked, completed config of a target (defaults filled in); InvalidInput names the field."""
    if kind not in TARGET_KINDS:
        raise _fail(f"kind must be one of {', '.join(TARGET_KINDS)}, not {kind!r}", "kind")
    unknown = sorted(set(config) - set(CONFIG_FIELDS[kind]))
    if unknown:
        raise _fail(
            f"config.{unknown[0]} is not a setting of {kind} targets; they take {', '.join(CONFIG_FIELDS[kind])}",
            f"config.{unknown[0]}",
        )
    unknown = sorted(set(secrets) - set(SECRET_FIELDS[kind]))
    if unknown:
        allowed = ", ".join(SECRET_FIELDS[kind]) or "none"
        raise _fail(
            f"secrets.{unknown[0]} is not a secret of {kind} targets (they take: {allowed})",
            f"secrets.{unknown[0]}",
        )
    for name, value in secrets.items():
        if not isinstance(value, str) or not value:
            raise _fail(f"secrets.{name} must be a non-empty string", f"secrets.{name}")
    result: dict[str, Any] = {}
    if kind == TARGET_HTPASSWD_FILE:
        result["path"] = _file_path(_text(config, "path", kind) or "", "path", absolute=True)
    elif kind in (TARGET_FTP, TARGET_FTPS, TARGET_SFTP):
        host = _text(config, "host", kind) or ""
        if any(char in host for char in " /@") or host.startswith("-"):
            raise _fail(
                "config.host must be a host name or IP address, without scheme or path", "config.host"
            )
        result["host"] = host
        result["port"] = _int(config, "port", 1, 65535) or DEFAULT_PORTS[kind]
        result["username"] = _text(config, "username", kind)
        result["remote_path"] = _file_path(
            _text(config, "remote_path", kind) or "", "remote_path", absolute=False
        )
        if kind == TARGET_SFTP:
            if not (secrets.get("password") or secrets.get("private_key")):
                raise _fail("sftp targets need secrets.password or secrets.private_key", "secrets")
            known = _text(config, "known_host_key", kind, required=False)
            insecure = _flag(config, "insecure_accept_any_host_key")
            if known is None and not insecure:
                raise _fail(
                    "sftp targets need config.known_host_key, the server's public host key "
                    "(a line of `ssh-keyscan HOST`), or config.insecure_accept_any_host_key: true",
                    "config.known_host_key",
                )
            if known is not None:
                result["known_host_key"] = known
            if insecure:
                result["insecure_accept_any_host_key"] = True
        elif not secrets.get("password"):
            raise _fail(f"{kind} targets need secrets.password", "secrets.password")
        if kind == TARGET_FTPS:
            if _flag(config, "verify_tls") is False:
                result["verify_tls"] = False
            ca_file = _text(config, "ca_file", kind, required=False)
            if ca_file is not None:
                result["ca_file"] = _file_path(ca_file, "ca_file", absolute=True)
    elif kind == TARGET_WEBHOOK:
        url = _text(config, "url", kind) or ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _fail("config.url must be an absolute http:// or https:// URL", "config.url")
        result["url"] = url
        signing = secrets.get("signing_secret")
        if not signing:
            raise _fail("webhook targets need secrets.signing_secret (whsec_...)", "secrets.signing_secret")
        try:
            standard_webhooks.decode_secret(signing)
        except ValueError as error:
            raise _fail(f"secrets.signing_secret: {error}", "secrets.signing_secret") from None
    if "timeout" in config and config["timeout"] is not None:
        timeout = config["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
            raise _fail("config.timeout must be a number of seconds", "config.timeout")
        if not 1 <= timeout <= MAX_TIMEOUT_S:
            raise _fail(f"config.timeout must be between 1 and {MAX_TIMEOUT_S} seconds", "config.timeout")
        result["timeout"] = timeout
    if kind in HTPASSWD_KINDS:
        scheme = config.get("hash_scheme") or DEFAULT_SCHEME
        if not isinstance(scheme, str) or scheme not in SCHEMES:
            raise _fail(
                f"config.hash_scheme must be one of {', '.join(sorted(SCHEMES))}, not {scheme!r}",
                "config.hash_scheme",
            )
        try:
            key = scheme_key(scheme, config.get("hash_cost"))
        except ValueError as error:
            raise _fail(f"config.hash_cost: {error}", "config.hash_cost") from None
        result["hash_scheme"], result["hash_cost"] = scheme, int(key.partition(":")[2])
    return result


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= 64:
        raise _fail("name must have 1 to 64 characters", "name")
    if any(ord(char) < 0x20 for char in cleaned):
        raise _fail("name must not contain control characters", "name")
    return cleaned


async def _areas(session: AsyncSession, merchant_id: str, refs: list[str]) -> list[Area]:
    if not refs:
        raise _fail("areas must name at least one area (slug or id)", "areas")
    found: dict[str, Area] = {}
    for ref in refs:
        try:
            area = await get_area(session, merchant_id, ref)
        except NotFound:
            raise _fail(f"areas: no area {ref!r}", "areas") from None
        found[area.id] = area
    return list(found.values())


async def request_sync(session: AsyncSession, merchant_id: str, reason: str) -> None:
    """Enqueue the merchant's provisioning job, coalesced with a waiting one (same key as access_changed)."""
    await enqueue(
        session,
        JOB_PROVISION,
        {"reason": reason},
        merchant_id=merchant_id,
        dedup_key=f"{JOB_PROVISION}:{merchant_id}",
    )


def secret_names(secret_key: str, target: ProvisioningTarget) -> list[str]:
    if not target.encrypted_secrets:
        return []
    try:
        return sorted(decrypt_json(secret_key, target.encrypted_secrets))
    except ValueError:
        return ["(unreadable: was EINLASS_SECRET_KEY changed?)"]


async def area_slugs(session: AsyncSession, merchant_id: str, target_ids: list[str]) -> dict[str, list[str]]:
    rows = await session.execute(
        select(TargetArea.target_id, Area.slug)
        .join(Area, Area.id == TargetArea.area_id)
        .where(TargetArea.merchant_id == merchant_id, TargetArea.target_id.in_(target_ids))
        .order_by(Area.slug)
    )
    slugs: dict[str, list[str]] = {target_id: [] for target_id in target_ids}
    for target_id, slug in rows:
        slugs[target_id].append(slug)
    return slugs


def snapshot(target: ProvisioningTarget, areas: list[str], secrets: list[str]) -> dict[str, Any]:
    """For the audit log: everything but secret values."""
    return {
        "name": target.name,
        "kind": target.kind,
        "enabled": target.enabled,
        "config": dict(target.config or {}),
        "areas": areas,
        "secrets": secrets,
    }


async def get_target(
    session: AsyncSession, merchant_id: str, id_or_name: str, *, for_update: bool = False
) -> ProvisioningTarget:
    query = select(ProvisioningTarget).where(
        ProvisioningTarget.merchant_id == merchant_id,
        (ProvisioningTarget.id == id_or_name) | (ProvisioningTarget.name == id_or_name),
    )
    if for_update:
        query = query.with_for_update()
    target = await session.scalar(query)
    if target is None:
        raise NotFound(f"no provisioning target {id_or_name!r}")
    return target


async def list_targets(
    session: AsyncSession, merchant_id: str, *, starting_after: str | None = None, limit: int = 100
) -> list[ProvisioningTarget]:
    query = select(ProvisioningTarget).where(ProvisioningTarget.merchant_id == merchant_id)
    return await newest_first(
        session, query, ProvisioningTarget.id, starting_after=starting_after, limit=limit
    )


async def _require_unique_name(
    session: AsyncSession, merchant_id: str, name: str, exclude: str | None = None
) -> None:
    query = select(ProvisioningTarget.id).where(
        ProvisioningTarget.merchant_id == merchant_id, ProvisioningTarget.name == name
    )
    if exclude:
        query = query.where(ProvisioningTarget.id != exclude)
    existing = await session.scalar(query)
    if existing:
        raise Conflict(f"a target named {name!r} exists already ({existing})", code="target_exists")


async def _set_areas(session: AsyncSession, target: ProvisioningTarget, areas: list[Area]) -> None:
    await session.execute(
        delete(TargetArea).where(
            TargetArea.merchant_id == target.merchant_id, TargetArea.target_id == target.id
        )
    )
    for area in areas:
        session.add(TargetArea(target_id=target.id, area_id=area.id, merchant_id=target.merchant_id))


async def create_target(
    session: AsyncSession,
    secret_key: str,
    merchant_id: str,
    *,
    name: str,
    kind: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, Any] | None,
    areas: list[str],
    enabled: bool = True,
    actor: Actor,
) -> ProvisioningTarget:
    name = _clean_name(name)
    secrets = dict(secrets or {})
    checked = validate_config(kind, config, secrets)
    found_areas = await _areas(session, merchant_id, areas)
    await _require_unique_name(session, merchant_id, name)
    now = clock.now()
    target = ProvisioningTarget(
        id=new_id("tgt"),
        merchant_id=merchant_id,
        name=name,
        kind=kind,
        config=checked,
        encrypted_secrets=encrypt_json(secret_key, secrets) if secrets else None,
        enabled=enabled,
        status="pending",
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    session.add(target)
    await session.flush()
    await _set_areas(session, target, found_areas)
    record(
        session,
        merchant_id=merchant_id,
        actor=actor,
        action="target.created",
        entity_kind="target",
        entity_id=target.id,
        after=snapshot(target, sorted(a.slug for a in found_areas), sorted(secrets)),
    )
    if enabled:
        await request_sync(session, merchant_id, "target.created")
    return target


def _merged(old: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """A partial update: given keys replace, a null value removes the key."""
    merged = dict(old)
    for key, value in change.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def update_target(
    session: AsyncSession,
    secret_key: str,
    target: ProvisioningTarget,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    areas: list[str] | None = None,
    enabled: bool | None = None,
    actor: Actor,
) -> ProvisioningTarget:
    merchant_id = target.merchant_id
    old_secrets = decrypt_json(secret_key, target.encrypted_secrets) if target.encrypted_secrets else {}
    old_areas = (await area_slugs(session, merchant_id, [target.id]))[target.id]
    before = snapshot(target, old_areas, sorted(old_secrets))
    new_secrets = _merged(old_secrets, secrets) if secrets is not None else old_secrets
    new_config = _merged(target.config or {}, config) if config is not None else dict(target.config or {})
    if config and "hash_scheme" in config and "hash_cost" not in config:
        new_config.pop("hash_cost", None)  # a cost belongs to its scheme: the new one's default
    checked = validate_config(target.kind, new_config, new_secrets)
    if name is not None:
        name = _clean_name(name)
        await _require_unique_name(session, merchant_id, name, exclude=target.id)
        target.name = name
    if areas is not None:
        found = await _areas(session, merchant_id, areas)
        await _set_areas(session, target, found)
        old_areas = sorted(a.slug for a in found)
    target.config = checked
    target.encrypted_secrets = encrypt_json(secret_key, new_secrets) if new_secrets else None
    if enabled is not None:
        target.enabled = enabled
    target.updated_at = clock.now()
    record(
        session,
        merchant_id=merchant_id,
        actor=actor,
        action="target.updated",
        entity_kind="target",
        entity_id=target.id,
        before=before,
        after=snapshot(target, old_areas, sorted(new_secrets)),
    )
    if target.enabled:
        await request_sync(session, merchant_id, "target.updated")
    return target


async def delete_target(
    session: AsyncSession, secret_key: str, target: ProvisioningTarget, actor: Actor
) -> None:
    """Forget the target. What it holds stays as it is: einlass stops writing there."""
    areas = (await area_slugs(session, target.merchant_id, [target.id]))[target.id]
    record(
        session,
        merchant_id=target.merchant_id,
        actor=actor,
        action="target.deleted",
        entity_kind="target",
        entity_id=target.id,
        before=snapshot(target, areas, secret_names(secret_key, target)),
    )
    await session.delete(target)


async def reissue_credentials(
    session: AsyncSession, target: ProvisioningTarget, actor: Actor, *, everyone: bool = False
) -> int:
    """Mail new passwords to the members the target lists, so that they get hashes in its scheme.

    By default only to those who have no hash in the target's scheme (the ones
    the target cannot list: a new target, or a changed scheme); with
    ``everyone``, to all members with access to the target's areas.
    """
    if target.kind not in HTPASSWD_KINDS:
        raise _fail(f"{target.kind} targets need no password hashes", "target")
    scheme = target_scheme_key(target.config or {})
    member_ids = [
        member.member_id
        async for member in iter_entitled(session, target.merchant_id, target.id, clock.now(), scheme=scheme)
        if everyone or scheme not in member.push_hashes
    ]
    for member_id in member_ids:
        # The payload of members.service.send_credentials, without loading each member.
        await enqueue(
            session,
            JOB_CREDENTIALS_EMAIL,
            {"member_id": member_id, "new_password": True},
            merchant_id=target.merchant_id,
        )
    record(
        session,
        merchant_id=target.merchant_id,
        actor=actor,
        action="target.credentials_reissued",
        entity_kind="target",
        entity_id=target.id,
        after={"members": len(member_ids), "everyone": everyone, "scheme": scheme},
    )
    return len(member_ids)
