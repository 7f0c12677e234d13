"""Admin pages: the operator's blacklist review (queue, direct entries, appeals).

The same functions as ``/api/v1/operator/...`` and ``einlass blacklist ...``
(``screening.operator_service``), with the logged-in operator as the actor.
Anyone but the operator gets a 404. The router is included by
``admin.screening``, which registers the labels of kinds, categories and
statuses both use; the evidence labels are registered here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.admin.i18n import register
from einlass.admin.page import Page, admin_url, operator_page
from einlass.errors import InvalidInput
from einlass.screening import operator_service as operator
from einlass.screening import service
from einlass.screening.identifiers import IdentifierKind
from einlass.screening.models import (
    CATEGORIES,
    REPORT_CONFIRMED,
    REPORT_PENDING,
    REPORT_REJECTED,
    REPORT_UNVERIFIED,
    REPORT_WITHDRAWN,
    Appeal,
    BlacklistReport,
)

router = APIRouter()

PAGE_SIZE = 25
MAX_NOTE = 2000
COUNT_CAP = 1000
REPORT_STATUSES = (REPORT_PENDING, REPORT_UNVERIFIED, REPORT_CONFIRMED, REPORT_REJECTED, REPORT_WITHDRAWN)
APPEAL_STATUSES = (operator.APPEAL_PENDING, operator.APPEAL_UPHELD, operator.APPEAL_DISMISSED)
ALL = "all"

register(
    {
        # evidence and statements, also on the merchant's own reports
        "scr_evidence": {"en": "Evidence", "de": "Nachweis"},
        "scr_evidence_text": {"en": "What happened", "de": "Was geschehen ist"},
        "scr_evidence_payment": {"en": "Payment", "de": "Zahlung"},
        "scr_evidence_statement": {"en": "Statement", "de": "Stellungnahme"},
        "scr_evidence_kinds": {"en": "Further identifiers", "de": "Weitere Merkmale"},
        "scr_evidence_kind": {"en": "Identifier", "de": "Merkmal"},
        "scr_evidence_lang": {"en": "Language", "de": "Sprache"},
        "rev_title": {"en": "Blacklist review", "de": "Blacklist-Prüfung"},
        "rev_intro": {
            "en": "Reports from merchants and end customers wait here for your decision. A confirmed "
            "report makes its entry active: screening then rejects the customer at every merchant.",
            "de": "Meldungen von Händlern und Endkunden warten hier auf Ihre Entscheidung. Eine bestätigte "
            "Meldung macht ihren Eintrag aktiv: die Prüfung lehnt den Kunden dann bei jedem Händler ab.",
        },
        "rev_waiting_heading": {"en": "Waiting for you", "de": "Wartet auf Sie"},
        "rev_pending_reports": {"en": "Reports to review", "de": "Zu prüfende Meldungen"},
        "rev_pending_appeals": {"en": "Appeals to decide", "de": "Zu entscheidende Widersprüche"},
        "rev_queue_heading": {"en": "Reports", "de": "Meldungen"},
        "rev_show": {"en": "Show", "de": "Anzeigen"},
        "rev_all": {"en": "all", "de": "alle"},
        "rev_report": {"en": "Report {id}", "de": "Meldung {id}"},
        "rev_reporter": {"en": "Reported by", "de": "Gemeldet von"},
        "rev_source_merchant_report": {"en": "Merchant", "de": "Händler"},
        "rev_source_end_customer_report": {
            "en": "The person concerned (end customer)",
            "de": "Die betroffene Person (Endkunde)",
        },
        "rev_source_operator": {"en": "Operator", "de": "Betreiber"},
        "rev_report_status": {"en": "Report", "de": "Meldung"},
        "rev_on_entry": {"en": "Reports on this entry", "de": "Meldungen zu diesem Eintrag"},
        "rev_on_entry_counts": {
            "en": "{reports}; merchants among the reporters: {merchants}",
            "de": "{reports}; meldende Händler darunter: {merchants}",
        },
        "rev_filed": {"en": "Filed", "de": "Eingereicht"},
        "rev_expires": {"en": "Entry expires", "de": "Eintrag läuft ab"},
        "rev_review_note": {"en": "Review note", "de": "Prüfnotiz"},
        "rev_no_evidence": {"en": "none", "de": "keiner"},
        "rev_confirm_note": {"en": "Note (optional)", "de": "Notiz (optional)"},
        "rev_confirm_button": {"en": "Confirm", "de": "Bestätigen"},
        "rev_reject_note": {"en": "Reason for rejecting", "de": "Grund der Ablehnung"},
        "rev_reject_button": {"en": "Reject", "de": "Ablehnen"},
        "rev_confirmed": {
            "en": "Report {id} confirmed; its entry is now {status}.",
            "de": "Meldung {id} bestätigt; ihr Eintrag ist jetzt {status}.",
        },
        "rev_rejected": {
            "en": "Report {id} rejected; its entry is now {status}.",
            "de": "Meldung {id} abgelehnt; ihr Eintrag ist jetzt {status}.",
        },
        "rev_note_required": {
            "en": "say why the report is rejected",
            "de": "geben Sie an, warum die Meldung abgelehnt wird",
        },
        "rev_note_too_long": {
            "en": "the note is longer than {limit} characters",
            "de": "die Notiz ist länger als {limit} Zeichen",
        },
        "rev_none_waiting": {"en": "Nothing here.", "de": "Hier ist nichts."},
        "rev_entry_heading": {"en": "Add an entry", "de": "Eintrag hinzufügen"},
        "rev_entry_hint": {
            "en": "Your entry is confirmed at once. Give phone numbers in international format "
            "(national numbers are read as German).",
            "de": "Ihr Eintrag gilt sofort als bestätigt. Geben Sie Telefonnummern international an "
            "(nationale Nummern werden als deutsche gelesen).",
        },
        "rev_entry_button": {"en": "Add to the blacklist", "de": "Zur Blacklist hinzufügen"},
        "rev_entry_added": {
            "en": "The entry was added; it is {status}.",
            "de": "Der Eintrag wurde hinzugefügt; er ist {status}.",
        },
        "rev_appeals_heading": {"en": "Appeals", "de": "Widersprüche"},
        "rev_appeal": {"en": "Appeal", "de": "Widerspruch"},
        "rev_statement": {"en": "Statement", "de": "Stellungnahme"},
        "rev_decision_note": {"en": "Note", "de": "Notiz"},
        "rev_uphold_button": {"en": "Uphold (remove the entry)", "de": "Stattgeben (Eintrag aufheben)"},
        "rev_dismiss_button": {"en": "Dismiss", "de": "Zurückweisen"},
        "rev_upheld": {
            "en": "The appeal was upheld; the entry is now {status}.",
            "de": "Dem Widerspruch wurde stattgegeben; der Eintrag ist jetzt {status}.",
        },
        "rev_dismissed": {
            "en": "The appeal was dismissed; the entry stays {status}.",
            "de": "Der Widerspruch wurde zurückgewiesen; der Eintrag bleibt {status}.",
        },
        "rev_links": {"en": "See also", "de": "Siehe auch"},
        "rev_link_merchants": {"en": "All merchants", "de": "Alle Händler"},
        "rev_link_privacy": {
            "en": "Data-subject requests (export, erasure): CLI einlass blacklist export / erase, "
            "or the operator API.",
            "de": "Anfragen betroffener Personen (Auskunft, Löschung): CLI einlass blacklist export / "
            "erase oder die Betreiber-API.",
        },
    }
)


def _status(value: str | None, known: tuple[str, ...]) -> str:
    """The chosen filter: a known status, "all", or the default pending."""
    return value if value in known or value == ALL else known[0]


def _note(page: Page, form: dict[str, str], *, required: bool = False) -> str | None:
    note = form.get("note", "").strip()
    if required and not note:
        raise InvalidInput(page.t("rev_note_required"), param="note")
    if len(note) > MAX_NOTE:
        raise InvalidInput(page.t("rev_note_too_long", limit=MAX_NOTE), param="note")
    return note or None


def _back() -> str:
    return admin_url("operator/blacklist")


EVIDENCE_FIELDS = ("text", "payment", "statement", "kinds", "kind", "lang")


def evidence_items(page: Page, document: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Decrypted evidence as (label, text) pairs, known fields labelled in the page's language."""
    items = []
    for key, value in (document or {}).items():
        if value in (None, "", []):
            continue
        label = page.t(f"scr_evidence_{key}") if key in EVIDENCE_FIELDS else key
        shown = ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)
        items.append((label, shown))
    return items


