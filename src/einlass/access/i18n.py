"""The strings of the member pages, in English and German, and how the language is chosen."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from babel.dates import format_date, format_time

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"
# How each language names itself, for the switcher.
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}

MESSAGES: dict[str, dict[str, str]] = {
    "language": {"en": "Language", "de": "Sprache"},
    "title_login": {"en": "Log in", "de": "Anmelden"},
    "title_logout": {"en": "Log out", "de": "Abmelden"},
    "title_logged_out": {"en": "Logged out", "de": "Abgemeldet"},
    "title_account": {"en": "Your account", "de": "Ihr Konto"},
    "title_error": {"en": "Error", "de": "Fehler"},
    "title_forbidden": {"en": "Request refused", "de": "Anfrage abgelehnt"},
    "title_not_found": {"en": "Page not found", "de": "Seite nicht gefunden"},
    "username": {"en": "Username (your email address)", "de": "Benutzername (Ihre E-Mail-Adresse)"},
    "password": {"en": "Password", "de": "Passwort"},
    "login_button": {"en": "Log in", "de": "Anmelden"},
    "logout_button": {"en": "Log out", "de": "Abmelden"},
    "logout_question": {"en": "Do you want to log out?", "de": "Möchten Sie sich abmelden?"},
    "logged_out": {"en": "You have been logged out.", "de": "Sie wurden abgemeldet."},
    "not_logged_in": {"en": "You are not logged in.", "de": "Sie sind nicht angemeldet."},
    "logged_in_as": {"en": "You are logged in as {username}.", "de": "Sie sind angemeldet als {username}."},
    "to_account": {"en": "Go to your account", "de": "Zu Ihrem Konto"},
    "to_login": {"en": "Go to the login page", "de": "Zur Anmeldung"},
    "error_credentials": {
        "en": "The username or password is not correct.",
        "de": "Benutzername oder Passwort ist nicht korrekt.",
    },
    "error_missing": {
        "en": "Please enter your username and your password.",
        "de": "Bitte geben Sie Ihren Benutzernamen und Ihr Passwort ein.",
    },
    "error_csrf": {
        "en": "This form has expired or was not sent from this page, so nothing was changed. "
        "Please try again.",
        "de": "Dieses Formular ist abgelaufen oder wurde nicht von dieser Seite gesendet; "
        "es wurde nichts geändert. Bitte versuchen Sie es noch einmal.",
    },
    "error_session": {
        "en": "You are not logged in (any more), so nothing was changed. Please log in again.",
        "de": "Sie sind nicht (mehr) angemeldet; es wurde nichts geändert. Bitte melden Sie sich erneut an.",
    },
    "error_rate_limited_one": {
        "en": "Too many failed login attempts. Please try again in 1 minute.",
        "de": "Zu viele fehlgeschlagene Anmeldeversuche. Bitte versuchen Sie es in 1 Minute erneut.",
    },
    "error_rate_limited": {
        "en": "Too many failed login attempts. Please try again in {minutes} minutes.",
        "de": "Zu viele fehlgeschlagene Anmeldeversuche. Bitte versuchen Sie es in {minutes} Minuten erneut.",
    },
    "error_too_large": {"en": "The request is too large.", "de": "Die Anfrage ist zu groß."},
    "error_not_found": {"en": "This page does not exist.", "de": "Diese Seite gibt es nicht."},
    "name": {"en": "Name", "de": "Name"},
    "email": {"en": "Email address", "de": "E-Mail-Adresse"},
    "your_data": {"en": "Your details", "de": "Ihre Daten"},
    "your_access": {"en": "Your access", "de": "Ihr Zugang"},
    "area": {"en": "Area", "de": "Bereich"},
    "status": {"en": "Status", "de": "Status"},
    "until": {"en": "Until", "de": "Bis"},
    "active": {"en": "active", "de": "aktiv"},
    "ended": {"en": "ended", "de": "beendet"},
    "no_end": {"en": "no end date", "de": "unbefristet"},
    "no_access": {"en": "You have no access yet.", "de": "Sie haben noch keinen Zugang."},
    "times_utc": {"en": "Times are in UTC.", "de": "Zeiten in UTC."},
    "change_password": {"en": "Change password", "de": "Passwort ändern"},
    "current_password": {"en": "Current password", "de": "Aktuelles Passwort"},
    "new_password": {"en": "New password", "de": "Neues Passwort"},
    "new_password_repeat": {"en": "Repeat the new password", "de": "Neues Passwort wiederholen"},
    "password_hint": {"en": "At least 10 characters.", "de": "Mindestens 10 Zeichen."},
    "error_current_password": {
        "en": "The current password is not correct.",
        "de": "Das aktuelle Passwort ist nicht korrekt.",
    },
    "error_password_mismatch": {
        "en": "The two new passwords are not the same.",
        "de": "Die beiden neuen Passwörter stimmen nicht überein.",
    },
    "error_password_short": {
        "en": "The new password must have at least 10 characters.",
        "de": "Das neue Passwort muss mindestens 10 Zeichen haben.",
    },
    "error_password_long": {
        "en": "The new password must have at most 256 characters.",
        "de": "Das neue Passwort darf höchstens 256 Zeichen haben.",
    },
    "password_changed": {
        "en": "Your password has been changed. Everywhere else you are now logged out.",
        "de": "Ihr Passwort wurde geändert. Überall sonst sind Sie jetzt abgemeldet.",
    },
    # -- subscriptions on the account page
    "your_subscriptions": {"en": "Your subscriptions", "de": "Ihre Abos"},
    "plan": {"en": "Plan", "de": "Tarif"},
    "paid_through": {"en": "Paid through", "de": "Bezahlt bis"},
    "access_until": {"en": "Access until", "de": "Zugang bis"},
    "sub_status_pending": {"en": "waiting for the first payment", "de": "wartet auf die erste Zahlung"},
    "sub_status_trialing": {"en": "trial", "de": "Testphase"},
    "sub_status_active": {"en": "active", "de": "aktiv"},
    "sub_status_past_due": {"en": "payment overdue", "de": "Zahlung überfällig"},
    "sub_status_paused": {"en": "paused", "de": "pausiert"},
    "sub_status_cancelled": {"en": "cancelled", "de": "gekündigt"},
    "sub_status_expired": {"en": "expired", "de": "abgelaufen"},
    "paused_since": {"en": "Paused since {date}.", "de": "Pausiert seit {date}."},
    "resumes_on": {"en": "It resumes on {date}.", "de": "Es wird am {date} fortgesetzt."},
    "resumes_when_asked": {
        "en": "It stays paused until you resume it.",
        "de": "Es bleibt pausiert, bis Sie es fortsetzen.",
    },
    "cancel_pending": {
        "en": "Cancelled: it ends on {date}.",
        "de": "Gekündigt: es endet am {date}.",
    },
    "ended_on": {"en": "Ended on {date}.", "de": "Beendet am {date}."},
    "request_pause": {"en": "pause", "de": "Pausieren"},
    "request_resume": {"en": "resume", "de": "Fortsetzen"},
    "request_cancel": {"en": "cancellation", "de": "Kündigen"},
    "request_change_plan": {"en": "plan change", "de": "Tarifwechsel"},
    "action_refused": {
        "en": "Your {request} request was refused by the payment provider: {reason}",
        "de": "Ihre Anfrage zum {request} wurde vom Zahlungsanbieter abgelehnt: {reason}",
    },
    "action_failed": {
        "en": "Your {request} request could not be sent to the payment provider, so it was not "
        "carried out. Please try again later.",
        "de": "Ihre Anfrage zum {request} konnte nicht an den Zahlungsanbieter übermittelt werden "
        "und wurde daher nicht ausgeführt. Bitte versuchen Sie es später erneut.",
    },
    "pause_legend": {"en": "Pause this subscription", "de": "Dieses Abo pausieren"},
    "resume_on": {"en": "Resume on (optional)", "de": "Fortsetzen am (optional)"},
    "resume_on_hint": {
        "en": "Without a date it stays paused until you resume it. You have no access while it is paused; "
        "the paid time left is kept.",
        "de": "Ohne Datum bleibt es pausiert, bis Sie es fortsetzen. Während der Pause haben Sie keinen "
        "Zugang; die restliche bezahlte Zeit bleibt erhalten.",
    },
    "pause_button": {"en": "Pause subscription", "de": "Abo pausieren"},
    "resume_button": {"en": "Resume subscription", "de": "Abo fortsetzen"},
    "cancel_confirm": {
        "en": "Yes, cancel this subscription at the end of the paid period",
        "de": "Ja, dieses Abo zum Ende der bezahlten Zeit kündigen",
    },
    "cancel_confirm_paused": {
        "en": "Yes, cancel this subscription now (it is paused, so no paid time is left to run)",
        "de": "Ja, dieses Abo jetzt kündigen (es ist pausiert, es läuft also keine bezahlte Zeit mehr)",
    },
    "cancel_button": {"en": "Cancel subscription", "de": "Abo kündigen"},
    "notice_paused": {"en": "Your subscription is paused.", "de": "Ihr Abo ist pausiert."},
    "notice_paused_until": {
        "en": "Your subscription is paused and resumes on {date}.",
        "de": "Ihr Abo ist pausiert und wird am {date} fortgesetzt.",
    },
    "notice_resumed": {"en": "Your subscription is running again.", "de": "Ihr Abo läuft wieder."},
    "notice_cancelled": {
        "en": "Your subscription is cancelled and ends on {date}.",
        "de": "Ihr Abo ist gekündigt und endet am {date}.",
    },
    "notice_ended": {"en": "Your subscription has ended.", "de": "Ihr Abo ist beendet."},
    "error_subscription_missing": {
        "en": "This subscription was not found in your account.",
        "de": "Dieses Abo wurde in Ihrem Konto nicht gefunden.",
    },
    "error_already_paused": {
        "en": "This subscription is paused already.",
        "de": "Dieses Abo ist bereits pausiert.",
    },
    "error_not_paused": {"en": "This subscription is not paused.", "de": "Dieses Abo ist nicht pausiert."},
    "error_subscription_ended": {
        "en": "This subscription has ended, so nothing was changed.",
        "de": "Dieses Abo ist beendet; es wurde nichts geändert.",
    },
    "error_action_not_allowed": {
        "en": "This plan does not allow that here. Please contact us.",
        "de": "Dieser Tarif erlaubt das hier nicht. Bitte wenden Sie sich an uns.",
    },
    "error_resume_date": {
        "en": "Please choose a resume date in the future, or none.",
        "de": "Bitte wählen Sie ein Datum in der Zukunft für die Fortsetzung, oder keines.",
    },
    "error_confirm_cancel": {
        "en": "Please tick the box to confirm the cancellation; nothing was changed.",
        "de": "Bitte bestätigen Sie die Kündigung mit dem Häkchen; es wurde nichts geändert.",
    },
    "error_action": {
        "en": "This could not be done; nothing was changed.",
        "de": "Das war nicht möglich; es wurde nichts geändert.",
    },
}

Translate = Callable[..., str]


def language(tag: str | None) -> str | None:
    """``"de"``, ``"de-AT"``, ``"DE_de"`` -> ``"de"``; unsupported or empty -> None."""
    primary = (tag or "").strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser prefers most (RFC 9110 quality values), or None."""
    best: str | None = None
    best_q = 0.0
    for item in (header or "")[:1000].split(",")[:30]:
        tag, _, parameters = item.partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        lang = language(tag)
        if lang is not None and 0.0 < quality <= 1.0 and quality > best_q:
            best, best_q = lang, quality
    return best


def translator(lang: str) -> Translate:
    def translate(key: str, **values: object) -> str:
        text = MESSAGES[key][lang]
        return text.format(**values) if values else text

    return translate


def format_moment(moment: datetime, lang: str) -> str:
    """A point in time for a member to read, in UTC: "1. April 2026, 09:00 UTC"."""
    moment = moment.astimezone(UTC)
    day = format_date(moment, format="long", locale=lang)
    time = format_time(moment, format="short", tzinfo=UTC, locale=lang)
    return f"{day}, {time} UTC"
