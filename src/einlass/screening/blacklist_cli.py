"""``einlass blacklist ...``: a merchant's report, and the operator's review, appeals and data-subject requests.

The operator commands run with the actor ``cli``: whoever can run the command
line on the instance is its operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.audit.service import CLI
from einlass.config import Settings
from einlass.screening import operator_service as operator
from einlass.screening import service
from einlass.screening.decisions import default_region
from einlass.screening.identifiers import IdentifierKind, normalize
from einlass.screening.models import REPORT_CONFIRMED, REPORT_REJECTED
from einlass.screening.views import render_appeal, render_entry, render_own_report, render_review
from einlass.tenants.models import Merchant
from einlass.tenants.service import get_merchant_by_slug

blacklist_app = typer.Typer(
    help="The shared blacklist: report, review queue, appeals, data-subject export and erasure.",
    no_args_is_help=True,
)

ReportId = Annotated[str, typer.Argument(help="The report id (blr_...)")]
AppealId = Annotated[str, typer.Argument(help="The appeal id")]
Kind = Annotated[IdentifierKind, typer.Option(help="The identifier's kind")]
Value = Annotated[str, typer.Option(help="The identifier as given, e.g. an email address")]
Category = Annotated[str, typer.Option(help="chargeback, fraud_attempt, identity_misuse, ...")]
Note = Annotated[str | None, typer.Option(help="Kept with the decision")]
Status = Annotated[str | None, typer.Option(help="Only this status; empty for all")]


def _run(work: Callable[[AsyncSession, Settings], Awaitable[Any]]) -> None:
    # The main CLI's runner; imported here because einlass.cli imports this module to register it.
    from einlass.cli import _in_transaction, _print

    _print(_in_transaction(work))


@blacklist_app.command("report")
def report(
    merchant: Annotated[str, typer.Option("--merchant", help="The reporting merchant's slug")],
    category: Category,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    iban: Annotated[str | None, typer.Option()] = None,
    ip: Annotated[str | None, typer.Option()] = None,
    card_fingerprint: Annotated[str | None, typer.Option()] = None,
    device_id: Annotated[str | None, typer.Option()] = None,
    name_postcode: Annotated[str | None, typer.Option(help='"Name|postcode"')] = None,
    text: Annotated[str | None, typer.Option(help="Evidence: what happened")] = None,
    payment: Annotated[str | None, typer.Option(help="Evidence: the payment id (pay_...)")] = None,
) -> None:
    """File the merchant's report (pending until the operator or enough merchants confirm it)."""
    given = {
        "email": email,
        "phone": phone,
        "iban": iban,
        "ip": ip,
        "card_fingerprint": card_fingerprint,
        "device_id": device_id,
        "name_postcode": name_postcode,
    }
    evidence = {key: value for key, value in {"text": text, "payment": payment}.items() if value}

    async def work(session: AsyncSession, settings: Settings) -> list[dict[str, Any]]:
        found = await get_merchant_by_slug(session, merchant)
        identifiers = service.parse_identifiers({k: v for k, v in given.items() if v}, default_region(found))
        filed = await service.report_identifiers(
            session, settings, found, identifiers, category=category, evidence=evidence or None, actor=CLI
        )
        return [render_own_report(settings, item.report, item.entry) for item in filed]

    _run(work)


@blacklist_app.command("queue")
def queue(status: Status = "pending", limit: int = 50) -> None:
    """The operator's review queue, newest first."""

    async def work(session: AsyncSession, settings: Settings) -> list[dict[str, Any]]:
        rows = await operator.review_queue(session, status=status or None, starting_after=None, limit=limit)
        return [render_review(settings, *row) for row in rows]

    _run(work)


def _review(report_id: str, status: str, note: str | None) -> None:
    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        found, entry = await operator.review_report(
            session, settings, report_id, status=status, note=note, actor=CLI
        )
        merchant = await session.get(Merchant, found.merchant_id) if found.merchant_id else None
        return render_review(settings, found, entry, merchant)

    _run(work)


@blacklist_app.command("confirm")
def confirm(report_id: ReportId, note: Note = None) -> None:
    """Confirm a report: its entry becomes active."""
    _review(report_id, REPORT_CONFIRMED, note)


@blacklist_app.command("reject")
def reject(report_id: ReportId, note: Annotated[str, typer.Option(help="Why")]) -> None:
    """Reject a report."""
    _review(report_id, REPORT_REJECTED, note)


@blacklist_app.command("add")
def add(
    kind: Kind, value: Value, category: Category, text: Annotated[str | None, typer.Option()] = None
) -> None:
    """File an entry as the operator (confirmed at once)."""

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        entry, filed = await operator.operator_entry(
            session,
            settings,
            normalize(kind, value),
            category=category,
            evidence={"text": text} if text else None,
            actor=CLI,
        )
        return {**render_entry(entry), "report": filed.id}

    _run(work)


@blacklist_app.command("appeals")
def appeals(status: Status = "pending", limit: int = 50) -> None:
    """Appeals waiting for a decision, newest first."""

    async def work(session: AsyncSession, settings: Settings) -> list[dict[str, Any]]:
        rows = await operator.appeals(session, status=status or None, starting_after=None, limit=limit)
        return [render_appeal(settings, *row) for row in rows]

    _run(work)


def _decide(appeal_id: str, uphold: bool, note: str | None) -> None:
    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        appeal, entry = await operator.decide_appeal(
            session, settings, appeal_id, uphold=uphold, note=note, actor=CLI
        )
        return render_appeal(settings, appeal, entry)

    _run(work)


@blacklist_app.command("uphold")
def uphold(appeal_id: AppealId, note: Note = None) -> None:
    """Uphold an appeal: every report on the entry is rejected."""
    _decide(appeal_id, True, note)


@blacklist_app.command("dismiss")
def dismiss(appeal_id: AppealId, note: Note = None) -> None:
    """Dismiss an appeal: the entry stays."""
    _decide(appeal_id, False, note)


@blacklist_app.command("export")
def export(kind: Kind, value: Value) -> None:
    """Everything stored about one identifier (a data subject's access request)."""

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        identifier = normalize(kind, value)
        document = await operator.export_data_subject(session, settings, identifier)
        operator.record_export(session, identifier, CLI)
        return document

    _run(work)


@blacklist_app.command("erase")
def erase(kind: Kind, value: Value) -> None:
    """Delete every entry, report and appeal about one identifier."""

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        identifier = normalize(kind, value)
        erased = await operator.erase_data_subject(session, settings, identifier, CLI)
        return {"object": "data_subject_erasure", "kind": identifier.kind.value, "erased": erased}

    _run(work)
