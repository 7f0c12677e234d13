"""Admin pages: a merchant's blacklist reports, the customer check and the whitelist.

Every action calls what ``POST /api/v1/blacklist_reports``, ``POST /api/v1/screenings``
and ``/api/v1/whitelist`` call (``screening.service``, ``screening.decisions``,
``screening.whitelist``). A merchant sees its own reports only: no other
reporter, no evidence but its own, no count. The operator's review queue is in
``operator_review`` and mounted on this router, so the app needs no change.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from einlass.admin import operator_review
from einlass.admin.i18n import register
from einlass.admin.operator_review import evidence_items
from einlass.admin.page import Page, merchant_page
from einlass.errors import EinlassError, InvalidInput, NotFound
from einlass.members.models import Member
from einlass.members.service import find_member_by_email
from einlass.screening import service, whitelist
from einlass.screening.decisions import CONTEXT_CHECKOUT, default_region, get_decision, screen
from einlass.screening.identifiers import IdentifierKind
from einlass.screening.models import CATEGORIES, REPORT_CONFIRMED, REPORT_PENDING, ScreeningDecision

router = APIRouter()
router.include_router(operator_review.router)

PAGE_SIZE = 25
KINDS = [kind.value for kind in IdentifierKind]
MAX_PAYMENT_ID = 40

register(
    {
        # shared with the operator's pages
        "scr_kind": {"en": "Identifier", "de": "Merkmal"},
        "scr_kind_email": {"en": "Email address", "de": "E-Mail-Adresse"},
        "scr_kind_phone": {"en": "Phone number", "de": "Telefonnummer"},
        "scr_kind_iban": {"en": "IBAN", "de": "IBAN"},
        "scr_kind_card_fingerprint": {"en": "Card fingerprint", "de": "Karten-Fingerabdruck"},
        "scr_kind_ip": {"en": "IP address", "de": "IP-Adresse"},
        "scr_kind_device_id": {"en": "Device id", "de": "Geräte-ID"},
        "scr_kind_name_postcode": {"en": "Name and postcode", "de": "Name und Postleitzahl"},
        "scr_kind_member": {"en": "Member", "de": "Mitglied"},
        "scr_value": {"en": "Value", "de": "Wert"},
        "scr_category": {"en": "Category", "de": "Kategorie"},
        "scr_category_chargeback": {"en": "Chargeback", "de": "Rückbuchung"},
        "scr_category_fraud_attempt": {"en": "Fraud attempt", "de": "Betrugsversuch"},
        "scr_category_identity_misuse": {"en": "Identity misuse", "de": "Identitätsmissbrauch"},
        "scr_category_payment_default": {"en": "Payment default", "de": "Zahlungsausfall"},
        "scr_category_abuse": {"en": "Abuse", "de": "Missbrauch"},
        "scr_status": {"en": "Status", "de": "Status"},
        "scr_entry_status": {"en": "Entry", "de": "Eintrag"},
        "scr_status_pending": {"en": "pending review", "de": "wartet auf Prüfung"},
        "scr_status_unverified": {"en": "unverified", "de": "unbestätigt"},
        "scr_status_confirmed": {"en": "confirmed", "de": "bestätigt"},
        "scr_status_active": {"en": "active", "de": "aktiv"},
        "scr_status_rejected": {"en": "rejected", "de": "abgelehnt"},
        "scr_status_withdrawn": {"en": "withdrawn", "de": "zurückgezogen"},
        "scr_status_expired": {"en": "expired", "de": "abgelaufen"},
        "scr_status_upheld": {"en": "upheld", "de": "stattgegeben"},
        "scr_status_dismissed": {"en": "dismissed", "de": "zurückgewiesen"},
        "scr_when": {"en": "When", "de": "Wann"},
        "scr_note": {"en": "Note", "de": "Notiz"},
        "scr_actions": {"en": "Actions", "de": "Aktionen"},
        "scr_outcome_accept": {"en": "accept", "de": "annehmen"},
        "scr_outcome_review": {"en": "review", "de": "prüfen"},
        "scr_outcome_reject": {"en": "reject", "de": "ablehnen"},
        "scr_reason_whitelist": {"en": "On your whitelist ({kind})", "de": "Auf Ihrer Whitelist ({kind})"},
        "scr_reason_blacklist": {
            "en": "Blacklist: {kind}, {category} ({status})",
            "de": "Blacklist: {kind}, {category} ({status})",
        },
        "scr_no_reasons": {"en": "Nothing matched.", "de": "Keine Übereinstimmung."},
        # the merchant's blacklist page
        "scr_title_blacklist": {"en": "Blacklist", "de": "Blacklist"},
        "scr_blacklist_intro": {
            "en": "The blacklist is shared by every merchant of this instance. You see your own reports "
            "only; who else reported a customer stays hidden, as does your report from them.",
            "de": "Die Blacklist teilen sich alle Händler dieser Instanz. Sie sehen nur Ihre eigenen "
            "Meldungen; wer einen Kunden sonst gemeldet hat, bleibt verborgen, ebenso Ihre Meldung.",
        },
        "scr_check_heading": {"en": "Check a customer", "de": "Kunden prüfen"},
        "scr_check_hint": {
            "en": "Give what you know of the customer; the decision is recorded like one at checkout.",
            "de": "Geben Sie an, was Sie über den Kunden wissen; die Entscheidung wird wie eine an "
            "der Kasse gespeichert.",
        },
        "scr_member_field": {"en": "Member (id or email address)", "de": "Mitglied (ID oder E-Mail-Adresse)"},
        "scr_check_button": {"en": "Check", "de": "Prüfen"},
        "scr_check_needs_input": {
            "en": "give at least one identifier or a member",
            "de": "geben Sie mindestens ein Merkmal oder ein Mitglied an",
        },
        "scr_checked": {"en": "Decision: {outcome}.", "de": "Entscheidung: {outcome}."},
        "scr_result_heading": {"en": "Decision", "de": "Entscheidung"},
        "scr_outcome_explained_accept": {
            "en": "Accept: nothing speaks against this customer.",
            "de": "Annehmen: nichts spricht gegen diesen Kunden.",
        },
        "scr_outcome_explained_review": {
            "en": "Review: a report waits for review; please look at the order yourself.",
            "de": "Prüfen: eine Meldung wartet auf Prüfung; bitte sehen Sie sich die Bestellung selbst an.",
        },
        "scr_outcome_explained_reject": {
            "en": "Reject: a confirmed blacklist entry matches.",
            "de": "Ablehnen: ein bestätigter Blacklist-Eintrag passt.",
        },
        "scr_report_heading": {"en": "Report a customer", "de": "Kunden melden"},
        "scr_report_hint": {
            "en": "Only a keyed digest of the identifier is stored. The report waits for the operator's review.",
            "de": "Gespeichert wird nur ein verschlüsselter Hashwert des Merkmals. Die Meldung wartet auf "
            "die Prüfung durch den Betreiber.",
        },
        "scr_payment_field": {"en": "Payment id (optional)", "de": "Zahlungs-ID (optional)"},
        "scr_report_button": {"en": "Report", "de": "Melden"},
        "scr_reported": {"en": "The report was filed.", "de": "Die Meldung wurde eingereicht."},
        "scr_reported_before": {
            "en": "You had reported this customer already; nothing new was filed.",
            "de": "Sie hatten diesen Kunden bereits gemeldet; es wurde nichts Neues eingereicht.",
        },
        "scr_reports_heading": {"en": "Your reports", "de": "Ihre Meldungen"},
        "scr_withdraw_button": {"en": "Withdraw", "de": "Zurückziehen"},
        "scr_withdrawn": {
            "en": "The report was withdrawn and its evidence erased.",
            "de": "Die Meldung wurde zurückgezogen und ihr Nachweis gelöscht.",
        },
        "scr_evidence_too_long": {
            "en": "the evidence is longer than {limit} characters",
            "de": "der Nachweis ist länger als {limit} Zeichen",
        },
        "scr_decisions_heading": {"en": "Recent decisions", "de": "Letzte Entscheidungen"},
        "scr_context": {"en": "Where", "de": "Wo"},
        "scr_context_checkout": {"en": "checkout", "de": "Kasse"},
        "scr_context_payment": {"en": "payment", "de": "Zahlung"},
        "scr_outcome": {"en": "Outcome", "de": "Ergebnis"},
        "scr_reasons": {"en": "Reasons", "de": "Gründe"},
        # the whitelist page
        "scr_title_whitelist": {"en": "Whitelist", "de": "Whitelist"},
        "scr_whitelist_intro": {
            "en": "Customers on your whitelist are always accepted here, whatever the blacklist says. "
            "Identifiers are kept only as a keyed digest, so the value cannot be shown again.",
            "de": "Kunden auf Ihrer Whitelist werden hier immer angenommen, was auch immer die Blacklist "
            "sagt. Merkmale werden nur als verschlüsselter Hashwert gespeichert und können daher nicht "
            "wieder angezeigt werden.",
        },
        "scr_whitelist_heading": {"en": "On the whitelist", "de": "Auf der Whitelist"},
        "scr_add_member_heading": {"en": "Add a member", "de": "Mitglied hinzufügen"},
        "scr_add_identifier_heading": {"en": "Add an identifier", "de": "Merkmal hinzufügen"},
        "scr_add_button": {"en": "Add to the whitelist", "de": "Zur Whitelist hinzufügen"},
        "scr_remove_button": {"en": "Remove", "de": "Entfernen"},
        "scr_whitelisted": {"en": "Added to the whitelist.", "de": "Zur Whitelist hinzugefügt."},
        "scr_unwhitelisted": {"en": "Removed from the whitelist.", "de": "Von der Whitelist entfernt."},
        "scr_no_such_member": {"en": "no member {member}", "de": "kein Mitglied {member}"},
        "scr_identifier_hidden": {"en": "(stored as a digest)", "de": "(als Hashwert gespeichert)"},
    }
)


def kind_options(page: Page) -> list[tuple[str, str]]:
    return [(kind, page.t(f"scr_kind_{kind}")) for kind in KINDS]


def category_options(page: Page) -> list[tuple[str, str]]:
    return [(category, page.t(f"scr_category_{category}")) for category in CATEGORIES]


async def _member_id(session: AsyncSession, page: Page, given: str) -> str:
    """A member of this merchant named by id or by email address."""
    if "@" not in given:
        return given
    member = await find_member_by_email(session, page.merchant_id, given)
    if member is None:
        raise NotFound(page.t("scr_no_such_member", member=given), param="member")
    return member.id


# ------------------------------------------------------------------ blacklist


@router.get("/m/{slug}/blacklist")
async def blacklist(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    after = request.query_params.get("after") or None
    async with page.db.transaction() as session:
        rows = await service.merchant_reports(
            session, page.merchant_id, starting_after=after, limit=PAGE_SIZE + 1
        )
        decision = None
        if wanted := request.query_params.get("screening"):
            try:
                decision = await get_decision(session, page.merchant_id, wanted)
            except NotFound:
                raise page.not_found() from None
        decisions = list(
            await session.scalars(
                select(ScreeningDecision)
                .where(ScreeningDecision.merchant_id == page.merchant_id)
                .order_by(ScreeningDecision.id.desc())
                .limit(10)
            )
        )
    reports = [
        {
            "report": report,
            "entry": entry,
            "evidence": evidence_items(page, service.unseal(page.settings, report.evidence)),
            "can_withdraw": report.status in (REPORT_PENDING, REPORT_CONFIRMED),
        }
        for report, entry in rows[:PAGE_SIZE]
    ]
    next_href = page.url("blacklist", after=rows[PAGE_SIZE - 1][0].id) if len(rows) > PAGE_SIZE else None
    return page.render(
        "screening/blacklist.html",
        title=page.t("scr_title_blacklist"),
        reports=reports,
        decision=decision,
        decisions=decisions,
        kinds=kind_options(page),
        categories=category_options(page),
        next_href=next_href,
        first_href=page.url("blacklist") if after else None,
    )


@router.post("/m/{slug}/blacklist")
async def file_report(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    text, payment = form.get("text", "").strip(), form.get("payment", "").strip()
    evidence = {key: value for key, value in {"text": text, "payment": payment}.items() if value}

    async def work(session: AsyncSession) -> str:
        if len(text) > service.MAX_EVIDENCE_TEXT or len(payment) > MAX_PAYMENT_ID:
            limit = service.MAX_EVIDENCE_TEXT if len(text) > service.MAX_EVIDENCE_TEXT else MAX_PAYMENT_ID
            raise InvalidInput(page.t("scr_evidence_too_long", limit=limit), param="evidence")
        assert page.merchant is not None
        identifiers = service.parse_identifiers(
            {form.get("kind", ""): form.get("value", "")}, default_region(page.merchant)
        )
        filed = await service.report_identifiers(
            session,
            page.settings,
            page.merchant,
            identifiers,
            category=form.get("category", ""),
            evidence=evidence or None,
            actor=page.actor,
        )
        again = all(item.already_reported for item in filed)
        return page.t("scr_reported_before" if again else "scr_reported")

    return await page.act(page.url("blacklist"), work)


@router.post("/m/{slug}/blacklist/{report_id}/withdraw")
async def withdraw(request: Request, slug: str, report_id: str) -> Response:
    page = await merchant_page(request, slug)
    await page.form()

    async def work(session: AsyncSession) -> str:
        await service.withdraw_report(session, page.settings, page.merchant_id, report_id, page.actor)
        return page.t("scr_withdrawn")

    return await page.act(page.url("blacklist"), work, missing=True)


@router.post("/m/{slug}/blacklist/check")
async def check(request: Request, slug: str) -> Response:
    """The same decision as ``POST /api/v1/screenings``, stored like every decision."""
    page = await merchant_page(request, slug)
    form = await page.form()
    identifiers = {kind: form[kind].strip() for kind in KINDS if form.get(kind, "").strip()}
    member = form.get("member", "").strip() or None
    back = page.url("blacklist")
    try:
        if not identifiers and member is None:
            raise InvalidInput(page.t("scr_check_needs_input"), param="identifiers")
        assert page.merchant is not None
        async with page.db.transaction() as session:
            member_id = await _member_id(session, page, member) if member else None
            decision = await screen(
                session,
                page.settings,
                page.merchant,
                identifiers,
                member_id=member_id,
                context=CONTEXT_CHECKOUT,
            )
    except EinlassError as error:
        return page.redirect(back, error=page.failed(error.message))
    outcome = page.t(f"scr_outcome_{decision.outcome}")
    return page.redirect(
        page.url("blacklist", screening=decision.id) + "#decision",
        notice=page.t("scr_checked", outcome=outcome),
    )


# ------------------------------------------------------------------ whitelist


@router.get("/m/{slug}/whitelist")
async def whitelist_page(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    after = request.query_params.get("after") or None
    async with page.db.transaction() as session:
        rows = await whitelist.list_entries(
            session, page.merchant_id, starting_after=after, limit=PAGE_SIZE + 1
        )
        member_ids = [entry.member_id for entry in rows[:PAGE_SIZE] if entry.member_id]
        members = {
            member.id: member
            for member in await session.scalars(
                select(Member).where(Member.merchant_id == page.merchant_id, Member.id.in_(member_ids))
            )
        }
    entries = [{"entry": entry, "member": members.get(entry.member_id or "")} for entry in rows[:PAGE_SIZE]]
    next_href = page.url("whitelist", after=rows[PAGE_SIZE - 1].id) if len(rows) > PAGE_SIZE else None
    return page.render(
        "screening/whitelist.html",
        title=page.t("scr_title_whitelist"),
        entries=entries,
        kinds=kind_options(page),
        next_href=next_href,
        first_href=page.url("whitelist") if after else None,
    )


@router.post("/m/{slug}/whitelist")
async def add_to_whitelist(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    form = await page.form()
    by_member = form.get("by") == "member"
    note = form.get("member_note" if by_member else "note", "").strip() or None

    async def work(session: AsyncSession) -> str:
        assert page.merchant is not None
        member_id = kind = value = None
        if by_member:
            given = form.get("member", "").strip()
            member_id = await _member_id(session, page, given) if given else None
        else:
            kind, value = form.get("kind") or None, form.get("value") or None
        await whitelist.add_entry(
            session,
            page.settings,
            page.merchant,
            member_id=member_id,
            kind=kind,
            value=value,
            note=note,
            actor=page.actor,
        )
        return page.t("scr_whitelisted")

    return await page.act(page.url("whitelist"), work)


@router.post("/m/{slug}/whitelist/{entry_id}/remove")
async def remove_from_whitelist(request: Request, slug: str, entry_id: str) -> Response:
    page = await merchant_page(request, slug)
    await page.form()

    async def work(session: AsyncSession) -> str:
        await whitelist.remove_entry(session, page.merchant_id, entry_id, page.actor)
        return page.t("scr_unwhitelisted")

    return await page.act(page.url("whitelist"), work, missing=True)
