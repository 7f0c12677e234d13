"""Merchants, API keys and gateway secrets."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.billing.gateways import GATEWAY_NAMES, gateway_registry
from einlass.crypto import decrypt_json, encrypt_json, generate_token, sha256_hex
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.ids import new_id
from einlass.tenants.models import (
    DEFAULT_MERCHANT_SETTINGS,
    PARTIAL_REFUND_KEEPS_ACCESS,
    PARTIAL_REFUND_REVOKES_ACCESS,
    ApiKey,
    GatewayAccount,
    Merchant,
)

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
API_KEY_PREFIX = "ek_"


def check_slug(slug: str, what: str = "slug") -> str:
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            f"{what} must be 1-64 lower-case letters, digits or dashes, not starting or ending with a dash",
            param=what,
        )
    return slug


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once, never stored


async def create_merchant(
    session: AsyncSession, slug: str, name: str, actor: Actor
) -> tuple[Merchant, IssuedKey]:
    check_slug(slug)
    if await session.scalar(select(Merchant.id).where(Merchant.slug == slug)):
        raise Conflict(f"a merchant with slug {slug!r} exists already", code="slug_taken")
    merchant = Merchant(
        id=new_id("mer"),
        slug=slug,
        name=name,
        settings=dict(DEFAULT_MERCHANT_SETTINGS),
        created_at=clock.now(),
    )
    session.add(merchant)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a merchant with slug {slug!r} exists already", code="slug_taken") from None
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="merchant.created",
        entity_kind="merchant",
        entity_id=merchant.id,
        after={"slug": slug, "name": name},
    )
    issued = await create_api_key(session, merchant, "default", actor)
    return merchant, issued


async def get_merchant_by_slug(session: AsyncSession, slug: str) -> Merchant:
    merchant = await session.scalar(select(Merchant).where(Merchant.slug == slug))
    if merchant is None:
        raise NotFound(f"no merchant {slug!r}")
    return merchant


async def list_merchants(session: AsyncSession) -> list[Merchant]:
    return list(await session.scalars(select(Merchant).order_by(Merchant.slug)))


async def update_merchant(
    session: AsyncSession,
    merchant: Merchant,
    *,
    name: str | None,
    settings: dict[str, Any] | None,
    actor: Actor,
) -> Merchant:
    before = {"name": merchant.name, "settings": merchant.settings}
    if name is not None:
        merchant.name = name
    if settings:
        unknown = set(settings) - set(DEFAULT_MERCHANT_SETTINGS)
        if unknown:
            raise InvalidInput(f"unknown setting(s): {', '.join(sorted(unknown))}", param="settings")
        refund = settings.get("partial_refund", merchant.setting("partial_refund"))
        if refund not in (PARTIAL_REFUND_KEEPS_ACCESS, PARTIAL_REFUND_REVOKES_ACCESS):
            raise InvalidInput(
                f"settings.partial_refund must be {PARTIAL_REFUND_KEEPS_ACCESS!r} or {PARTIAL_REFUND_REVOKES_ACCESS!r}",
                param="settings.partial_refund",
            )
        if not isinstance(settings.get("report_chargebacks", False), bool):
            raise InvalidInput(
                "settings.report_chargebacks must be true or false", param="settings.report_chargebacks"
            )
        region = settings.get("default_region", "DE")
        if not isinstance(region, str) or not re.fullmatch(r"[A-Z]{2}", region):
            raise InvalidInput(
                "settings.default_region must be a two-letter country code such as DE",
                param="settings.default_region",
            )
        if settings.get("locale", "en") not in ("en", "de"):
            raise InvalidInput("settings.locale must be 'en' or 'de'", param="settings.locale")
        for key, value in settings.items():
            problem = member_page_setting_problem(key, value)
            if problem is not None:
                raise InvalidInput(f"settings.{key} {problem}", param=f"settings.{key}")
        merchant.settings = {**(merchant.settings or {}), **settings}
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="merchant.updated",
        entity_kind="merchant",
        entity_id=merchant.id,
        before=before,
        after={"name": merchant.name, "settings": merchant.settings},
    )
    return merchant


_COOKIE_PATH = re.compile(r"^/[A-Za-z0-9._~%/-]{0,199}$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?$")
# Integer settings of the member pages: (lowest, highest).
_MEMBER_PAGE_NUMBERS = {
    # Browsers keep a cookie at most 400 days.
    "session_lifetime_days": (1, 400),
    "login_failures_per_username": (1, 1000),
    "login_failures_per_address": (1, 100_000),
    "login_failure_window_minutes": (1, 1440),
}
_MAX_LIST = 50


def member_page_setting_problem(key: str, value: Any) -> str | None:
    """What is wrong with a member page setting (a phrase after its name), or None.

    Other keys are not checked here. The member pages use this too, so that a
    value that is stored but broken falls back to the default instead of failing.
    """
    if key in _MEMBER_PAGE_NUMBERS:
        low, high = _MEMBER_PAGE_NUMBERS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be a whole number from {low} to {high}"
    elif key == "cookie_path":
        if not isinstance(value, str) or not _COOKIE_PATH.fullmatch(value):
            return "must be a path starting with '/' (letters, digits, . _ ~ % / -; at most 200 characters)"
    elif key == "cookie_domain":
        if value is not None and (
            not isinstance(value, str) or len(value) > 253 or not _DOMAIN.fullmatch(value.removeprefix("."))
        ):
            return "must be null or a lower-case host name such as 'shop.example'"
    elif key == "allowed_hosts":
        if (
            not isinstance(value, list)
            or len(value) > _MAX_LIST
            or not all(isinstance(host, str) and len(host) <= 260 and _HOST.fullmatch(host) for host in value)
        ):
            return f"must be a list of at most {_MAX_LIST} lower-case host names, each with an optional :port"
    elif key == "trusted_proxies" and (
        not isinstance(value, list) or len(value) > _MAX_LIST or not all(map(_is_network, value))
    ):
        return f"must be a list of at most {_MAX_LIST} IP addresses or networks such as '10.0.0.0/8'"
    return None


def _is_network(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


async def create_api_key(session: AsyncSession, merchant: Merchant, name: str, actor: Actor) -> IssuedKey:
    secret = generate_token(API_KEY_PREFIX)
    api_key = ApiKey(
        id=new_id("key"),
        merchant_id=merchant.id,
        name=name,
        prefix=secret[:10],
        digest=sha256_hex(secret),
        created_at=clock.now(),
    )
    session.add(api_key)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="api_key.created",
        entity_kind="api_key",
        entity_id=api_key.id,
        after={"name": name, "prefix": api_key.prefix},
    )
    return IssuedKey(api_key=api_key, secret=secret)


async def list_api_keys(session: AsyncSession, merchant_id: str) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.merchant_id == merchant_id).order_by(ApiKey.id.desc())
    return list(await session.scalars(query))


async def revoke_api_key(session: AsyncSession, merchant_id: str, key_id: str, actor: Actor) -> ApiKey:
    api_key = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.merchant_id == merchant_id)
    )
    if api_key is None:
        raise NotFound(f"no API key {key_id!r}")
    if api_key.revoked_at is None:
        api_key.revoked_at = clock.now()
        record(
            session,
            merchant_id=merchant_id,
            actor=actor,
            action="api_key.revoked",
            entity_kind="api_key",
            entity_id=key_id,
        )
    return api_key


async def authenticate(session: AsyncSession, secret: str) -> tuple[Merchant, ApiKey] | None:
    if not secret.startswith(API_KEY_PREFIX):
        return None
    row = (
        await session.execute(
            select(ApiKey, Merchant)
            .join(Merchant, Merchant.id == ApiKey.merchant_id)
            .where(ApiKey.digest == sha256_hex(secret), ApiKey.revoked_at.is_(None))
        )
    ).first()
    return None if row is None else (row[1], row[0])


async def set_gateway_secrets(
    session: AsyncSession,
    secret_key: str,
    merchant: Merchant,
    gateway: str,
    secrets: dict[str, str],
    actor: Actor,
) -> GatewayAccount:
    if gateway not in GATEWAY_NAMES:
        raise NotFound(f"unknown gateway {gateway!r}; one of {', '.join(GATEWAY_NAMES)}")
    fields = gateway_registry()[gateway].secret_fields
    unknown = set(secrets) - set(fields)
    if unknown:
        raise InvalidInput(
            f"unknown secret(s) for {gateway}: {', '.join(sorted(unknown))}; expected {', '.join(fields)}",
            param="secrets",
        )
    if not secrets.get(fields[0]):
        raise InvalidInput(f"{fields[0]} is required for {gateway}", param=f"secrets.{fields[0]}")
    now = clock.now()
    account = await session.scalar(
        select(GatewayAccount).where(
            GatewayAccount.merchant_id == merchant.id, GatewayAccount.gateway == gateway
        )
    )
    encrypted = encrypt_json(secret_key, {key: value for key, value in secrets.items() if value})
    if account is None:
        account = GatewayAccount(
            id=new_id("gwa"),
            merchant_id=merchant.id,
            gateway=gateway,
            encrypted_secrets=encrypted,
            created_at=now,
            updated_at=now,
        )
        session.add(account)
    else:
        account.encrypted_secrets = encrypted
        account.updated_at = now
    # Secrets are write-only: the audit log names the fields, never the values.
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="gateway.secrets_set",
        entity_kind="gateway",
        entity_id=gateway,
        after={"fields": sorted(secrets)},
    )
    return account


async def gateway_secrets(
    session: AsyncSession, secret_key: str, merchant_id: str, gateway: str
) -> dict[str, str] | None:
    account = await session.scalar(
        select(GatewayAccount).where(
            GatewayAccount.merchant_id == merchant_id, GatewayAccount.gateway == gateway
        )
    )
    return None if account is None else decrypt_json(secret_key, account.encrypted_secrets)


async def configured_gateways(
    session: AsyncSession, secret_key: str, merchant_id: str
) -> dict[str, list[str]]:
    accounts = await session.scalars(select(GatewayAccount).where(GatewayAccount.merchant_id == merchant_id))
    return {
        account.gateway: sorted(decrypt_json(secret_key, account.encrypted_secrets)) for account in accounts
    }
