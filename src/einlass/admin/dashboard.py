"""Admin pages: the merchant's dashboard, headline numbers and charts (inline SVG, no JavaScript).

The figures come from ``dashboard_figures`` (one read transaction); the
geometry from ``charts``; this module turns them into captions, summaries
and tables in the page's language.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from babel.dates import format_date, format_skeleton
from babel.numbers import format_percent
from fastapi import APIRouter, Request
from starlette.responses import Response

from einlass import clock
from einlass.admin.charts import BarChart, Datum, HBarChart, bar_chart, hbar_chart, label_every
from einlass.admin.dashboard_figures import DashboardFigures, current_figures
from einlass.admin.i18n import NO_VALUE, Translate, format_money, format_number, format_when, register
from einlass.admin.page import merchant_page
from einlass.billing.subscriptions.rules import Status

router = APIRouter()

# Fill colours, each at least 4.5:1 against white (the bars are also told apart by their captions).
BLUE = "#1a56db"
RED = "#b42318"
GREEN = "#1d5e2c"
PURPLE = "#5b3cc4"
BROWN = "#8a3b12"
# The live states (billing.subscriptions.rules.LIVE), in the order a subscription passes them.
STATES = (Status.TRIALING.value, Status.ACTIVE.value, Status.PAST_DUE.value, Status.PAUSED.value)


@dataclass(frozen=True)
class ChartView:
    """One figure on the page: the chart, what it says in words, and its numbers as a table."""

    id: str
    kind: str  # "bar" or "hbar"
    caption: str
    summary: str
    hint: str
    chart: BarChart | HBarChart
    fill: str
    columns: list[str]
    rows: list[list[str]]  # the first cell of each row is its header


@dataclass(frozen=True)
class Card:
    label: str
    value: str
    hint: str = ""
    headline: bool = False


class Formats:
    """Dates and numbers in the page's language."""

    def __init__(self, lang: str, t: Translate) -> None:
        self.lang, self.t = lang, t

    def number(self, value: int) -> str:
        return format_number(value, self.lang)

    def day(self, day: date) -> str:
        return format_date(day, format="medium", locale=self.lang)

    def day_short(self, day: date) -> str:
        return format_skeleton("MMMd", day, locale=self.lang)

    def month(self, first: date) -> str:
        return format_skeleton("yMMMM", first, locale=self.lang)

    def month_short(self, first: date) -> str:
        return format_skeleton("yMMM", first, locale=self.lang)

    def money(self, amount: int, currency: str) -> str:
        return format_money(amount, currency, self.lang)

    def major(self, amount: int) -> str:
        """An axis tick of money: in major units, without the currency (the caption names it)."""
        return format_number(amount / 100, self.lang)

    def percent(self, rate: float) -> str:
        return format_percent(rate, format="#,##0.#%", locale=self.lang)


def _summary(fmt: Formats, chart: BarChart, first: str, last: str, unit: str, money: str = "") -> str:
    shown = (lambda value: fmt.money(value, money)) if money else fmt.number
    peak = chart.peak
    if peak is None:
        return fmt.t(f"dash_summary_{unit}_none", first=first, last=last)
    return fmt.t(
        f"dash_summary_{unit}",
        total=shown(chart.total),
        first=first,
        last=last,
        peak_label=peak.label,
        peak=peak.shown,
    )


def day_chart(
    fmt: Formats, figures: DashboardFigures, values: Sequence[int], *, id: str, key: str, fill: str
) -> ChartView:
    days = figures.days
    labelled = set(label_every(len(days), 7))
    data = [
        Datum(fmt.day(day), value, fmt.number(value), fmt.day_short(day) if index in labelled else "")
        for index, (day, value) in enumerate(zip(days, values, strict=True))
    ]
    chart = bar_chart(data, format_tick=fmt.number)
    return ChartView(
        id=id,
        kind="bar",
        caption=fmt.t(f"dash_{key}_caption"),
        summary=_summary(fmt, chart, fmt.day(days[0]), fmt.day(days[-1]), "days"),
        hint=fmt.t(f"dash_{key}_hint"),
        chart=chart,
        fill=fill,
        columns=[fmt.t("dash_col_day"), fmt.t(f"dash_col_{key}")],
        rows=[[datum.label, datum.shown] for datum in data],
    )


