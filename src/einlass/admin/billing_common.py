"""What the admin's payments and subscriptions pages share: keyset pages, lookups, labels, strings.

Used by ``admin.billing`` (received events, payments) and ``admin.billing_subscriptions``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.admin.i18n import MESSAGES, NO_VALUE, register
from einlass.admin.page import Page
from einlass.billing.catalogue import list_plans
from einlass.billing.models import Plan
from einlass.db.util import newest_first
from einlass.members.models import Member

PAGE_SIZE = 50
MAX_CURSOR = 60
T = TypeVar("T")


def label(page: Page, group: str, value: str | None) -> str:
    """A stored code (a status, a cause, an action) in the page's language; unknown codes as they are."""
    if value is None:
        return NO_VALUE
    key = f"billing_{group}_{value}"
    return page.t(key) if key in MESSAGES else value


def choice(value: str | None, allowed: Iterable[str]) -> str:
    """A filter value from the query string: one of ``allowed``, else no filter ("")."""
    return value if value and value in set(allowed) else ""


@dataclass
class KeysetPage(Generic[T]):
    rows: list[T]
    next_after: str | None  # the cursor of the next page, if there is one
    first: bool  # this is the first page


def pager_links(page: Page, path: str, found: KeysetPage[Any], **filters: str | None) -> dict[str, Any]:
    """``next_href`` and ``first_href`` for ``ui.pager``: the list at ``path`` with its filters kept."""
    return {
        "next_href": page.url(path, **filters, after=found.next_after) if found.next_after else None,
        "first_href": None if found.first else page.url(path, **filters),
    }


