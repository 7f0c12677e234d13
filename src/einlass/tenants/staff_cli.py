"""``einlass staff create|list|disable``: admin UI accounts by hand (the first operator, or a lost one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.audit.service import CLI
from einlass.config import Settings
from einlass.tenants.models import STAFF_ROLE_OPERATOR, StaffAccount
from einlass.tenants.service import get_merchant_by_slug
from einlass.tenants.staff import create_staff, disable_staff, get_staff_by_email, list_staff

staff_app = typer.Typer(help="Admin UI accounts (operator, merchant admin, viewer).", no_args_is_help=True)


def _run(work: Callable[[AsyncSession, Settings], Awaitable[Any]]) -> None:
    # The main CLI's runner; imported here because einlass.cli imports this module to register it.
    from einlass.cli import _in_transaction, _print

    _print(_in_transaction(work))


def staff_document(account: StaffAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "object": "staff",
        "email": account.email,
        "name": account.name,
        "role": account.role,
        "merchant": account.merchant_id,
        "disabled": account.disabled_at is not None,
        "last_login_at": account.last_login_at.isoformat() if account.last_login_at else None,
    }


@staff_app.command("create")
def create(
    email: str,
    role: Annotated[str, typer.Option(help="operator, admin or viewer")] = STAFF_ROLE_OPERATOR,
    merchant: Annotated[str | None, typer.Option(help="The merchant's slug (admin and viewer)")] = None,
    name: Annotated[str, typer.Option()] = "",
    locale: Annotated[str, typer.Option(help="en or de")] = "en",
    password: Annotated[
        str | None, typer.Option(help="Omit to generate one (printed once)", envvar="EINLASS_STAFF_PASSWORD")
    ] = None,
) -> None:
    """Create a staff account; prints its password (when generated) and the TOTP secret, once."""

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        found = await get_merchant_by_slug(session, merchant) if merchant else None
        new = await create_staff(
            session,
            settings.secret_key,
            email=email,
            role=role,
            merchant=found,
            actor=CLI,
            name=name,
            password=password,
            locale=locale,
        )
        document = staff_document(new.account)
        if password is None:
            document["password"] = new.password
        document["totp_secret"] = new.totp_secret
        document["totp_uri"] = new.totp_uri
        return document

    _run(work)


@staff_app.command("list")
def list_command(
    merchant: Annotated[str | None, typer.Option(help="The merchant's slug; omit for the operators")] = None,
) -> None:
    async def work(session: AsyncSession, _settings: Settings) -> list[dict[str, Any]]:
        merchant_id = (await get_merchant_by_slug(session, merchant)).id if merchant else None
        return [staff_document(account) for account in await list_staff(session, merchant_id)]

    _run(work)


@staff_app.command("disable")
def disable(email: str) -> None:
    """Disable an account; its sessions end at once."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        account = await get_staff_by_email(session, email)
        await disable_staff(session, account, CLI)
        return staff_document(account)

    _run(work)