def revenue_charts(fmt: Formats, figures: DashboardFigures) -> list[ChartView]:
    months = figures.months
    labelled = set(label_every(len(months), 3))
    views = []
    for currency, series in figures.revenue.items():
        data = [
            Datum(
                fmt.month(entry.month),
                entry.net,
                fmt.money(entry.net, currency),
                fmt.month_short(entry.month) if index in labelled else "",
            )
            for index, entry in enumerate(series)
        ]
        chart = bar_chart(data, format_tick=fmt.major)
        first, last = fmt.month(months[0]), fmt.month(months[-1])
        views.append(
            ChartView(
                id=f"chart-revenue-{currency.lower()}",
                kind="bar",
                caption=fmt.t("dash_revenue_caption", currency=currency),
                summary=_summary(fmt, chart, first, last, "months", money=currency),
                hint=fmt.t("dash_revenue_hint"),
                chart=chart,
                fill=GREEN,
                columns=[
                    fmt.t("dash_col_month"),
                    fmt.t("dash_col_confirmed"),
                    fmt.t("dash_col_reversed"),
                    fmt.t("dash_col_net"),
                ],
                rows=[
                    [
                        fmt.month(entry.month),
                        fmt.money(entry.confirmed, currency),
                        fmt.money(entry.reversed, currency),
                        fmt.money(entry.net, currency),
                    ]
                    for entry in series
                ],
            )
        )
    return views


def subscription_chart(fmt: Formats, figures: DashboardFigures) -> ChartView:
    live = figures.subscriptions.live_by_status
    data = [
        Datum(fmt.t(f"dash_state_{state}"), live.get(state, 0), fmt.number(live.get(state, 0)))
        for state in STATES
    ]
    chart = hbar_chart(data)
    parts = ", ".join(f"{datum.label}: {datum.shown}" for datum in data)
    summary = (
        fmt.t("dash_summary_states", total=fmt.number(chart.total), parts=parts)
        if chart.total
        else fmt.t("dash_summary_states_none")
    )
    return ChartView(
        id="chart-subscriptions",
        kind="hbar",
        caption=fmt.t("dash_subscriptions_caption"),
        summary=summary,
        hint=fmt.t("dash_subscriptions_hint"),
        chart=chart,
        fill=PURPLE,
        columns=[fmt.t("dash_col_state"), fmt.t("dash_col_subscriptions")],
        rows=[[datum.label, datum.shown] for datum in data],
    )


def member_cards(fmt: Formats, figures: DashboardFigures) -> list[Card]:
    counts = figures.members
    return [
        Card(fmt.t("dash_active_now"), fmt.number(counts.active), fmt.t("dash_active_hint"), headline=True),
        Card(fmt.t("dash_members_total"), fmt.number(counts.total), fmt.t("dash_members_total_hint")),
        Card(fmt.t("dash_members_locked"), fmt.number(counts.locked)),
    ]


def subscription_cards(fmt: Formats, figures: DashboardFigures) -> list[Card]:
    subs = figures.subscriptions
    mrr = ", ".join(fmt.money(amount, currency) for currency, amount in subs.mrr.items()) or NO_VALUE
    rate = subs.churn_rate
    churn = (
        NO_VALUE
        if rate is None
        else fmt.t(
            "dash_churn_value",
            rate=fmt.percent(rate),
            lost=fmt.number(subs.lost),
            start=fmt.number(subs.at_start),
        )
    )
    return [
        Card(fmt.t("dash_subscriptions_live"), fmt.number(subs.live)),
        Card(fmt.t("dash_subscriptions_mrr"), mrr, fmt.t("dash_subscriptions_mrr_hint")),
        Card(fmt.t("dash_subscriptions_churn"), churn, fmt.t("dash_subscriptions_churn_hint")),
    ]


