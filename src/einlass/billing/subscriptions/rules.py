"""The subscription rule: a subscription's life is a fold of the facts known about it.

Like the payment ledger, the fold reads the facts as a set sorted by the time
they happened, so neither arrival order nor duplicates change the outcome
(invariant 2). It then plays the subscription forward with no further facts:
renewal due, grace over, pause over, cancellation effective. The result is the
whole timeline, past and projected:

* ``windows``: when the subscription gives access and under which plan. The
  service turns them into grants (invariant 1), so access needs no worker: a
  grant simply ends.
* ``schedule``: when its status changes. The worker only moves the stored
  status along this schedule (and tells the merchant), so a worker that was
  down catches up by reading the schedule at the current time.

The rules, with a worked example, are in ``docs/subscriptions.md``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import isodate

from einlass.billing.gateways.base import SubscriptionFactKind as Kind


class Status(StrEnum):
    PENDING = "pending"  # waiting for the first payment
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"  # renewal missing or failed: access kept through the grace period
    PAUSED = "paused"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ENDED = frozenset({Status.CANCELLED, Status.EXPIRED})
# Subscriptions that count as running (figures, "one active subscription per purchase").
LIVE = frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE, Status.PAUSED})


@lru_cache(maxsize=256)
def duration(iso: str) -> timedelta | isodate.Duration:
    """An ISO 8601 duration; months and years are calendar months and years."""
    value = isodate.parse_duration(iso)
    if not isinstance(value, timedelta | isodate.Duration):
        raise ValueError(f"{iso!r} is not an ISO 8601 duration")
    return value


def shift(at: datetime, iso: str) -> datetime:
    result = at + duration(iso)
    assert isinstance(result, datetime)
    return result


def days_in(iso: str) -> float:
    """Average length in days (P1M = 30.44 days), for comparing and normalising prices."""
    value = duration(iso)
    if isinstance(value, isodate.Duration):
        months = float(value.years) * 12 + float(value.months)
        return float(months * 30.436875 + value.tdelta.total_seconds() / 86400)
    return value.total_seconds() / 86400


@dataclass(frozen=True)
class Terms:
    """What the plan says about time."""

    interval: str  # ISO 8601, e.g. P1M
    grace: str = "P3D"
    trial: str | None = None
    min_term: str | None = None  # a cancellation takes effect at the end of it at the earliest
    max_cycles: int | None = None  # a fixed number of paid periods, then it expires


@dataclass(frozen=True)
class SubFact:
    key: str
    kind: Kind
    at: datetime
    payment_ref: str | None = None
    period_end: datetime | None = None
    trial_end: datetime | None = None
    resume_at: datetime | None = None
    cancel_at: datetime | None = None
    at_period_end: bool = True
    cancel_at_period_end: bool = False  # SNAPSHOT
    amount: int | None = None
    currency: str | None = None
    interval: str | None = None
    status: str | None = None  # SNAPSHOT: the gateway's status word
    paused: bool | None = None
    plan_id: str | None = None


@dataclass(frozen=True)
class Window:
    plan_id: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class SubscriptionState:
    plan_id: str
    amount: int | None
    currency: str | None
    interval: str
    started_at: datetime | None
    # End of the paid time as of the last fact (the projection may end it earlier).
    paid_through: datetime | None
    cycles_paid: int
    paused_at: datetime | None
    resume_at: datetime | None
    cancel_at: datetime | None  # when a requested cancellation takes effect
    ended_at: datetime | None
    pending_plan_id: str | None
    windows: tuple[Window, ...]
    schedule: tuple[tuple[datetime, Status], ...]

    def status_at(self, at: datetime) -> Status:
        status = Status.PENDING
        for when, value in self.schedule:
            if when > at:
                break
            status = value
        return status

    def next_change_after(self, at: datetime) -> datetime | None:
        return next((when for when, _ in self.schedule if when > at), None)

    def has_access(self, at: datetime) -> bool:
        return any(window.starts_at <= at < window.ends_at for window in self.windows)


# Gateway status words that end a subscription (Stripe's, and einlass's own).
_ENDS_CANCELLED = frozenset({"canceled", "cancelled"})
_ENDS_EXPIRED = frozenset({"unpaid", "incomplete_expired", "expired"})
_PAID_STATES = frozenset({"active", "trialing"})
_LOOP_LIMIT = 10_000


@dataclass
class _Play:
    terms_by_plan: Mapping[str, Terms]
    plan_id: str
    interval: str
    amount: int | None = None
    currency: str | None = None
    status: Status = Status.PENDING
    started_at: datetime | None = None
    paid_through: datetime | None = None
    cycles_paid: int = 0
    paused_at: datetime | None = None
    resume_at: datetime | None = None
    remainder: timedelta = timedelta(0)
    cancel_requested: bool = False
    cancel_on: datetime | None = None  # a fixed date; else the period end
    ended_at: datetime | None = None
    # A downgrade waiting for the period end: plan, when, the new amount.
    pending_plan: tuple[str, datetime, int | None] | None = None
    open_since: datetime | None = None
    windows: list[Window] = field(default_factory=list)
    schedule: list[tuple[datetime, Status]] = field(default_factory=list)
    counted_payments: set[str] = field(default_factory=set)
    # The instant played so far; nothing is dated before it.
    clock: datetime | None = None

    # -- derived times ---------------------------------------------------

    @property
    def terms(self) -> Terms:
        return self.terms_by_plan[self.plan_id]

    def grace_end(self) -> datetime | None:
        if self.paid_through is None:
            return None
        if self.cycles_complete():
            return self.paid_through
        return shift(self.paid_through, self.terms.grace)

    def cycles_complete(self) -> bool:
        limit = self.terms.max_cycles
        return limit is not None and self.cycles_paid >= limit

    def cancel_effective(self) -> datetime | None:
        if not self.cancel_requested:
            return None
        if self.cancel_on is not None:
            return self.cancel_on
        end = self.paid_through or self.started_at
        if end is None:
            return None
        if self.terms.min_term and self.started_at is not None:
            end = max(end, shift(self.started_at, self.terms.min_term))
        return end

    # -- the moves --------------------------------------------------------

    def set_status(self, at: datetime, status: Status) -> None:
        if status is not self.status:
            self.status = status
            self.schedule.append((at, status))

    def open(self, at: datetime) -> None:
        if self.open_since is None:
            self.open_since = at

    def close(self, at: datetime) -> None:
        if self.open_since is not None:
            if at > self.open_since:
                self.windows.append(Window(self.plan_id, self.open_since, at))
            self.open_since = None

    def end(self, at: datetime, status: Status) -> None:
        self.close(at)
        self.ended_at = at
        self.paused_at = self.resume_at = None
        self.pending_plan = None
        self.set_status(at, status)

    def switch_plan(self, at: datetime, plan_id: str) -> None:
        if plan_id == self.plan_id or plan_id not in self.terms_by_plan:
            return
        was_open = self.open_since is not None
        self.close(at)
        self.plan_id = plan_id
        self.interval = self.terms.interval
        if was_open:
            self.open(at)

    def pause(self, at: datetime, resume_at: datetime | None) -> None:
        if self.ended_at is not None:
            return
        if self.paused_at is not None:
            self.resume_at = resume_at
            return
        # Negative inside the grace: a pause must not buy a fresh grace on resume.
        self.remainder = self.paid_through - at if self.paid_through else timedelta(0)
        self.paused_at, self.resume_at = at, resume_at
        self.close(at)
        self.set_status(at, Status.PAUSED)

    def resume(self, at: datetime, period_end: datetime | None) -> None:
        if self.paused_at is None:
            return
        never_paid = self.paid_through is None and self.remainder <= timedelta(0)
        self.paused_at = self.resume_at = None
        if never_paid and period_end is None:
            self.set_status(at, Status.PENDING)
            return
        self.paid_through = period_end if period_end is not None else at + self.remainder
        self.remainder = timedelta(0)
        grace_end = self.grace_end()
        if grace_end is not None and grace_end <= at:
            self.end(at, Status.EXPIRED)
            return
        if self.cancel_requested and self.cancel_on is None and self.paid_through <= at:
            self.end(at, Status.CANCELLED)
            return
        self.open(at)
        self.set_status(at, Status.ACTIVE if self.paid_through > at else Status.PAST_DUE)

    def paid(self, fact: SubFact) -> None:
        if fact.payment_ref is not None:
            if fact.payment_ref in self.counted_payments:
                return
            self.counted_payments.add(fact.payment_ref)
        at = fact.at
        self.started_at = self.started_at or at
        grace_end = self.grace_end()
        self.cycles_paid += 1
        if self.ended_at is not None:
            # Money came in after the end: the gateway charged, so access follows.
            self.ended_at, self.cancel_requested, self.cancel_on = None, False, None
            self.paid_through = grace_end = None
        if self.paused_at is not None:
            self.remainder += shift(at, self.interval) - at
            return
        anchored = self.paid_through is not None and grace_end is not None and at < grace_end
        base = self.paid_through if anchored and self.paid_through is not None else at
        end = fact.period_end if fact.period_end is not None else shift(base, self.interval)
        self.paid_through = max(self.paid_through, end) if self.paid_through else end
        if self.paid_through > at:
            self.open(at)
            self.set_status(at, Status.ACTIVE)

    def start(self, fact: SubFact) -> None:
        self.started_at = self.started_at or fact.at
        trial_end = fact.trial_end
        if trial_end is None and self.terms.trial:
            trial_end = shift(fact.at, self.terms.trial)
        if trial_end is not None and trial_end > fact.at and self.paid_through is None:
            self.paid_through = trial_end
            if self.paused_at is None and self.ended_at is None:
                self.open(fact.at)
                self.set_status(fact.at, Status.TRIALING)

    def cancel(self, at: datetime, at_period_end: bool, cancel_at: datetime | None) -> None:
        if self.ended_at is not None:
            return
        if cancel_at is not None:
            if cancel_at <= at:
                self.end(at, Status.CANCELLED)
                return
        elif not at_period_end or self.paused_at is not None:
            # Paused time is not paid time: a paused subscription cancelled at
            # period end has no period left to run.
            self.end(at, Status.CANCELLED)
            return
        self.cancel_requested, self.cancel_on = True, cancel_at

    def snapshot(self, fact: SubFact) -> None:
        word = (fact.status or "").lower()
        # A gateway that shows the new price at once (Stripe) must not pull a
        # downgrade that waits for the period end forward.
        if fact.plan_id and not (self.pending_plan and self.pending_plan[0] == fact.plan_id):
            self.switch_plan(fact.at, fact.plan_id)
        if word in _ENDS_CANCELLED or word in _ENDS_EXPIRED:
            if self.ended_at is None:
                self.end(fact.at, Status.CANCELLED if word in _ENDS_CANCELLED else Status.EXPIRED)
            return
        paused = bool(fact.paused) or word == "paused"
        was_paused = self.paused_at is not None
        if paused:
            self.pause(fact.at, fact.resume_at)
        elif was_paused:
            self.resume(fact.at, None)
        end = fact.trial_end if word == "trialing" and fact.trial_end else fact.period_end
        pays_ahead = end is not None and end > fact.at
        if word in _PAID_STATES and not paused and (self.ended_at is None or pays_ahead):
            if self.ended_at is not None:
                # The gateway collected after einlass ended it (a late retry): it runs again.
                self.ended_at, self.cancel_requested, self.cancel_on = None, False, None
                self.paid_through = None
            self.started_at = self.started_at or fact.at
            if end is not None and end > fact.at and (self.paid_through is None or end > self.paid_through):
                self.paid_through = end
            if self.paid_through is not None and self.paid_through > fact.at:
                self.open(fact.at)
                self.set_status(fact.at, Status.TRIALING if word == "trialing" else Status.ACTIVE)
        elif word == "past_due" and not paused and self.ended_at is None and self.paid_through is not None:
            self.set_status(fact.at, Status.PAST_DUE)
        if fact.cancel_at_period_end or fact.cancel_at is not None:
            self.cancel(fact.at, True, fact.cancel_at)
        elif self.cancel_requested:
            self.cancel_requested, self.cancel_on = False, None

    def apply(self, fact: SubFact, paid_payments: Collection[str]) -> None:
        match fact.kind:
            case Kind.CREATED:
                if fact.plan_id:
                    self.switch_plan(fact.at, fact.plan_id)
                self.interval = fact.interval or self.interval
                self.amount = fact.amount if fact.amount is not None else self.amount
                self.currency = fact.currency or self.currency
                self.start(fact)
            case Kind.PERIOD:
                if fact.payment_ref is None or fact.payment_ref in paid_payments:
                    self.paid(fact)
            case Kind.RENEWAL_FAILED:
                if self.ended_at is None and self.paused_at is None and self.paid_through is not None:
                    self.set_status(fact.at, Status.PAST_DUE)
            case Kind.PAUSED:
                self.pause(fact.at, fact.resume_at)
            case Kind.RESUMED:
                self.resume(fact.at, fact.period_end)
            case Kind.UPDATED:
                self.amount = fact.amount if fact.amount is not None else self.amount
                self.currency = fact.currency or self.currency
                self.interval = fact.interval or self.interval
                if fact.period_end is not None and self.ended_at is None and self.paused_at is None:
                    self.paid_through = fact.period_end
            case Kind.CANCELLED:
                self.cancel(fact.at, fact.at_period_end, fact.cancel_at)
            case Kind.CANCEL_WITHDRAWN:
                if self.ended_at is None:
                    self.cancel_requested, self.cancel_on = False, None
            case Kind.PLAN_CHANGED:
                if fact.plan_id and self.ended_at is None:
                    if fact.at_period_end and self.paid_through is not None and self.paid_through > fact.at:
                        self.pending_plan = (fact.plan_id, self.paid_through, fact.amount)
                    else:
                        self.pending_plan = None
                        self.switch_plan(fact.at, fact.plan_id)
                        self.amount = fact.amount if fact.amount is not None else self.amount
            case Kind.SNAPSHOT:
                self.snapshot(fact)

    # -- time -------------------------------------------------------------

    def next_timer(self) -> datetime | None:
        """The next instant at which time alone changes something."""
        if self.ended_at is not None:
            return None
        candidates: list[datetime] = []
        if self.paused_at is not None:
            if self.resume_at is not None:
                candidates.append(self.resume_at)
            if self.cancel_requested and self.cancel_on is not None:
                candidates.append(self.cancel_on)
            return min(candidates, default=None)
        if self.pending_plan is not None:
            candidates.append(self.pending_plan[1])
        cancel = self.cancel_effective()
        if cancel is not None:
            candidates.append(cancel)
        if self.paid_through is not None:
            if self.status in (Status.ACTIVE, Status.TRIALING) and not self.cycles_complete():
                candidates.append(self.paid_through)
            grace_end = self.grace_end()
            if grace_end is not None:
                candidates.append(grace_end)
        return min(candidates, default=None)

    def tick(self, at: datetime) -> None:
        """Everything due by ``at``, in a fixed order, dated ``at``."""
        cancel = self.cancel_effective()
        if self.paused_at is not None:
            if self.cancel_on is not None and cancel is not None and cancel <= at:
                self.end(at, Status.CANCELLED)
            elif self.resume_at is not None and self.resume_at <= at:
                self.resume(at, None)
            return
        if self.pending_plan is not None and self.pending_plan[1] <= at:
            plan_id, _, amount = self.pending_plan
            self.pending_plan = None
            self.switch_plan(at, plan_id)
            self.amount = amount if amount is not None else self.amount
        if cancel is not None and cancel <= at:
            self.end(at, Status.CANCELLED)
            return
        grace_end = self.grace_end()
        if grace_end is not None and grace_end <= at:
            self.end(at, Status.EXPIRED)
            return
        if (
            self.paid_through is not None
            and self.paid_through <= at
            and self.status in (Status.ACTIVE, Status.TRIALING)
        ):
            self.set_status(at, Status.PAST_DUE)

    def advance(self, until: datetime | None) -> None:
        for _ in range(_LOOP_LIMIT):
            timer = self.next_timer()
            if timer is None or (until is not None and timer >= until):
                return
            # A fact can date the paid time into the past (a shortened period):
            # what it makes due happens now, never before what was played.
            at = max(timer, self.clock) if self.clock is not None else timer
            self.tick(at)
            self.clock = at
        raise RuntimeError("subscription timeline does not settle")


def fold(
    facts: Iterable[SubFact],
    *,
    plan_id: str,
    terms_by_plan: Mapping[str, Terms],
    paid_payments: Collection[str],
    interval: str | None = None,
    now: datetime | None = None,
) -> SubscriptionState:
    """The subscription's timeline from its facts.

    ``plan_id`` is the plan it was bought with; ``terms_by_plan`` holds that plan
    and every plan it may change to. ``paid_payments`` are the payment refs that
    currently open access (a refunded renewal pays for nothing). The state's
    fields (paid through, paused, ended, plan, ...) are as of ``now``, or as of
    the last fact when it is None; windows and schedule cover the whole timeline.
    """
    by_key = {fact.key: fact for fact in facts}
    ordered = sorted(by_key.values(), key=lambda fact: (fact.at, _RANK[fact.kind], fact.key))
    play = _Play(terms_by_plan, plan_id, interval or terms_by_plan[plan_id].interval)
    seen: SubscriptionState | None = None
    for fact in ordered:
        if now is not None and seen is None and fact.at > now:
            seen = _fields(_advanced_through(play, now))
        # Facts at an instant come before what time does at that instant: a
        # renewal paid exactly at the period end never shows as past due.
        play.advance(fact.at)
        play.clock = fact.at
        play.apply(fact, paid_payments)
    if seen is None:
        seen = _fields(_advanced_through(play, now) if now is not None else play)
    play.advance(None)
    if play.open_since is not None:
        play.close(play.grace_end() or play.open_since)
    return replace(seen, windows=tuple(_merged(play.windows)), schedule=tuple(play.schedule))


def _advanced_through(play: _Play, now: datetime) -> _Play:
    """Everything time does up to and including ``now``."""
    play.advance(now + timedelta(microseconds=1))
    return play


def _fields(play: _Play) -> SubscriptionState:
    return SubscriptionState(
        plan_id=play.plan_id,
        amount=play.amount,
        currency=play.currency,
        interval=play.interval,
        started_at=play.started_at,
        paid_through=play.paid_through,
        cycles_paid=play.cycles_paid,
        paused_at=play.paused_at,
        resume_at=play.resume_at,
        cancel_at=play.cancel_effective(),
        ended_at=play.ended_at,
        pending_plan_id=play.pending_plan[0] if play.pending_plan else None,
        windows=(),
        schedule=(),
    )


# Within one instant: what starts a subscription, then money, then the rest.
_RANK = {
    Kind.CREATED: 0,
    Kind.SNAPSHOT: 1,
    Kind.PERIOD: 2,
    Kind.UPDATED: 3,
    Kind.PLAN_CHANGED: 4,
    Kind.RESUMED: 5,
    Kind.RENEWAL_FAILED: 6,
    Kind.CANCEL_WITHDRAWN: 7,
    Kind.PAUSED: 8,
    Kind.CANCELLED: 9,
}


def _merged(windows: list[Window]) -> list[Window]:
    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: w.starts_at):
        last = merged[-1] if merged else None
        if last is not None and last.plan_id == window.plan_id and window.starts_at <= last.ends_at:
            merged[-1] = replace(last, ends_at=max(last.ends_at, window.ends_at))
        else:
            merged.append(window)
    return merged


def is_upgrade(current: Terms, current_amount: int, new: Terms, new_amount: int) -> bool:
    """An upgrade costs more per day; it applies now, a downgrade at period end."""
    return new_amount / days_in(new.interval) > current_amount / days_in(current.interval)


def monthly_amount(amount: int, interval: str) -> float:
    """The amount normalised to one month (MRR)."""
    return amount * 30.436875 / days_in(interval)