@router.get("/operator/blacklist")
async def review(request: Request) -> Response:
    page = await operator_page(request)
    query = request.query_params
    status = _status(query.get("status"), REPORT_STATUSES)
    appeal_status = _status(query.get("appeals"), APPEAL_STATUSES)
    after, appeals_after = query.get("after") or None, query.get("appeals_after") or None
    async with page.db.transaction() as session:
        rows = await operator.review_queue(
            session,
            status=None if status == ALL else status,
            starting_after=after,
            limit=PAGE_SIZE + 1,
        )
        appeal_rows = await operator.appeals(
            session,
            status=None if appeal_status == ALL else appeal_status,
            starting_after=appeals_after,
            limit=PAGE_SIZE + 1,
        )
        counts = await _entry_counts(session, [entry.id for _, entry, _ in rows[:PAGE_SIZE]])
        waiting = {
            "reports": await _capped_count(
                session, BlacklistReport, BlacklistReport.status == REPORT_PENDING
            ),
            "appeals": await _capped_count(session, Appeal, Appeal.status == operator.APPEAL_PENDING),
        }
    reports = [
        {
            "report": report,
            "entry": entry,
            "merchant": merchant,
            "evidence": evidence_items(page, service.unseal(page.settings, report.evidence)),
            "counts": counts.get(entry.id, {"reports": 0, "merchants": 0}),
        }
        for report, entry, merchant in rows[:PAGE_SIZE]
    ]
    appeals = [
        {
            "appeal": appeal,
            "entry": entry,
            "statement": evidence_items(page, service.unseal(page.settings, appeal.statement)),
        }
        for appeal, entry in appeal_rows[:PAGE_SIZE]
    ]
    here = {"status": status, "appeals": appeal_status}
    return page.render(
        "screening/review.html",
        title=page.t("rev_title"),
        reports=reports,
        appeals=appeals,
        waiting=waiting,
        count_cap=COUNT_CAP,
        report_status=status,
        appeal_status=appeal_status,
        status_options=[(value, page.t(f"scr_status_{value}")) for value in REPORT_STATUSES]
        + [(ALL, page.t("rev_all"))],
        appeal_options=[(value, page.t(f"scr_status_{value}")) for value in APPEAL_STATUSES]
        + [(ALL, page.t("rev_all"))],
        kinds=[(kind.value, page.t(f"scr_kind_{kind.value}")) for kind in IdentifierKind],
        categories=[(category, page.t(f"scr_category_{category}")) for category in CATEGORIES],
        next_href=admin_url("operator/blacklist", **here, after=rows[PAGE_SIZE - 1][0].id)
        if len(rows) > PAGE_SIZE
        else None,
        first_href=admin_url("operator/blacklist", **here) if after else None,
        appeals_next_href=admin_url(
            "operator/blacklist", **here, appeals_after=appeal_rows[PAGE_SIZE - 1][0].id
        )
        if len(appeal_rows) > PAGE_SIZE
        else None,
        appeals_first_href=admin_url("operator/blacklist", **here) if appeals_after else None,
    )