def build(lang: str, t: Callable[..., str], figures: DashboardFigures) -> dict[str, Any]:
    """Everything the template shows, in the page's language."""
    fmt = Formats(lang, t)
    return {
        "member_cards": member_cards(fmt, figures),
        "member_charts": [
            day_chart(fmt, figures, figures.joins, id="chart-joins", key="joins", fill=BLUE),
            day_chart(fmt, figures, figures.losses, id="chart-losses", key="losses", fill=RED),
        ],
        "revenue_charts": revenue_charts(fmt, figures),
        "subscription_cards": subscription_cards(fmt, figures),
        "subscription_chart": subscription_chart(fmt, figures),
        "rejection_chart": day_chart(
            fmt, figures, figures.rejections, id="chart-rejections", key="rejections", fill=BROWN
        ),
    }


@router.get("/m/{slug}/")
async def dashboard(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    figures, cached = await current_figures(page.db, page.merchant_id, clock.now())
    return page.render(
        "dashboard/index.html",
        title=page.t("nav_dashboard"),
        as_of=format_when(figures.now, page.lang) if cached else None,
        **build(page.lang, page.t, figures),
    )


register(
    {
        "dash_heading_members": {"en": "Members", "de": "Mitglieder"},
        "dash_as_of": {
            "en": "Figures as of {when}: for this much data they are kept for up to a minute.",
            "de": "Zahlen vom {when}: bei so vielen Daten werden sie bis zu einer Minute zwischengespeichert.",
        },
        "dash_active_now": {"en": "Active members now", "de": "Aktive Mitglieder jetzt"},
        "dash_active_hint": {
            "en": "Not locked, not deleted, and with access to at least one area right now.",
            "de": "Nicht gesperrt, nicht gelöscht und jetzt mit Zugang zu mindestens einem Bereich.",
        },
        "dash_members_total": {"en": "Members in total", "de": "Mitglieder insgesamt"},
        "dash_members_total_hint": {"en": "Without deleted members.", "de": "Ohne gelöschte Mitglieder."},
        "dash_members_locked": {"en": "Locked members", "de": "Gesperrte Mitglieder"},
        "dash_joins_caption": {
            "en": "New members per day, last 30 days",
            "de": "Neue Mitglieder pro Tag, letzte 30 Tage",
        },
        "dash_joins_hint": {"en": "Members created that day.", "de": "An diesem Tag angelegte Mitglieder."},
        "dash_col_joins": {"en": "New members", "de": "Neue Mitglieder"},
        "dash_losses_caption": {
            "en": "Members lost per day, last 30 days",
            "de": "Verlorene Mitglieder pro Tag, letzte 30 Tage",
        },
        "dash_losses_hint": {
            "en": "Members whose last access ended that day: an access period ran out or was revoked, "
            "and no other one covers the moment after. Locking a member is not counted here.",
            "de": "Mitglieder, deren letzter Zugang an diesem Tag endete: ein Zugangszeitraum lief ab "
            "oder wurde widerrufen, und kein anderer deckt den Moment danach ab. "
            "Sperrungen zählen hier nicht.",
        },
        "dash_col_losses": {"en": "Members lost", "de": "Verlorene Mitglieder"},
        "dash_heading_revenue": {"en": "Revenue", "de": "Umsatz"},
        "dash_revenue_caption": {
            "en": "Revenue per month in {currency}, last 12 months",
            "de": "Umsatz pro Monat in {currency}, letzte 12 Monate",
        },
        "dash_revenue_hint": {
            "en": "Payments confirmed in the month, less what was refunded or charged back on them since.",
            "de": "Im Monat bestätigte Zahlungen, abzüglich der seither darauf erstatteten "
            "oder zurückgebuchten Beträge.",
        },
        "dash_revenue_none": {
            "en": "No payments were confirmed in the last 12 months.",
            "de": "In den letzten 12 Monaten wurden keine Zahlungen bestätigt.",
        },
        "dash_col_month": {"en": "Month", "de": "Monat"},
        "dash_col_confirmed": {"en": "Confirmed", "de": "Bestätigt"},
        "dash_col_reversed": {"en": "Refunded or charged back", "de": "Erstattet oder zurückgebucht"},
        "dash_col_net": {"en": "Revenue", "de": "Umsatz"},
        "dash_heading_subscriptions": {"en": "Subscriptions", "de": "Abos"},
        "dash_subscriptions_live": {"en": "Live subscriptions", "de": "Laufende Abos"},
        "dash_subscriptions_mrr": {
            "en": "Monthly recurring revenue",
            "de": "Monatlich wiederkehrender Umsatz",
        },
        "dash_subscriptions_mrr_hint": {
            "en": "Active and past-due subscriptions, their amount per month.",
            "de": "Aktive und überfällige Abos, ihr Betrag pro Monat.",
        },
        "dash_subscriptions_churn": {"en": "Churn this month", "de": "Abwanderung diesen Monat"},
        "dash_subscriptions_churn_hint": {
            "en": "Subscriptions live at the start of the month that have ended since.",
            "de": "Zu Monatsbeginn laufende Abos, die seither geendet haben.",
        },
        "dash_churn_value": {"en": "{rate} ({lost} of {start})", "de": "{rate} ({lost} von {start})"},
        "dash_subscriptions_caption": {
            "en": "Live subscriptions by state",
            "de": "Laufende Abos nach Status",
        },
        "dash_subscriptions_hint": {
            "en": "As of now. Cancelled and expired subscriptions are not live.",
            "de": "Stand jetzt. Gekündigte und abgelaufene Abos laufen nicht mehr.",
        },
        "dash_state_trialing": {"en": "In trial", "de": "In der Testphase"},
        "dash_state_active": {"en": "Active", "de": "Aktiv"},
        "dash_state_past_due": {"en": "Past due", "de": "Überfällig"},
        "dash_state_paused": {"en": "Paused", "de": "Pausiert"},
        "dash_col_state": {"en": "State", "de": "Status"},
        "dash_col_subscriptions": {"en": "Subscriptions", "de": "Abos"},
        "dash_heading_screening": {"en": "Screening", "de": "Kundenprüfung"},
        "dash_rejections_caption": {
            "en": "Screening rejections per day, last 30 days",
            "de": "Abgelehnte Kundenprüfungen pro Tag, letzte 30 Tage",
        },
        "dash_rejections_hint": {
            "en": "Screening decisions with the outcome reject, at checkout or on payment.",
            "de": "Prüfentscheidungen mit dem Ergebnis „abgelehnt“, beim Checkout oder bei der Zahlung.",
        },
        "dash_col_rejections": {"en": "Rejections", "de": "Ablehnungen"},
        "dash_col_day": {"en": "Day", "de": "Tag"},
        "dash_show_numbers": {"en": "Show the numbers", "de": "Zahlen anzeigen"},
        "dash_summary_days": {
            "en": "{total} in all from {first} to {last}; the most on {peak_label}: {peak}.",
            "de": "Insgesamt {total} vom {first} bis {last}; am meisten am {peak_label}: {peak}.",
        },
        "dash_summary_days_none": {
            "en": "None from {first} to {last}.",
            "de": "Keine vom {first} bis {last}.",
        },
        "dash_summary_months": {
            "en": "{total} in all from {first} to {last}; the most in {peak_label}: {peak}.",
            "de": "Insgesamt {total} von {first} bis {last}; am meisten im {peak_label}: {peak}.",
        },
        "dash_summary_months_none": {
            "en": "Nothing from {first} to {last}.",
            "de": "Nichts von {first} bis {last}.",
        },
        "dash_summary_states": {
            "en": "{total} live subscriptions. {parts}.",
            "de": "{total} laufende Abos. {parts}.",
        },
        "dash_summary_states_none": {"en": "No live subscriptions.", "de": "Keine laufenden Abos."},
    }
)
