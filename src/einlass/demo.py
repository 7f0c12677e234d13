"""The demo merchant that ``make run`` sets up."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.audit.service import CLI
from einlass.billing import catalogue
from einlass.billing.subscriptions.plans import SubscriptionTerms
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.standard_webhooks import generate_secret
from einlass.tenants import service as tenants
from einlass.tenants.models import Merchant, StaffAccount
from einlass.tenants.staff import create_staff

DEMO_SLUG = "demo"
DEMO_NOVALNET_KEY = "demo-payment-access-key"
DEMO_STRIPE_SECRET = "whsec_demo_stripe_secret"
DEMO_ADMIN = "admin@demo.example"


async def ensure_demo(db: Database, settings: Settings) -> dict[str, Any]:
    async with db.transaction() as session:
        merchant = await session.scalar(select(Merchant).where(Merchant.slug == DEMO_SLUG))
        if merchant is None:
            merchant, issued = await tenants.create_merchant(session, DEMO_SLUG, "Demo Shop", CLI)
            await catalogue.create_area(session, merchant, "premium", "Premium articles", CLI)
            await catalogue.create_plan(
                session,
                merchant,
                slug="premium-30d",
                name="Premium, 30 days",
                amount=990,
                currency="EUR",
                access_period="P30D",
                areas=["premium"],
                gateway_refs={"generic": ["premium-30d"], "novalnet": ["premium-30d"]},
                actor=CLI,
            )
            await catalogue.create_plan(
                session,
                merchant,
                slug="premium-monthly",
                name="Premium, monthly subscription",
                amount=490,
                currency="EUR",
                access_period=None,
                areas=["premium"],
                gateway_refs={
                    "generic": ["premium-monthly"],
                    "novalnet": ["premium-monthly"],
                    "stripe": ["price_premium_monthly"],
                },
                actor=CLI,
                subscription=SubscriptionTerms(
                    interval="P1M", grace_period="P3D", member_can_pause=True, member_can_cancel=True
                ),
            )
            generic_secret = generate_secret()
            await tenants.set_gateway_secrets(
                session, settings.secret_key, merchant, "generic", {"signing_secret": generic_secret}, CLI
            )
            await tenants.set_gateway_secrets(
                session,
                settings.secret_key,
                merchant,
                "novalnet",
                {"payment_access_key": DEMO_NOVALNET_KEY},
                CLI,
            )
            await tenants.set_gateway_secrets(
                session, settings.secret_key, merchant, "stripe", {"webhook_secret": DEMO_STRIPE_SECRET}, CLI
            )
        else:
            # Keys are shown once; a new run of the demo issues a new one.
            issued = await tenants.create_api_key(session, merchant, "demo", CLI)
        secrets = await tenants.gateway_secrets(session, settings.secret_key, merchant.id, "generic") or {}
        admin_ui = await _demo_staff(session, settings, merchant)
    base = settings.base_url.rstrip("/")
    return {
        "merchant": DEMO_SLUG,
        "api_key": issued.secret,
        "api": f"{base}/api/v1/",
        "api_docs": f"{base}/api/v1/docs",
        "webhooks": {
            name: f"{base}/webhooks/{DEMO_SLUG}/{name}" for name in ("novalnet", "stripe", "generic")
        },
        "generic_signing_secret": secrets.get("signing_secret"),
        "novalnet_payment_access_key": DEMO_NOVALNET_KEY,
        "stripe_webhook_secret": DEMO_STRIPE_SECRET,
        "plan": "premium-30d (9.90 EUR, 30 days, area 'premium'); gateway product id 'premium-30d'",
        "subscription_plan": (
            "premium-monthly (4.90 EUR every month, grace 3 days, members may pause and cancel); "
            "gateway product id 'premium-monthly' (generic subscription.* events, Novalnet tariff), "
            "Stripe price 'price_premium_monthly'"
        ),
        "try": f"einlass simulate-payment {DEMO_SLUG} --email you@example.com --product premium-30d",
        "admin_ui": {"url": f"{base}/admin/", **admin_ui},
    }


async def _demo_staff(session: AsyncSession, settings: Settings, merchant: Merchant) -> dict[str, Any]:
    """The demo merchant's admin; its password and TOTP secret are shown only when it is created."""
    exists = await session.scalar(select(StaffAccount.id).where(StaffAccount.email == DEMO_ADMIN))
    if exists:
        return {
            "email": DEMO_ADMIN,
            "password": "printed when the demo was first created; `einlass staff create` makes another account",
        }
    new = await create_staff(
        session,
        settings.secret_key,
        email=DEMO_ADMIN,
        role="admin",
        merchant=merchant,
        actor=CLI,
        name="Demo",
    )
    return {
        "email": DEMO_ADMIN,
        "password": new.password,
        "totp_secret": new.totp_secret,
        "totp_uri": new.totp_uri,
        "current_code": f".venv/bin/python -c 'import pyotp; print(pyotp.TOTP(\"{new.totp_secret}\").now())'",
    }
