"""What a subscription plan says: interval, trial, first price, term, cycles, grace, bounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import isodate

from einlass.billing.models import Plan
from einlass.billing.subscriptions.rules import days_in, duration
from einlass.errors import InvalidInput

MAX_DAYS = 36_525


@dataclass(frozen=True)
class SubscriptionTerms:
    """The subscription fields of a plan, as the API and CLI take them."""

    interval: str | None = None  # required unless dynamic
    trial_period: str | None = None
    first_amount: int | None = None
    grace_period: str | None = None
    min_term: str | None = None
    max_cycles: int | None = None
    dynamic: bool = False
    min_amount: int | None = None
    max_amount: int | None = None
    min_interval: str | None = None
    max_interval: str | None = None
    member_can_pause: bool = False
    member_can_cancel: bool = True


def check_duration(value: str | None, param: str, *, allow_zero: bool = False) -> str | None:
    if value is None:
        return None
    try:
        parsed = duration(value)
    except (isodate.ISO8601Error, ValueError, OverflowError):
        raise InvalidInput(
            f"{param} {value!r} is not an ISO 8601 duration such as P1M", param=param
        ) from None
    days = days_in(value)
    negative = isinstance(parsed, timedelta) and parsed < timedelta(0)
    if negative or days < 0 or (days == 0 and not allow_zero):
        raise InvalidInput(f"{param} must be positive", param=param)
    if days > MAX_DAYS:
        raise InvalidInput(f"{param} must be at most 100 years", param=param)
    return value


def apply_terms(plan: Plan, terms: SubscriptionTerms) -> None:
    """Check the terms and write them onto the plan; every problem names its field."""
    interval = check_duration(terms.interval, "interval")
    if not terms.dynamic and interval is None:
        raise InvalidInput("a subscription plan needs an interval such as P1M", param="interval")
    for name in ("first_amount", "min_amount", "max_amount"):
        value = getattr(terms, name)
        if value is not None and value < 0:
            raise InvalidInput(f"{name} must be zero or more (minor units)", param=name)
    if terms.max_cycles is not None and terms.max_cycles < 1:
        raise InvalidInput("max_cycles must be at least 1", param="max_cycles")
    min_interval = check_duration(terms.min_interval, "min_interval")
    max_interval = check_duration(terms.max_interval, "max_interval")
    if terms.dynamic:
        if (
            terms.min_amount is not None
            and terms.max_amount is not None
            and terms.min_amount > terms.max_amount
        ):
            raise InvalidInput("min_amount must not exceed max_amount", param="min_amount")
        if min_interval and max_interval and days_in(min_interval) > days_in(max_interval):
            raise InvalidInput("min_interval must not exceed max_interval", param="min_interval")
    plan.access_period = interval
    plan.trial_period = check_duration(terms.trial_period, "trial_period")
    plan.first_amount = terms.first_amount
    plan.grace_period = check_duration(terms.grace_period, "grace_period", allow_zero=True)
    plan.min_term = check_duration(terms.min_term, "min_term")
    plan.max_cycles = terms.max_cycles
    plan.dynamic = terms.dynamic
    plan.min_amount, plan.max_amount = terms.min_amount, terms.max_amount
    plan.min_interval, plan.max_interval = min_interval, max_interval
    plan.member_can_pause = terms.member_can_pause
    plan.member_can_cancel = terms.member_can_cancel


def check_dynamic_purchase(plan: Plan, amount: int | None, interval: str | None) -> None:
    """A dynamic plan's purchase must stay within the merchant's bounds."""
    if not plan.dynamic:
        return
    if amount is not None:
        if plan.min_amount is not None and amount < plan.min_amount:
            raise InvalidInput(
                f"amount {amount} is below the plan's minimum {plan.min_amount}", param="amount"
            )
        if plan.max_amount is not None and amount > plan.max_amount:
            raise InvalidInput(
                f"amount {amount} is above the plan's maximum {plan.max_amount}", param="amount"
            )
    if interval is not None:
        check_duration(interval, "interval")
        days = days_in(interval)
        if plan.min_interval and days < days_in(plan.min_interval):
            raise InvalidInput(f"interval {interval} is shorter than {plan.min_interval}", param="interval")
        if plan.max_interval and days > days_in(plan.max_interval):
            raise InvalidInput(f"interval {interval} is longer than {plan.max_interval}", param="interval")


def render_terms(plan: Plan) -> dict[str, Any]:
    return {
        "interval": plan.access_period,
        "trial_period": plan.trial_period,
        "first_amount": plan.first_amount,
        "grace_period": plan.grace_period or "P3D",
        "min_term": plan.min_term,
        "max_cycles": plan.max_cycles,
        "dynamic": plan.dynamic,
        "min_amount": plan.min_amount,
        "max_amount": plan.max_amount,
        "min_interval": plan.min_interval,
        "max_interval": plan.max_interval,
        "member_can_pause": plan.member_can_pause,
        "member_can_cancel": plan.member_can_cancel,
    }
