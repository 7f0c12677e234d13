"""``einlass screen ...`` and ``einlass whitelist add|list|remove``: screening by hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.audit.service import CLI
from einlass.config import Settings
from einlass.errors import InvalidInput
from einlass.screening import whitelist
from einlass.screening.decisions import CONTEXT_CHECKOUT, decision_document, screen
from einlass.tenants.service import get_merchant_by_slug

# Merged into the main app: its commands are ``einlass screen`` and ``einlass whitelist ...``.
decision_app = typer.Typer()
whitelist_app = typer.Typer(help="A merchant's whitelist: customers never turned away.", no_args_is_help=True)
decision_app.add_typer(whitelist_app, name="whitelist")

MerchantOption = Annotated[str, typer.Option("--merchant", help="The merchant's slug")]
Raw = Annotated[str | None, typer.Option()]


def _run(work: Callable[[AsyncSession, Settings], Awaitable[Any]]) -> None:
    # The main CLI's runner (settings, logging, errors as "error: ..." and exit code 1);
    # imported here because einlass.cli imports this module to register it.
    from einlass.cli import _in_transaction, _print

    _print(_in_transaction(work))


@decision_app.command("screen")
def screen_command(
    merchant: MerchantOption,
    email: Raw = None,
    phone: Raw = None,
    iban: Raw = None,
    card_fingerprint: Raw = None,
    ip: Raw = None,
    device_id: Raw = None,
    name_postcode: Annotated[
        str | None, typer.Option(help='"name|postcode", e.g. "Anna Muster|10115"')
    ] = None,
    member: Annotated[str | None, typer.Option(help="A member id (mem_...)")] = None,
) -> None:
    """Screen a customer as the checkout would; prints the decision (it is stored, like every decision)."""
    given = {
        "email": email,
        "phone": phone,
        "iban": iban,
        "card_fingerprint": card_fingerprint,
        "ip": ip,
        "device_id": device_id,
        "name_postcode": name_postcode,
    }
    identifiers = {kind: value for kind, value in given.items() if value is not None}

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        if not identifiers and member is None:
            raise InvalidInput("give at least one identifier (--email, --phone, ...) or --member")
        found = await get_merchant_by_slug(session, merchant)
        decision = await screen(
            session, settings, found, identifiers, member_id=member, context=CONTEXT_CHECKOUT
        )
        return decision_document(decision)

    _run(work)


@whitelist_app.command("add")
def whitelist_add(
    merchant: MerchantOption,
    member: Annotated[str | None, typer.Option(help="A member id (mem_...)")] = None,
    kind: Annotated[str | None, typer.Option(help="email, phone, iban, card_fingerprint, ip, ...")] = None,
    value: Annotated[str | None, typer.Option(help="The identifier; only its digest is kept")] = None,
    note: Annotated[str | None, typer.Option(help="Why (shown in the list)")] = None,
) -> None:
    """Whitelist a member (--member) or an identifier (--kind and --value)."""

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        found = await get_merchant_by_slug(session, merchant)
        entry = await whitelist.add_entry(
            session, settings, found, member_id=member, kind=kind, value=value, note=note, actor=CLI
        )
        return whitelist.entry_document(entry)

    _run(work)


@whitelist_app.command("list")
def whitelist_list(
    merchant: MerchantOption,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 100,
) -> None:
    """The merchant's whitelist entries (member or kind, and note)."""

    async def work(session: AsyncSession, _settings: Settings) -> list[dict[str, Any]]:
        found = await get_merchant_by_slug(session, merchant)
        rows = await whitelist.list_entries(session, found.id, limit=limit)
        return [whitelist.entry_document(row) for row in rows]

    _run(work)


@whitelist_app.command("remove")
def whitelist_remove(
    merchant: MerchantOption,
    entry_id: Annotated[str, typer.Argument(help="The entry's id (wle_...)")],
) -> None:
    """Take an entry off the whitelist."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        found = await get_merchant_by_slug(session, merchant)
        entry = await whitelist.remove_entry(session, found.id, entry_id, CLI)
        return {**whitelist.entry_document(entry), "deleted": True}

    _run(work)
