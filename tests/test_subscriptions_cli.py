"""``einlass catalogue plan --kind subscription`` and ``einlass subscription ...``, run as the real
command line in subprocesses against a SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cli_support import Cli, migrated_cli
from einlass import clock
from einlass.billing.gateways.base import Customer, PaymentEvent, SubscriptionEvent
from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.subscriptions.models import Subscription
from einlass.db.engine import Database
from subscription_support import deliver as deliver_events
from subscription_support import paid

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    yield migrated_cli(tmp_path_factory, "subscription-cli")


async def deliver(cli: Cli, slug: str, *events: PaymentEvent | SubscriptionEvent) -> None:
    """Apply gateway events below the HTTP layer, as one delivery, in the CLI's database."""
    db = Database(cli.database_url)
    try:
        await deliver_events(db, cli.settings(), slug, *events)
    finally:
        await db.dispose()


async def subscription_id(cli: Cli, ref: str) -> str:
    db = Database(cli.database_url)
    try:
        async with db.transaction() as session:
            found = await session.scalar(select(Subscription.id).where(Subscription.external_id == ref))
    finally:
        await db.dispose()
    assert found is not None
    return found


def test_catalogue_plan_creates_subscription_plans_with_every_term(cli):
    shop = "plans"
    cli.json(f"merchant create {shop} --name Plans")
    cli.json(f"catalogue area {shop} premium --name Premium")
    plain = "--name P --amount 990 --area premium"
    monthly, flex, bad_interval, period, one_time, kind = cli.run_parallel(
        (
            f"catalogue plan {shop} monthly --name Monthly --amount 990 --area premium --kind subscription "
            "--interval P1M --trial P14D --first-amount 99 --grace P5D --min-term P3M --cycles 12 "
            "--member-can-pause --no-member-can-cancel --ref generic=sub-m",
            0,
        ),
        (
            f"catalogue plan {shop} flex --name Flex --amount 500 --area premium --kind subscription --dynamic "
            "--min-amount 100 --max-amount 5000 --min-interval P1W --max-interval P3M",
            0,
        ),
        (f"catalogue plan {shop} bad1 {plain} --kind subscription --interval monthly", 1),
        (f"catalogue plan {shop} bad2 {plain} --kind subscription --interval P1M --period P30D", 2),
        (f"catalogue plan {shop} bad3 {plain} --interval P1M", 2),
        (f"catalogue plan {shop} bad4 {plain} --kind weekly", 2),
    )
    plan = json.loads(monthly.stdout)
    assert plan["kind"] == "subscription" and plan["access_period"] == "P1M"
    assert plan["gateway_refs"] == {"generic": ["sub-m"]}
    assert plan["subscription"] == {
        "interval": "P1M",
        "trial_period": "P14D",
        "first_amount": 99,
        "grace_period": "P5D",
        "min_term": "P3M",
        "max_cycles": 12,
        "dynamic": False,
        "min_amount": None,
        "max_amount": None,
        "min_interval": None,
        "max_interval": None,
        "member_can_pause": True,
        "member_can_cancel": False,
    }
    dynamic = json.loads(flex.stdout)["subscription"]
    assert dynamic["dynamic"] is True and dynamic["interval"] is None
    assert (dynamic["min_amount"], dynamic["max_amount"]) == (100, 5000)
    assert (dynamic["min_interval"], dynamic["max_interval"]) == ("P1W", "P3M")
    assert dynamic["member_can_pause"] is False and dynamic["member_can_cancel"] is True

    assert bad_interval.stdout == ""
    assert bad_interval.stderr.strip() == "error: interval 'monthly' is not an ISO 8601 duration such as P1M"
    assert "--interval" in period.stderr and "--kind subscription" in one_time.stderr
    assert "one_time or subscription" in kind.stderr


