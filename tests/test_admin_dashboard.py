"""Admin UI: the merchant dashboard (headline numbers, inline SVG charts, their numbers) and charts.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from admin_support import login, make_staff
from conftest import Shop, make_shop
from einlass.admin import dashboard_figures
from einlass.admin.charts import (
    Datum,
    bar_chart,
    hbar_chart,
    label_every,
    nice_step,
    scale_max,
    ticks,
)
from einlass.admin.dashboard_figures import day_window, id_floor, month_window
from einlass.billing.gateways.base import Customer, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.clock import FrozenClock
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.ids import _base32, new_id
from einlass.screening.blacklist import file_report
from einlass.screening.identifiers import normalize
from einlass.screening.models import REPORT_CONFIRMED, SOURCE_OPERATOR
from helpers import api, post_generic
from payloads import generic
from subscription_support import deliver, paid

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's now
_FIGURE = re.compile(r'<figure class="chart" id="([^"]+)">(.*?)</figure>', re.S)
_ROW = re.compile(r'<tr><th scope="row">([^<]*)</th>((?:<td class="num">[^<]*</td>)+)</tr>')
_CELL = re.compile(r'<td class="num">([^<]*)</td>')
_CARD = re.compile(r'<span class="label">([^<]*)</span>\s*<span class="value">([^<]*)</span>')


def figures_of(html: str) -> dict[str, str]:
    return dict(_FIGURE.findall(html))


def bar_count(figure: str) -> int:
    return figure.count('<rect class="bar"')


def numbers(figure: str) -> dict[str, list[str]]:
    """The figure's table: row header -> the other cells."""
    return {head: _CELL.findall(cells) for head, cells in _ROW.findall(figure)}


def nonzero(figure: str) -> dict[str, str]:
    return {head: cells[0] for head, cells in numbers(figure).items() if cells[0] != "0"}


def cards(html: str) -> dict[str, str]:
    return dict(_CARD.findall(html))


def timed(payload: dict[str, Any], moment: datetime) -> dict[str, Any]:
    return payload | {"timestamp": moment.isoformat().replace("+00:00", "Z")}


async def pay(
    client: httpx.AsyncClient, shop: Shop, clock: FrozenClock, moment: datetime, payload: dict[str, Any]
) -> None:
    clock.set(moment)
    response = await post_generic(client, shop, timed(payload, moment))
    assert response.status_code == 200, response.text


async def reject(client: httpx.AsyncClient, shop: Shop, email: str) -> None:
    response = await client.post(
        "/api/v1/screenings", json={"identifiers": {"email": email}}, headers=shop.auth
    )
    assert response.status_code == 201 and response.json()["outcome"] == "reject", response.text


async def blacklist(db: Database, settings: Settings, email: str) -> None:
    async with db.transaction() as session:
        await file_report(
            session,
            settings,
            normalize("email", email),
            category="fraud_attempt",
            source=SOURCE_OPERATOR,
            merchant_id=None,
            status=REPORT_CONFIRMED,
        )


