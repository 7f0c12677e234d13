"""The admin UI's strings in English and German.

Each page module registers its own strings with ``register`` next to its
views; a key is registered once, and every key has both languages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, get_currency_precision

from einlass.access.i18n import LANGUAGES

Translate = Callable[..., str]
NO_VALUE = "\u2013"  # an en dash

MESSAGES: dict[str, dict[str, str]] = {}


def register(messages: dict[str, dict[str, str]]) -> None:
    for key, texts in messages.items():
        if key in MESSAGES and MESSAGES[key] != texts:
            raise ValueError(f"admin string {key!r} is registered twice")
        missing = set(LANGUAGES) - set(texts)
        if missing:
            raise ValueError(f"admin string {key!r} lacks {sorted(missing)}")
    MESSAGES.update(messages)


def translator(lang: str) -> Translate:
    def translate(key: str, **values: object) -> str:
        text = MESSAGES[key][lang]
        return text.format(**values) if values else text

    return translate


def _date_locale(lang: str) -> str:
    # British English: day before month and a 24-hour clock, as the merchants (in Europe) read dates.
    return "en_GB" if lang == "en" else lang


def format_when(moment: datetime | None, lang: str) -> str:
    """A point in time for staff, short, in UTC ("05/12/2026, 09:00"); a dash for none."""
    if moment is None:
        return NO_VALUE
    return format_datetime(
        moment.astimezone(UTC),
        "dd/MM/yyyy, HH:mm" if lang == "en" else "dd.MM.yyyy, HH:mm",
        tzinfo=UTC,
        locale=_date_locale(lang),
    )


def format_day(moment: datetime | None, lang: str) -> str:
    if moment is None:
        return NO_VALUE
    return format_date(moment.astimezone(UTC), format="medium", locale=_date_locale(lang))


def format_money(amount_minor: int, currency: str, lang: str) -> str:
    """Minor units in the currency's own precision: 990 EUR is 9,90 €, 990 JPY is ¥990."""
    code = currency.upper()
    return format_currency(amount_minor / 10 ** get_currency_precision(code), code, locale=lang)


def format_number(value: float, lang: str) -> str:
    return format_decimal(value, locale=lang)


register(
    {
        "language": {"en": "Language", "de": "Sprache"},
        "admin": {"en": "einlass admin", "de": "einlass Verwaltung"},
        "skip_to_content": {"en": "Skip to content", "de": "Zum Inhalt springen"},
        "main_menu": {"en": "Main menu", "de": "Hauptmenü"},
        "signed_in_as": {"en": "Signed in as {email}", "de": "Angemeldet als {email}"},
        "role_operator": {"en": "operator", "de": "Betreiber"},
        "role_admin": {"en": "admin", "de": "Admin"},
        "role_viewer": {"en": "viewer (read only)", "de": "Betrachter (nur lesen)"},
        # login
        "title_login": {"en": "Admin login", "de": "Anmeldung Verwaltung"},
        "email": {"en": "Email address", "de": "E-Mail-Adresse"},
        "password": {"en": "Password", "de": "Passwort"},
        "totp_code": {
            "en": "Code from your authenticator app",
            "de": "Code aus Ihrer Authenticator-App",
        },
        "totp_hint": {"en": "Six digits, e.g. 123456.", "de": "Sechs Ziffern, z. B. 123456."},
        "login_button": {"en": "Log in", "de": "Anmelden"},
        "logout_button": {"en": "Log out", "de": "Abmelden"},
        "logged_out": {"en": "You have been logged out.", "de": "Sie wurden abgemeldet."},
        "error_login": {
            "en": "The email address, password or code is not correct.",
            "de": "E-Mail-Adresse, Passwort oder Code ist nicht korrekt.",
        },
        "error_locked_out": {
            "en": "Too many failed attempts: this account is locked for {minutes} minutes.",
            "de": "Zu viele Fehlversuche: dieses Konto ist für {minutes} Minuten gesperrt.",
        },
        "error_login_missing": {
            "en": "Please enter your email address, password and code.",
            "de": "Bitte geben Sie E-Mail-Adresse, Passwort und Code ein.",
        },
        "error_csrf": {
            "en": "This form has expired or was not sent from this page, so nothing was changed. "
            "Please try again.",
            "de": "Dieses Formular ist abgelaufen oder wurde nicht von dieser Seite gesendet; "
            "es wurde nichts geändert. Bitte versuchen Sie es noch einmal.",
        },
        "error_read_only": {
            "en": "Your role may only read, so nothing was changed.",
            "de": "Ihre Rolle darf nur lesen; es wurde nichts geändert.",
        },
        "error_too_large": {"en": "The request is too large.", "de": "Die Anfrage ist zu groß."},
        "error_not_found": {
            "en": "This page does not exist, or you may not see it.",
            "de": "Diese Seite gibt es nicht, oder Sie dürfen sie nicht sehen.",
        },
        "error_nothing_changed": {
            "en": "Nothing was changed: {message}",
            "de": "Es wurde nichts geändert: {message}",
        },
        "title_error": {"en": "Error", "de": "Fehler"},
        "title_not_found": {"en": "Not found", "de": "Nicht gefunden"},
        "title_forbidden": {"en": "Request refused", "de": "Anfrage abgelehnt"},
        "title_merchants": {"en": "Merchants", "de": "Händler"},
        "choose_merchant": {
            "en": "Choose the merchant whose data you want to see.",
            "de": "Wählen Sie den Händler, dessen Daten Sie sehen möchten.",
        },
        "slug": {"en": "Short name", "de": "Kurzname"},
        "name": {"en": "Name", "de": "Name"},
        "created": {"en": "Created", "de": "Angelegt"},
        "times_utc": {"en": "Times are in UTC.", "de": "Zeiten in UTC."},
        "none_yet": {"en": "None yet.", "de": "Noch keine."},
        "save": {"en": "Save", "de": "Speichern"},
        "previous_page": {"en": "Previous page", "de": "Vorherige Seite"},
        "next_page": {"en": "Next page", "de": "Nächste Seite"},
        "first_page": {"en": "First page", "de": "Erste Seite"},
        # navigation
        "nav_dashboard": {"en": "Dashboard", "de": "Übersicht"},
        "nav_members": {"en": "Members", "de": "Mitglieder"},
        "nav_payments": {"en": "Payments", "de": "Zahlungen"},
        "nav_subscriptions": {"en": "Subscriptions", "de": "Abos"},
        "nav_catalogue": {"en": "Areas and plans", "de": "Bereiche und Tarife"},
        "nav_gateways": {"en": "Gateways", "de": "Zahlungsanbieter"},
        "nav_targets": {"en": "Provisioning", "de": "Provisionierung"},
        "nav_blacklist": {"en": "Blacklist", "de": "Blacklist"},
        "nav_whitelist": {"en": "Whitelist", "de": "Whitelist"},
        "nav_audit": {"en": "Audit log", "de": "Protokoll"},
        "nav_api_keys": {"en": "API keys", "de": "API-Schlüssel"},
        "nav_jobs": {"en": "Failed jobs", "de": "Fehlgeschlagene Aufträge"},
        "nav_merchants": {"en": "Merchants", "de": "Händler"},
        "nav_review": {"en": "Blacklist review", "de": "Blacklist-Prüfung"},
        "nav_operator": {"en": "Operator", "de": "Betreiber"},
    }
)