async def _capped_count(session: AsyncSession, model: Any, condition: Any) -> int:
    """How many, counting stops one past the cap (the page then says "1000+")."""
    capped = select(model.id).where(condition).limit(COUNT_CAP + 1).subquery()
    return int(await session.scalar(select(func.count()).select_from(capped)) or 0)


async def _entry_counts(session: AsyncSession, entry_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per entry: live reports (not withdrawn, not unverified) and how many merchants filed them."""
    reports: dict[str, int] = defaultdict(int)
    merchants: dict[str, set[str]] = defaultdict(set)
    if entry_ids:
        rows = await session.execute(
            select(BlacklistReport.entry_id, BlacklistReport.merchant_id).where(
                BlacklistReport.entry_id.in_(entry_ids),
                BlacklistReport.status.not_in((REPORT_WITHDRAWN, REPORT_UNVERIFIED)),
            )
        )
        for entry_id, merchant_id in rows:
            reports[entry_id] += 1
            if merchant_id:
                merchants[entry_id].add(merchant_id)
    return {key: {"reports": reports[key], "merchants": len(merchants[key])} for key in reports}


async def _review_report(request: Request, report_id: str, status: str) -> Response:
    page = await operator_page(request)
    form = await page.form()

    async def work(session: AsyncSession) -> str:
        note = _note(page, form, required=status == REPORT_REJECTED)
        report, entry = await operator.review_report(
            session, page.settings, report_id, status=status, note=note, actor=page.actor
        )
        key = "rev_confirmed" if status == REPORT_CONFIRMED else "rev_rejected"
        return page.t(key, id=report.id, status=page.t(f"scr_status_{entry.status}"))

    return await page.act(_back(), work, missing=True)


@router.post("/operator/blacklist/{report_id}/confirm")
async def confirm(request: Request, report_id: str) -> Response:
    return await _review_report(request, report_id, REPORT_CONFIRMED)


@router.post("/operator/blacklist/{report_id}/reject")
async def reject(request: Request, report_id: str) -> Response:
    return await _review_report(request, report_id, REPORT_REJECTED)


@router.post("/operator/blacklist/entries")
async def add_entry(request: Request) -> Response:
    page = await operator_page(request)
    form = await page.form()
    text = form.get("text", "").strip()

    async def work(session: AsyncSession) -> str:
        if len(text) > service.MAX_EVIDENCE_TEXT:
            raise InvalidInput(page.t("scr_evidence_too_long", limit=service.MAX_EVIDENCE_TEXT))
        # National phone numbers as German, as the operator API and CLI read them.
        [identifier] = service.parse_identifiers({form.get("kind", ""): form.get("value", "")})
        entry, _ = await operator.operator_entry(
            session,
            page.settings,
            identifier,
            category=form.get("category", ""),
            evidence={"text": text} if text else None,
            actor=page.actor,
        )
        return page.t("rev_entry_added", status=page.t(f"scr_status_{entry.status}"))

    return await page.act(_back(), work)


async def _decide(request: Request, appeal_id: str, uphold: bool) -> Response:
    page = await operator_page(request)
    form = await page.form()

    async def work(session: AsyncSession) -> str:
        note = _note(page, form)
        _, entry = await operator.decide_appeal(
            session, page.settings, appeal_id, uphold=uphold, note=note, actor=page.actor
        )
        key = "rev_upheld" if uphold else "rev_dismissed"
        return page.t(key, status=page.t(f"scr_status_{entry.status}"))

    return await page.act(_back(), work, missing=True)


@router.post("/operator/blacklist/appeals/{appeal_id}/uphold")
async def uphold(request: Request, appeal_id: str) -> Response:
    return await _decide(request, appeal_id, True)


@router.post("/operator/blacklist/appeals/{appeal_id}/dismiss")
async def dismiss(request: Request, appeal_id: str) -> Response:
    return await _decide(request, appeal_id, False)