async def test_subscription_commands_list_show_act_and_count(cli):
    shop = "subs"
    cli.json(f"merchant create {shop} --name Subs")
    cli.json(f"catalogue area {shop} premium --name Premium")
    cli.run_parallel(
        (
            f"catalogue plan {shop} monthly --name Monthly --amount 990 --area premium --kind subscription "
            "--interval P1M --trial P14D --ref generic=sub-m",
            0,
        ),
        (
            f"catalogue plan {shop} yearly --name Yearly --amount 9900 --area premium --kind subscription "
            "--interval P1Y --ref generic=sub-y",
            0,
        ),
    )
    now = clock.now()
    anna = Customer(email="anna@example.com")
    await deliver(
        cli,
        shop,
        SubscriptionEvent(Kind.CREATED, "y1", "created", occurred_at=now, product_ref="sub-y", customer=anna),
        *paid("y1", "p1", now, 9900),
    )
    await deliver(
        cli,
        shop,
        SubscriptionEvent(Kind.CREATED, "m1", "created", occurred_at=now, product_ref="sub-m", customer=anna),
    )
    yearly, trial = await subscription_id(cli, "y1"), await subscription_id(cli, "m1")

    listed, trialing, by_plan, shown, figures, unknown = cli.run_parallel(
        (f"subscription list --merchant {shop}", 0),
        (f"subscription list --merchant {shop} --status trialing", 0),
        (f"subscription list --merchant {shop} --plan yearly", 0),
        (f"subscription show --merchant {shop} {yearly}", 0),
        (f"subscription figures --merchant {shop}", 0),
        ("subscription list --merchant no-such-shop", 1),
    )
    assert [item["id"] for item in json.loads(listed.stdout)] == [trial, yearly]
    assert [item["status"] for item in json.loads(trialing.stdout)] == ["trialing"]
    assert [item["id"] for item in json.loads(by_plan.stdout)] == [yearly]
    detail = json.loads(shown.stdout)
    assert detail["status"] == "active" and detail["external_id"] == "y1" and detail["actions"] == []
    assert [(change["from"], change["to"]) for change in detail["status_history"]] == [("pending", "active")]
    counted = json.loads(figures.stdout)
    assert counted["month"] == now.strftime("%Y-%m")
    assert counted["active"]["by_status"] == {"active": 1, "trialing": 1, "past_due": 0, "paused": 0}
    assert counted["mrr"] == {"EUR": 825}
    assert unknown.stderr.strip() == "error: no merchant 'no-such-shop'"

    resume_at = (now + timedelta(days=30)).replace(microsecond=0).astimezone(UTC)
    paused = cli.json(
        f"subscription pause --merchant {shop} {yearly} --resume-at {resume_at.isoformat()} --reason holiday"
    )
    assert paused["status"] == "paused" and paused["resume_at"] == resume_at.isoformat()
    assert paused["action"]["kind"] == "pause" and paused["action"]["status"] == "pending"
    assert paused["action"]["requested_by"] == "cli:"
    assert paused["action"]["params"] == {"resume_at": resume_at.isoformat(), "reason": "holiday"}
    assert cli.json(f"subscription resume --merchant {shop} {yearly}")["status"] == "active"
    changed = cli.json(f"subscription change-plan --merchant {shop} {yearly} monthly")
    assert changed["action"]["params"]["plan"] == "monthly" and changed["action"]["params"]["upgrade"] is True
    cancelled = cli.json(f"subscription cancel --merchant {shop} {yearly}")
    assert cancelled["status"] == "active" and cancelled["cancel_at"] is not None
    ended = cli.json(f"subscription cancel --merchant {shop} {yearly} --now")
    assert ended["status"] == "cancelled" and ended["action"]["params"] == {"at_period_end": False}

    refused, bad_time = cli.run_parallel(
        (f"subscription pause --merchant {shop} {yearly}", 1),
        (f"subscription pause --merchant {shop} {trial} --resume-at next-week", 2),
    )
    assert refused.stderr.strip() == "error: the subscription is cancelled"
    assert "next-week" in bad_time.stderr
    history = cli.json(f"subscription show --merchant {shop} {yearly}")
    assert [action["kind"] for action in history["actions"]] == [
        "cancel",
        "cancel",
        "change_plan",
        "resume",
        "pause",
    ]
    assert datetime.fromisoformat(history["ended_at"]) <= datetime.now(UTC)