async def seed(
    client: httpx.AsyncClient, db: Database, settings: Settings, shop: Shop, clock: FrozenClock
) -> None:
    """Six members (one locked), one lost to expiry and one to a refund, a subscription, a rejection.

    - Jan 10: "old" pays a 30-day pass (joined before the 30-day window; lost on Feb 9);
    - Feb 20: "a" pays 9.90 for 30 days, "b" 49.00 for life;
    - Mar 1: a's payment is refunded in full (a lost on Mar 1);
    - Mar 2: anna subscribes monthly (9.90), m is created by hand, l is created and locked,
      and the blacklisted mallory is rejected at checkout.
    """
    await pay(
        client,
        shop,
        clock,
        datetime(2026, 1, 10, 10, tzinfo=UTC),
        generic.payment_confirmed("old-1", amount=990, email="old@example.com", product_id="prod-30"),
    )
    await pay(
        client,
        shop,
        clock,
        datetime(2026, 2, 20, 12, tzinfo=UTC),
        generic.payment_confirmed("pay-a", amount=990, email="a@example.com", product_id="prod-30"),
    )
    await pay(
        client,
        shop,
        clock,
        datetime(2026, 2, 20, 12, 5, tzinfo=UTC),
        generic.payment_confirmed("pay-b", amount=4900, email="b@example.com", product_id="prod-life"),
    )
    await pay(
        client,
        shop,
        clock,
        datetime(2026, 3, 1, 8, tzinfo=UTC),
        generic.payment_refunded("pay-a", refund_id="rf-1", amount=990),
    )
    moment = datetime(2026, 3, 2, 8, tzinfo=UTC)
    clock.set(moment)
    created = SubscriptionEvent(
        Kind.CREATED,
        "s1",
        "created:s1",
        occurred_at=moment,
        product_ref="sub-monthly",
        customer=Customer(email="anna@example.com", name="Anna", locale="de"),
    )
    await deliver(db, settings, shop, created, *paid("s1", "s1-1", moment, 990, "EUR"))
    await api(client, shop, "POST", "/members", json={"email": "m@example.com", "send_credentials": False})
    locked = await api(
        client, shop, "POST", "/members", json={"email": "l@example.com", "send_credentials": False}
    )
    await api(client, shop, "POST", f"/members/{locked['id']}/lock", json={"reason": "test"})
    await blacklist(db, settings, "mallory@example.com")
    await reject(client, shop, "mallory@example.com")
    clock.set(NOW)