async def keyset_page(
    session: AsyncSession, query: Select[Any], id_column: Any, after: str | None, size: int | None = None
) -> KeysetPage[Any]:
    """Newest first (ids sort by creation), ``size`` (default ``PAGE_SIZE``) rows after the cursor ``after``."""
    size = size or PAGE_SIZE
    cursor = (after or "")[:MAX_CURSOR] or None
    rows = await newest_first(session, query, id_column, starting_after=cursor, limit=size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(rows, rows[-1].id if more and rows else None, cursor is None)


async def members_by_id(
    session: AsyncSession, merchant_id: str, ids: Iterable[str | None]
) -> dict[str, Member]:
    wanted = sorted({member_id for member_id in ids if member_id})
    if not wanted:
        return {}
    rows = await session.scalars(
        select(Member).where(Member.merchant_id == merchant_id, Member.id.in_(wanted))
    )
    return {member.id: member for member in rows}


async def plans_by_id(session: AsyncSession, merchant_id: str) -> dict[str, Plan]:
    """The merchant's plans by id, in the order of their names."""
    rows = sorted(await list_plans(session, merchant_id), key=lambda plan: plan.name)
    return {plan.id: plan for plan in rows}


def member_name(member: Member | None, member_id: str | None) -> str:
    """How a member is shown in a list: email, else name, else id (an erased member keeps only the id)."""
    if member is not None:
        return member.email or member.name or member.id
    return member_id or NO_VALUE


def options(page: Page, values: Sequence[str], group: str | None = None) -> list[tuple[str, str]]:
    """Choices for a filter: "All" first, then each value (translated through ``group``)."""
    return [("", page.t("billing_all"))] + [
        (value, label(page, group, value) if group else value) for value in values
    ]


register(
    {
        # lists and filters
        "billing_tab_inbox": {"en": "Received events", "de": "Empfangene Ereignisse"},
        "billing_tab_ledger": {"en": "Payments", "de": "Zahlungen"},
        "billing_tabs": {"en": "Payment views", "de": "Ansichten der Zahlungen"},
        "billing_filter": {"en": "Show", "de": "Anzeigen"},
        "billing_filters": {"en": "Filters", "de": "Filter"},
        "billing_all": {"en": "All", "de": "Alle"},
        "billing_status": {"en": "Status", "de": "Status"},
        "billing_gateway": {"en": "Gateway", "de": "Zahlungsanbieter"},
        "billing_plan": {"en": "Plan", "de": "Tarif"},
        "billing_member": {"en": "Member", "de": "Mitglied"},
        "billing_received": {"en": "Received", "de": "Empfangen"},
        "billing_applied_at": {"en": "Applied", "de": "Verarbeitet"},
        "billing_type": {"en": "Type", "de": "Typ"},
        "billing_event_key": {"en": "Event identity", "de": "Ereigniskennung"},
        "billing_attempts": {"en": "Attempts", "de": "Versuche"},
        "billing_error": {"en": "Error", "de": "Fehler"},
        "billing_details": {"en": "Details", "de": "Details"},
        "billing_created": {"en": "Created", "de": "Angelegt"},
        "billing_amount": {"en": "Amount", "de": "Betrag"},
        "billing_paid": {"en": "Paid", "de": "Bezahlt"},
        "billing_refunded": {"en": "Refunded", "de": "Erstattet"},
        "billing_charged_back": {"en": "Charged back", "de": "Zurückgebucht"},
        "billing_yes": {"en": "yes", "de": "ja"},
        "billing_no": {"en": "no", "de": "nein"},
        "billing_screening": {"en": "Screening", "de": "Prüfung"},
        "billing_external_id": {"en": "Gateway's id", "de": "Kennung beim Zahlungsanbieter"},
        "billing_customer": {"en": "Customer email", "de": "E-Mail-Adresse des Kunden"},
        "billing_order": {"en": "Order", "de": "Bestellung"},
        "billing_confirmed_at": {"en": "Confirmed", "de": "Bestätigt"},
        "billing_no_member": {"en": "no member", "de": "kein Mitglied"},
        "billing_none_found": {"en": "Nothing matches.", "de": "Keine Treffer."},
        "billing_inbox_intro": {
            "en": "Every request a payment gateway sent, exactly as it arrived, newest first.",
            "de": "Jede Anfrage eines Zahlungsanbieters, genau wie sie ankam, die neuesten zuerst.",
        },
        "billing_ledger_intro": {
            "en": "The payments the received events led to, newest first.",
            "de": "Die Zahlungen, zu denen die empfangenen Ereignisse geführt haben, die neuesten zuerst.",
        },
        # one received event
        "billing_title_event": {"en": "Received event {id}", "de": "Empfangenes Ereignis {id}"},
        "billing_parked_on": {
            "en": "Waiting for {ref} to arrive.",
            "de": "Wartet auf das Eintreffen von {ref}.",
        },
        "billing_led_to": {"en": "What it led to", "de": "Was daraus wurde"},
        "billing_led_to_nothing": {
            "en": "No payment or subscription yet.",
            "de": "Noch keine Zahlung und kein Abo.",
        },
        "billing_headers": {"en": "Headers", "de": "Header"},
        "billing_header_name": {"en": "Header", "de": "Header"},
        "billing_header_value": {"en": "Value", "de": "Wert"},
        "billing_redacted": {"en": "(hidden)", "de": "(verborgen)"},
        "billing_payload": {"en": "Payload", "de": "Inhalt"},
        "billing_payload_binary": {
            "en": "The payload is not text; shown as Base64.",
            "de": "Der Inhalt ist kein Text; er wird als Base64 gezeigt.",
        },
        "billing_reprocess": {"en": "Reprocess", "de": "Erneut verarbeiten"},
        "billing_reprocess_hint": {
            "en": "Applies the stored event again, e.g. after its payment arrived or a plan reference was added.",
            "de": "Wendet das gespeicherte Ereignis erneut an, z. B. nachdem seine Zahlung eingetroffen "
            "ist oder eine Tarif-Referenz ergänzt wurde.",
        },
        "billing_reprocessed": {
            "en": "The event was processed again; its status is now: {status}.",
            "de": "Das Ereignis wurde erneut verarbeitet; sein Status ist jetzt: {status}.",
        },
        # one payment
        "billing_title_payment": {"en": "Payment {id}", "de": "Zahlung {id}"},
        "billing_status_history": {"en": "Status history", "de": "Statusverlauf"},
        "billing_from": {"en": "From", "de": "Von"},
        "billing_to": {"en": "To", "de": "Nach"},
        "billing_at": {"en": "When", "de": "Wann"},
        "billing_event": {"en": "Event", "de": "Ereignis"},
        "billing_events_of_payment": {"en": "Received events", "de": "Empfangene Ereignisse"},
        # subscriptions
        "billing_subscription": {"en": "Subscription", "de": "Abo"},
        "billing_subscriptions_intro": {
            "en": "The merchant's subscriptions, newest first.",
            "de": "Die Abos des Händlers, die neuesten zuerst.",
        },
        "billing_title_subscription": {"en": "Subscription {id}", "de": "Abo {id}"},
        "billing_paid_through": {"en": "Paid through", "de": "Bezahlt bis"},
        "billing_access_until": {"en": "Access until", "de": "Zugang bis"},
        "billing_pending_plan": {"en": "Next plan", "de": "Nächster Tarif"},
        "billing_interval": {"en": "Billing interval", "de": "Abrechnungsintervall"},
        "billing_started": {"en": "Started", "de": "Begonnen"},
        "billing_paused_at": {"en": "Paused since", "de": "Pausiert seit"},
        "billing_resume_at": {"en": "Resumes on", "de": "Wird fortgesetzt am"},
        "billing_cancel_at": {"en": "Ends on", "de": "Endet am"},
        "billing_ended_at": {"en": "Ended", "de": "Beendet"},
        "billing_cycles_paid": {"en": "Periods paid", "de": "Bezahlte Zeiträume"},
        "billing_next_change": {"en": "Next status change", "de": "Nächste Statusänderung"},
        "billing_cause": {"en": "Cause", "de": "Anlass"},
        "billing_actions": {"en": "Actions", "de": "Aktionen"},
        "billing_actions_none": {"en": "No actions yet.", "de": "Noch keine Aktionen."},
        "billing_action": {"en": "Action", "de": "Aktion"},
        "billing_requested": {"en": "Requested", "de": "Angefordert"},
        "billing_requested_by": {"en": "By", "de": "Von"},
        "billing_gateway_message": {"en": "Gateway's answer", "de": "Antwort des Zahlungsanbieters"},
        "billing_actions_note": {
            "en": "An action applies here at once and is then sent to the gateway; if the gateway "
            "refuses, it is undone and shown below with the gateway's answer.",
            "de": "Eine Aktion gilt hier sofort und wird dann an den Zahlungsanbieter gesendet; lehnt "
            "dieser ab, wird sie zurückgenommen und unten mit seiner Antwort angezeigt.",
        },
        "billing_ended_no_actions": {
            "en": "This subscription has ended; no further actions are possible.",
            "de": "Dieses Abo ist beendet; weitere Aktionen sind nicht möglich.",
        },
        "billing_read_only": {
            "en": "Your role may only read; actions are not available.",
            "de": "Ihre Rolle darf nur lesen; Aktionen sind nicht verfügbar.",
        },
        "billing_resume_on": {"en": "Resume on (optional)", "de": "Fortsetzen am (optional)"},
        "billing_resume_on_hint": {
            "en": "Leave empty to pause until resumed by hand.",
            "de": "Leer lassen, um bis zur manuellen Fortsetzung zu pausieren.",
        },
        "billing_reason": {"en": "Reason (optional)", "de": "Grund (optional)"},
        "billing_cancel_subscription": {"en": "Cancel subscription", "de": "Abo kündigen"},
        "billing_cancel_when": {"en": "When", "de": "Wann"},
        "billing_cancel_period_end": {
            "en": "At the end of the paid period",
            "de": "Zum Ende des bezahlten Zeitraums",
        },
        "billing_cancel_now": {
            "en": "Now (access ends at once)",
            "de": "Sofort (der Zugang endet sofort)",
        },
        "billing_new_plan": {"en": "New plan", "de": "Neuer Tarif"},
        "billing_new_plan_hint": {
            "en": "An upgrade applies now, a downgrade at the end of the period.",
            "de": "Ein Upgrade gilt sofort, ein Downgrade zum Ende des Zeitraums.",
        },
        "billing_no_other_plan": {
            "en": "There is no other active subscription plan.",
            "de": "Es gibt keinen anderen aktiven Abo-Tarif.",
        },
        "billing_action_requested": {
            "en": "{action}: done here and sent to the gateway.",
            "de": "{action}: hier erledigt und an den Zahlungsanbieter gesendet.",
        },
        "billing_error_resume_on": {
            "en": "the resume date must be a date such as 2026-04-01",
            "de": "das Datum der Fortsetzung muss ein Datum wie 2026-04-01 sein",
        },
        # received events: status
        "billing_inbox_received": {"en": "received", "de": "empfangen"},
        "billing_inbox_applied": {"en": "applied", "de": "verarbeitet"},
        "billing_inbox_parked": {"en": "parked (waiting)", "de": "zurückgestellt (wartet)"},
        "billing_inbox_failed": {"en": "failed", "de": "fehlgeschlagen"},
        "billing_inbox_ignored": {"en": "ignored", "de": "ignoriert"},
        # payments: status and screening
        "billing_payment_pending": {"en": "pending", "de": "ausstehend"},
        "billing_payment_on_hold": {"en": "on hold", "de": "zurückgehalten"},
        "billing_payment_confirmed": {"en": "confirmed", "de": "bestätigt"},
        "billing_payment_partially_refunded": {"en": "partially refunded", "de": "teilweise erstattet"},
        "billing_payment_refunded": {"en": "refunded", "de": "erstattet"},
        "billing_payment_charged_back": {"en": "charged back", "de": "zurückgebucht"},
        "billing_payment_failed": {"en": "failed", "de": "fehlgeschlagen"},
        "billing_payment_cancelled": {"en": "cancelled", "de": "storniert"},
        "billing_screening_accept": {"en": "accepted", "de": "angenommen"},
        "billing_screening_review": {"en": "to review", "de": "zu prüfen"},
        "billing_screening_reject": {"en": "rejected", "de": "abgelehnt"},
        # subscriptions: status, causes, actions
        "billing_sub_pending": {"en": "pending", "de": "ausstehend"},
        "billing_sub_trialing": {"en": "trial", "de": "Testphase"},
        "billing_sub_active": {"en": "active", "de": "aktiv"},
        "billing_sub_past_due": {"en": "past due", "de": "überfällig"},
        "billing_sub_paused": {"en": "paused", "de": "pausiert"},
        "billing_sub_cancelled": {"en": "cancelled", "de": "gekündigt"},
        "billing_sub_expired": {"en": "expired", "de": "abgelaufen"},
        "billing_cause_gateway_event": {"en": "gateway event", "de": "Ereignis des Zahlungsanbieters"},
        "billing_cause_payment": {"en": "payment", "de": "Zahlung"},
        "billing_cause_action": {"en": "action", "de": "Aktion"},
        "billing_cause_action_withdrawn": {"en": "action undone", "de": "Aktion zurückgenommen"},
        "billing_cause_time": {"en": "time", "de": "Zeitablauf"},
        "billing_kind_pause": {"en": "Pause", "de": "Pausieren"},
        "billing_kind_resume": {"en": "Resume", "de": "Fortsetzen"},
        "billing_kind_cancel": {"en": "Cancel", "de": "Kündigen"},
        "billing_kind_change_plan": {"en": "Change plan", "de": "Tarif wechseln"},
        "billing_action_pending": {"en": "waiting for the gateway", "de": "wartet auf den Zahlungsanbieter"},
        "billing_action_succeeded": {"en": "accepted", "de": "angenommen"},
        "billing_action_refused": {"en": "refused", "de": "abgelehnt"},
        "billing_action_failed": {"en": "failed", "de": "fehlgeschlagen"},
    }
)