async def test_dashboard_shows_headline_numbers_and_charts_of_this_merchant_only(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    await seed(client, db, settings, sub_shop, clock)
    other = await make_shop(db, "other")
    await pay(
        client,
        other,
        clock,
        NOW - timedelta(days=3),
        generic.payment_confirmed("o-1", amount=12300, email="x@example.com", product_id="prod-30"),
    )
    await pay(
        client,
        other,
        clock,
        NOW - timedelta(days=2),
        generic.payment_confirmed(
            "o-2", amount=500, currency="USD", email="y@example.com", product_id="prod-30"
        ),
    )
    await reject(client, other, "mallory@example.com")
    clock.set(NOW)

    admin = await login(client, await make_staff(db, role="viewer", merchant_id=sub_shop.merchant_id))
    page = await admin.get(f"/admin/m/{sub_shop.slug}/")
    assert page.status_code == 200, page.text
    html = page.text
    assert cards(html) == {
        "Active members now": "2",
        "Members in total": "6",
        "Locked members": "1",
        "Live subscriptions": "1",
        "Monthly recurring revenue": "€9.90",
        "Churn this month": "\u2013",
    }

    found = figures_of(html)
    assert list(found) == [
        "chart-joins",
        "chart-losses",
        "chart-revenue-eur",
        "chart-subscriptions",
        "chart-rejections",
    ]
    for figure in found.values():
        assert '<svg role="img" aria-labelledby="' in figure and "<desc id=" in figure
        assert "<figcaption" in figure and "<summary>Show the numbers</summary>" in figure
        assert "style=" not in figure
    for key in ("chart-joins", "chart-losses", "chart-rejections"):
        assert bar_count(found[key]) == 30 and len(numbers(found[key])) == 30
    days = list(numbers(found["chart-joins"]))
    assert (days[0], days[-1]) == ("Feb 1, 2026", "Mar 2, 2026")
    assert nonzero(found["chart-joins"]) == {"Feb 20, 2026": "2", "Mar 2, 2026": "3"}
    assert nonzero(found["chart-losses"]) == {"Feb 9, 2026": "1", "Mar 1, 2026": "1"}
    assert nonzero(found["chart-rejections"]) == {"Mar 2, 2026": "1"}
    assert "5 in all from Feb 1, 2026 to Mar 2, 2026; the most on Mar 2, 2026: 3." in found["chart-joins"]
    assert "Members whose last access ended that day" in found["chart-losses"]

    revenue = found["chart-revenue-eur"]
    assert bar_count(revenue) == 12
    months = numbers(revenue)
    assert [*months][::11] == ["April 2025", "March 2026"]
    assert {month: cells for month, cells in months.items() if cells[0] != "€0.00"} == {
        "January 2026": ["€9.90", "€0.00", "€9.90"],
        "February 2026": ["€58.90", "€9.90", "€49.00"],
        "March 2026": ["€9.90", "€0.00", "€9.90"],
    }
    assert "USD" not in html and "€123.00" not in html

    states = found["chart-subscriptions"]
    assert bar_count(states) == 4
    assert numbers(states) == {"In trial": ["0"], "Active": ["1"], "Past due": ["0"], "Paused": ["0"]}


async def test_dashboard_in_german_and_for_an_empty_merchant(
    client: httpx.AsyncClient, db: Database, settings: Settings, sub_shop: Shop, clock: FrozenClock
) -> None:
    await pay(
        client,
        sub_shop,
        clock,
        datetime(2026, 2, 20, 12, tzinfo=UTC),
        generic.payment_confirmed("pay-b", amount=4900, email="b@example.com", product_id="prod-life"),
    )
    clock.set(NOW)
    other = await make_shop(db, "other")
    operator = await login(client, await make_staff(db, role="operator"))

    page = await operator.get(f"/admin/m/{sub_shop.slug}/?lang=de")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="de">' in html
    assert cards(html)["Aktive Mitglieder jetzt"] == "1"
    assert "<summary>Zahlen anzeigen</summary>" in html and "Show the numbers" not in html
    found = figures_of(html)
    assert nonzero(found["chart-joins"]) == {"20.02.2026": "1"}
    assert numbers(found["chart-revenue-eur"])["Februar 2026"] == ["49,00\xa0€", "0,00\xa0€", "49,00\xa0€"]
    assert "Umsatz pro Monat in EUR, letzte 12 Monate" in html
    assert "Laufende Abos nach Status" in html and "Keine laufenden Abos." in html

    empty = await operator.get(f"/admin/m/{other.slug}/")
    assert empty.status_code == 200
    found = figures_of(empty.text)
    assert "chart-revenue-eur" not in found
    assert "In den letzten 12 Monaten wurden keine Zahlungen bestätigt." in empty.text
    assert bar_count(found["chart-joins"]) == 30 and nonzero(found["chart-joins"]) == {}
    assert cards(empty.text)["Aktive Mitglieder jetzt"] == "0"


async def test_another_merchants_dashboard_is_not_found(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    other = await make_shop(db, "other")
    admin = await login(client, await make_staff(db, role="admin", merchant_id=shop.merchant_id))
    assert (await admin.get(f"/admin/m/{other.slug}/")).status_code == 404
    assert (await admin.get(f"/admin/m/{shop.slug}/")).status_code == 200


async def test_slow_figures_are_kept_until_the_next_change_or_a_minute(
    client: httpx.AsyncClient, db: Database, shop: Shop, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_figures, "SLOW_SECONDS", 0.0)  # every merchant counts as large
    admin = await login(client, await make_staff(db, role="admin", merchant_id=shop.merchant_id))
    assert admin.last is not None and "Figures as of" not in admin.last.text  # the login lands here
    kept = await admin.get(f"/admin/m/{shop.slug}/")
    assert "Figures as of 02/03/2026, 09:00" in kept.text
    await api(client, shop, "POST", "/members", json={"email": "n@example.com", "send_credentials": False})
    changed = await admin.get(f"/admin/m/{shop.slug}/")
    assert "Figures as of" not in changed.text and cards(changed.text)["Members in total"] == "1"
    assert "Figures as of" in (await admin.get(f"/admin/m/{shop.slug}/")).text
    clock.advance(timedelta(minutes=1))
    assert "Figures as of" not in (await admin.get(f"/admin/m/{shop.slug}/")).text


# --------------------------------------------------------------------------- charts.py (pure)


def test_nice_steps_and_scales() -> None:
    assert [nice_step(value) for value in (0, 1, 3, 4, 5, 7, 9, 990, 1000, 12345)] == [
        1,
        1,
        1,
        1,
        2,
        2,
        5,
        500,
        500,
        5000,
    ]
    assert scale_max(0) == 1 and scale_max(3) == 3 and scale_max(7) == 8 and scale_max(990) == 1000
    assert ticks(0) == [0, 1] and ticks(3) == [0, 1, 2, 3] and ticks(990) == [0, 500, 1000]
    assert ticks(12345) == [0, 5000, 10000, 15000]
    assert label_every(30, 7) == [1, 8, 15, 22, 29] and label_every(12, 3) == [2, 5, 8, 11]
    assert label_every(0, 7) == []


def test_bar_chart_geometry() -> None:
    data = [Datum("one", 0), Datum("two", 5, axis_label="2"), Datum("three", 10, "ten"), Datum("four", -3)]
    chart = bar_chart(data, format_tick=lambda value: f"{value}!")
    assert len(chart.bars) == 4 and chart.scale_max == 10 and chart.total == 12
    assert [tick.value for tick in chart.ticks] == [0, 5, 10]
    assert [tick.text for tick in chart.ticks] == ["0!", "5!", "10!"]
    assert chart.ticks[0].position == chart.bottom and chart.ticks[-1].position == chart.top
    zero, half, full, negative = chart.bars
    assert zero.height == 0 and negative.height == 0 and zero.y == chart.bottom
    assert full.y == chart.top and full.height == chart.bottom - chart.top
    assert half.height == pytest.approx(full.height / 2)
    assert zero.x < half.x < full.x < negative.x and negative.x + negative.width <= chart.right
    assert [(label.text, label.x) for label in chart.axis_labels] == [("2", half.centre)]
    assert chart.peak == data[2] and full.datum.shown == "ten" and half.datum.shown == "5"


def test_a_small_value_stays_visible_and_empty_series_draw_nothing() -> None:
    chart = bar_chart([Datum("big", 100000), Datum("small", 1)])
    assert chart.bars[1].height >= 1
    empty = bar_chart([])
    assert empty.empty and empty.bars == [] and empty.peak is None and empty.total == 0
    assert [tick.value for tick in empty.ticks] == [0, 1]
    flat = bar_chart([Datum("a", 0), Datum("b", 0)])
    assert flat.peak is None and all(bar.height == 0 for bar in flat.bars)


def test_horizontal_bars() -> None:
    chart = hbar_chart([Datum("active", 8), Datum("paused", 2), Datum("trial", 0)])
    active, paused, trial = chart.rows
    assert chart.total == 10 and chart.scale_max == 8
    assert paused.length == pytest.approx(active.length / 4) and trial.length == 0
    assert active.y < paused.y < trial.y and chart.height >= trial.y + 20
    assert chart.left + active.length < chart.width
    empty = hbar_chart([])
    assert empty.rows == [] and empty.height > 0


def test_windows_and_id_floor(clock: FrozenClock) -> None:
    days = day_window(NOW)
    assert len(days) == 30 and days[-1].isoformat() == "2026-03-02" and days[0].isoformat() == "2026-02-01"
    months = month_window(NOW)
    assert [month.isoformat() for month in (months[0], months[-1])] == ["2025-04-01", "2026-03-01"]
    assert month_window(datetime(2026, 12, 31, tzinfo=UTC))[0].isoformat() == "2026-01-01"
    clock.set(NOW)
    assert new_id("mem") >= id_floor("mem", NOW)
    assert id_floor("mem", NOW) > id_floor("mem", NOW - timedelta(milliseconds=1))
    assert id_floor("mem", NOW) == "mem_" + _base32(int(NOW.timestamp() * 1000), 10)
