"""The subscription rule (``rules.fold``) checked on random fact sets, and on the documented examples.

Properties: the state depends on the set of facts only; windows are ordered and
disjoint; status and access agree at every instant, and the state's fields with
the schedule at ``now``; later facts never rewrite the past; a fact that does
not count leaves no trace. For the simple fragment (payments, pauses with or
without a resume date, resumes, cancellations) access and status equal ``Life``,
a model written from the documented rules, not from ``rules.py``; the state
machine of test_subscription_stateful.py checks the service against it too.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import isodate
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from einlass.billing.gateways.base import SubscriptionFactKind as Kind
from einlass.billing.subscriptions.rules import ENDED, Status, SubFact, SubscriptionState, Terms, fold

START = datetime(2027, 1, 10, 10, 0, tzinfo=UTC)
DAYS = 150  # the timeline the random facts fall into
SECOND = timedelta(seconds=1)
# EINLASS_RULE_EXAMPLES=5000 for a long run.
EXAMPLES = int(os.environ.get("EINLASS_RULE_EXAMPLES", "200"))
PROPERTY = hypothesis_settings(max_examples=EXAMPLES, deadline=None)

BASE, UP, DOWN = "base", "yearly", "weekly"
MONTHLY = Terms(interval="P1M", grace="P3D")
OTHER_PLANS = {UP: Terms(interval="P1Y"), DOWN: Terms(interval="P1W", grace="P1D")}
SNAPSHOT_WORDS = ("active", "trialing", "past_due", "paused", "canceled", "unpaid", "incomplete")
NO_ACCESS = frozenset({Status.PENDING, Status.PAUSED, Status.CANCELLED, Status.EXPIRED})


@dataclass(frozen=True)
class Case:
    facts: tuple[SubFact, ...]
    paid: frozenset[str]  # payment refs that are confirmed (the others were refunded)
    terms: Terms = MONTHLY
    now: datetime | None = None  # the state's fields are as of now (None: as of the last fact)

    def fold(
        self,
        facts: Iterable[SubFact] | None = None,
        paid: Iterable[str] | None = None,
        now: datetime | None = None,
    ) -> SubscriptionState:
        return fold(
            self.facts if facts is None else facts,
            plan_id=BASE,
            terms_by_plan={BASE: self.terms, **OTHER_PLANS},
            paid_payments=self.paid if paid is None else frozenset(paid),
            now=now or self.now,
        )


# --- random facts -----------------------------------------------------------------------------


def moments(days: int = DAYS) -> st.SearchStrategy[datetime]:
    # Whole days from START (10:00, where periods end) make ties between facts and timers likely.
    whole_days = st.integers(0, days).map(lambda n: START + timedelta(days=n))
    minutes = st.integers(0, days * 24 * 60).map(lambda n: START + timedelta(minutes=n))
    return st.one_of(whole_days, minutes)


def later(at: datetime, low: int = 1, high: int = 60) -> st.SearchStrategy[datetime]:
    return st.integers(low * 24, high * 24).map(lambda hours: at + timedelta(hours=hours))


def optional(strategy: st.SearchStrategy[datetime]) -> st.SearchStrategy[datetime | None]:
    return st.none() | strategy


@st.composite
def any_fact(draw: st.DrawFn, number: int) -> tuple[SubFact, bool]:
    """One fact of any kind, and whether its payment (if any) is confirmed."""
    kind = draw(st.sampled_from(list(Kind)))
    at = draw(moments())
    fact = SubFact(key=f"{number}:{kind.value}", kind=kind, at=at)
    confirmed = True
    match kind:
        case Kind.CREATED:
            fact = replace(fact, trial_end=draw(optional(later(at, 1, 30))))
        case Kind.PERIOD:
            fact = replace(fact, payment_ref=f"pay-{number}", period_end=draw(optional(later(at, -5, 60))))
            confirmed = draw(st.integers(0, 4)) > 0
        case Kind.PAUSED:
            fact = replace(fact, resume_at=draw(optional(later(at))))
        case Kind.RESUMED:
            fact = replace(fact, period_end=draw(optional(later(at, -5, 60))))
        case Kind.UPDATED:
            fact = replace(fact, amount=draw(st.none() | st.just(1290)), period_end=draw(optional(later(at))))
        case Kind.CANCELLED:
            how = draw(st.sampled_from(["period_end", "now", "date"]))
            fact = replace(
                fact,
                at_period_end=how != "now",
                cancel_at=draw(later(at, -5, 60)) if how == "date" else None,
            )
        case Kind.PLAN_CHANGED:
            upgrade = draw(st.booleans())
            fact = replace(fact, plan_id=UP if upgrade else DOWN, at_period_end=not upgrade)
        case Kind.SNAPSHOT:
            fact = replace(
                fact,
                status=draw(st.sampled_from(SNAPSHOT_WORDS)),
                period_end=draw(optional(later(at, -5, 60))),
                trial_end=draw(optional(later(at, 1, 30))),
                paused=draw(st.none() | st.booleans()),
                resume_at=draw(optional(later(at))),
                cancel_at_period_end=draw(st.booleans()),
                cancel_at=draw(optional(later(at, 1, 60))),
            )
    return fact, confirmed


terms_strategy = st.builds(
    Terms,
    interval=st.sampled_from(["P1M", "P1W", "P3M"]),
    grace=st.sampled_from(["P3D", "P1D", "P0D"]),
    trial=st.none() | st.just("P14D"),
    min_term=st.none() | st.just("P3M"),
    max_cycles=st.none() | st.integers(1, 3),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    drawn = [draw(any_fact(number)) for number in range(draw(st.integers(0, 14)))]
    paid = frozenset(f.payment_ref for f, confirmed in drawn if f.payment_ref and confirmed)
    terms = draw(st.one_of(st.just(MONTHLY), terms_strategy))
    return Case(tuple(f for f, _ in drawn), paid, terms, draw(st.none() | moments(DAYS + 30)))


def probe_times(state: SubscriptionState, facts: Iterable[SubFact]) -> list[datetime]:
    """Every instant something changes, a second either side, and a grid between."""
    instants = {at for at, _ in state.schedule} | {fact.at for fact in facts}
    for window in state.windows:
        instants |= {window.starts_at, window.ends_at}
    around = {moment + offset for moment in instants for offset in (-SECOND, timedelta(0), SECOND)}
    grid = {START + timedelta(days=n, hours=3) for n in range(-2, DAYS + 200, 4)}
    return sorted(around | grid)


FAR = START + timedelta(days=10 * DAYS)  # after everything


# --- properties -------------------------------------------------------------------------------


@PROPERTY
@given(case=cases(), data=st.data())
def test_only_the_set_of_facts_counts(case: Case, data: st.DataObject) -> None:
    shuffled = list(data.draw(st.permutations(case.facts)))
    if case.facts:
        for repeat in data.draw(st.lists(st.sampled_from(case.facts), max_size=6)):
            shuffled.insert(data.draw(st.integers(0, len(shuffled))), repeat)
    assert case.fold(shuffled) == case.fold()


@PROPERTY
@given(case=cases())
def test_windows_are_ordered_disjoint_and_not_empty(case: Case) -> None:
    windows = case.fold().windows
    for window in windows:
        assert window.starts_at < window.ends_at, window
    for before, after in itertools.pairwise(windows):
        assert before.ends_at <= after.starts_at, (before, after)


@PROPERTY
@given(case=cases())
def test_status_and_access_agree_at_every_instant(case: Case) -> None:
    state = case.fold()
    instants = [at for at, _ in state.schedule]
    assert instants == sorted(instants)
    for at in probe_times(state, case.facts):
        status, access = state.status_at(at), state.has_access(at)
        if status in NO_ACCESS:
            assert not access, (at, status)
        if status in (Status.ACTIVE, Status.TRIALING):
            # Active means paid time is running: access.
            assert access, (at, status)
    if state.ended_at is not None:
        assert state.status_at(state.ended_at) in ENDED
    if case.now is not None:
        # The fields are as of now, and say what the schedule says at now.
        now = state.status_at(case.now)
        assert (state.ended_at is not None) == (now in ENDED), (now, state.ended_at)
        assert (state.paused_at is not None) == (now is Status.PAUSED), (now, state.paused_at)


@PROPERTY
@given(case=cases(), data=st.data())
def test_later_facts_never_rewrite_the_past(case: Case, data: st.DataObject) -> None:
    cut = data.draw(moments(DAYS + 5))
    earlier = [fact for fact in case.facts if fact.at < cut]
    full, partial = case.fold(), case.fold(earlier)
    for at in probe_times(partial, earlier):
        if at < cut:
            assert full.has_access(at) == partial.has_access(at), at
            assert full.status_at(at) == partial.status_at(at), at


@PROPERTY
@given(case=cases(), data=st.data())
def test_a_fact_that_does_not_count_leaves_no_trace(case: Case, data: st.DataObject) -> None:
    """A refunded renewal is as if it never came; a retracted fact is simply absent."""
    # As of a given instant: "as of the last fact" moves when the last fact goes.
    case = replace(case, now=case.now or FAR)
    unpaid = [f for f in case.facts if f.kind is Kind.PERIOD and f.payment_ref not in case.paid]
    counting = [f for f in case.facts if f not in unpaid]
    assert case.fold() == case.fold(counting)
    retracted = data.draw(st.sets(st.sampled_from(case.facts))) if case.facts else set()
    kept = [f for f in case.facts if f not in retracted]
    refunded = {f.payment_ref for f in retracted if f.payment_ref}
    # Retracting a renewal's fact, or refunding its payment, comes to the same.
    assert case.fold(kept) == case.fold(
        [f for f in case.facts if f not in retracted or f.kind is Kind.PERIOD],
        paid=case.paid - refunded,
    )


# --- an oracle for the simple fragment ----------------------------------------------------------

MONTH = isodate.Duration(months=1)
GRACE = timedelta(days=3)


@dataclass
class Life:
    """A monthly subscription by the documented rules, written without ``rules.py``.

    The first payment pays a month from its own time; a later one adds a month
    to the paid end when it comes before the grace is over (anchored to the
    cycle), else starts afresh (and revives an ended subscription: the gateway
    charged). A pause freezes the paid time left (past the paid end: the grace
    left); a resume, asked for or by date, adds it back. A cancellation at period
    end ends at the paid end without grace; a paused or never-paid subscription
    ends at once. Otherwise access ends three days after the paid end. At one
    instant, facts come before what time does.
    """

    paid_end: datetime | None = None
    ever_paid: bool = False
    paused: bool = False
    resume_at: datetime | None = None
    remainder: timedelta = field(default_factory=timedelta)  # negative: paused in the grace
    cancelling: bool = False
    ended: bool = False

    def access_end(self) -> datetime | None:
        if self.ended or self.paused or self.paid_end is None:
            return None
        return self.paid_end if self.cancelling else self.paid_end + GRACE

    def may_enter(self, at: datetime) -> bool:
        end = self.access_end()
        return end is not None and at < end

    def phase(self) -> str:
        if self.ended or self.paused:
            return "ended" if self.ended else "paused"
        return "waiting" if self.paid_end is None else "running"

    def run_timers(self, until: datetime, *, including_until: bool) -> None:
        while (due := self.resume_at if self.paused else self.access_end()) is not None and (
            due < until or (including_until and due == until)
        ):
            if self.paused:
                self.resume(due)
            else:
                self.ended = True

    def pay(self, at: datetime) -> None:
        self.ever_paid = True
        if self.ended:
            self.ended = self.cancelling = self.paused = False
            self.paid_end = at + MONTH
        elif self.paused:
            self.remainder += (at + MONTH) - at
        elif self.paid_end is None:
            self.paid_end = at + MONTH
        else:
            base = self.paid_end if at < self.paid_end + GRACE else at
            self.paid_end = max(self.paid_end, base + MONTH)

    def pause(self, at: datetime, resume_at: datetime | None) -> None:
        if self.ended:
            return
        if not self.paused:
            self.remainder = self.paid_end - at if self.paid_end else timedelta(0)
        self.paused, self.resume_at = True, resume_at  # a later pause names the resume date

    def resume(self, at: datetime) -> None:
        if not self.paused:
            return
        self.paused, self.resume_at = False, None
        if self.ever_paid:  # else it waits for its first payment again
            self.paid_end = at + self.remainder
        self.remainder = timedelta(0)

    def hear(self, fact: SubFact) -> None:
        if fact.kind is Kind.PERIOD:
            self.pay(fact.at)
        elif fact.kind is Kind.PAUSED:
            self.pause(fact.at, fact.resume_at)
        elif fact.kind is Kind.RESUMED:
            self.resume(fact.at)
        elif fact.kind is Kind.CANCELLED and not self.ended:
            if not fact.at_period_end or self.paused or self.paid_end is None:
                self.ended = True
            else:
                self.cancelling = True


def life_of(facts: Iterable[SubFact], at: datetime) -> Life:
    """The model at ``at``: the facts by then in time order, and what time did in between."""
    life = Life()
    for fact in sorted((f for f in facts if f.at <= at), key=lambda f: f.at):
        life.run_timers(fact.at, including_until=False)
        life.hear(fact)
    life.run_timers(at, including_until=True)
    return life


# The statuses each phase of the model may show.
PHASES = {
    "waiting": {Status.PENDING},
    "running": {Status.TRIALING, Status.ACTIVE, Status.PAST_DUE},
    "paused": {Status.PAUSED},
    "ended": ENDED,
}


@st.composite
def simple_cases(draw: st.DrawFn) -> Case:
    # Distinct instants: the oracle leaves the order of facts at one instant open.
    times = sorted(draw(st.lists(moments(120), min_size=1, max_size=14, unique=True)))
    facts = [SubFact("created", Kind.CREATED, times[0])]
    for number, at in enumerate(times[1:]):
        kind = draw(st.sampled_from([Kind.PERIOD, Kind.PERIOD, Kind.PAUSED, Kind.RESUMED, Kind.CANCELLED]))
        facts.append(
            SubFact(
                f"{number}:{kind.value}",
                kind,
                at,
                payment_ref=f"pay-{number}" if kind is Kind.PERIOD else None,
                resume_at=draw(optional(later(at, 1, 40))) if kind is Kind.PAUSED else None,
                at_period_end=draw(st.integers(0, 3)) > 0,
            )
        )
    return Case(tuple(facts), frozenset(f.payment_ref for f in facts if f.payment_ref))


@hypothesis_settings(max_examples=EXAMPLES * 2, deadline=None)
@given(case=simple_cases())
def test_access_and_status_match_the_oracle_in_the_simple_fragment(case: Case) -> None:
    state = case.fold()
    for at in probe_times(state, case.facts):
        life = life_of(case.facts, at)
        assert state.has_access(at) == life.may_enter(at), at
        assert state.status_at(at) in PHASES[life.phase()], (at, life)


# --- the documented examples --------------------------------------------------------------------


def day(month: int, dom: int, year: int = 2027, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(year, month, dom, hour, minute, tzinfo=UTC)


def period(number: int, at: datetime) -> SubFact:
    return SubFact(f"period:{number}", Kind.PERIOD, at, payment_ref=f"p{number}")


def monthly(
    facts: Iterable[SubFact], terms: Terms = MONTHLY, now: datetime | None = None
) -> SubscriptionState:
    listed = list(facts)
    return Case(tuple(listed), frozenset(f.payment_ref for f in listed if f.payment_ref), terms, now).fold()


# docs/subscriptions.md, the worked example: plan monthly (P1M, grace P3D), all at 10:00 UTC.
YEAR = (
    SubFact("created", Kind.CREATED, day(1, 10)),
    period(1, day(1, 10)),
    period(2, day(2, 10)),
    period(3, day(3, 10)),
    period(4, day(4, 10)),
    SubFact("failed", Kind.RENEWAL_FAILED, day(5, 10)),
    period(5, day(5, 12)),
    period(6, day(6, 10)),
    SubFact("paused", Kind.PAUSED, day(6, 25), resume_at=day(7, 25)),
    *(period(number, day(month, 9)) for number, month in enumerate(range(8, 13), start=7)),
    SubFact("cancelled", Kind.CANCELLED, day(12, 20)),
)


def known_by(when: datetime) -> SubscriptionState:
    """The state at ``when``, from the facts known by then."""
    return monthly((f for f in YEAR if f.at <= when), now=when)


def test_the_worked_year() -> None:
    year = monthly(YEAR)
    # 1: subscribes, paid through 02-10, access to 02-13 if nothing else came.
    assert year.status_at(day(1, 10)) is Status.ACTIVE
    assert known_by(day(1, 10)).paid_through == day(2, 10)
    assert known_by(day(1, 10)).has_access(day(2, 13) - SECOND)
    assert not known_by(day(1, 10)).has_access(day(2, 13))
    # 2: renewals paid, each on the day its period ends, never past due.
    for month in (2, 3, 4):
        assert known_by(day(month, 10)).paid_through == day(month + 1, 10)
    assert [status for at, status in year.schedule if at < day(5, 10)] == [Status.ACTIVE]
    # 3: the renewal fails: past due, access through the grace (05-12, before the retry).
    assert year.status_at(day(5, 10)) is Status.PAST_DUE
    assert known_by(day(5, 10)).paid_through == day(5, 10)
    assert year.has_access(day(5, 12, hour=9))
    assert not known_by(day(5, 11)).has_access(day(5, 13))
    # 4, 5: the retry pays the cycle it is late for.
    assert year.status_at(day(5, 12)) is Status.ACTIVE
    assert known_by(day(5, 12)).paid_through == day(6, 10)
    assert known_by(day(6, 10)).paid_through == day(7, 10)
    # 6: paused with 15 days left, no access until 07-25.
    assert year.status_at(day(6, 25)) is Status.PAUSED
    assert not year.has_access(day(6, 25))
    assert not year.has_access(day(7, 1))
    assert not year.has_access(day(7, 25) - SECOND)
    # 7: resumes by date, the 15 days added back.
    assert year.status_at(day(7, 25)) is Status.ACTIVE
    assert year.has_access(day(7, 25))
    assert known_by(day(7, 24)).paused_at == day(6, 25)
    assert known_by(day(7, 25)).paid_through == day(8, 9)
    # 8: renewals on the new cycle.
    assert known_by(day(12, 9)).paid_through == day(1, 9, year=2028)
    # 9: cancelled at period end: active, access to 2028-01-09 and no grace.
    cancelled = known_by(day(12, 20))
    assert cancelled.status_at(day(12, 20)) is Status.ACTIVE
    assert cancelled.cancel_at == day(1, 9, year=2028)
    assert year.has_access(day(1, 9, year=2028) - SECOND)
    # 10: the cancellation takes effect.
    assert year.status_at(day(1, 9, year=2028)) is Status.CANCELLED
    assert known_by(day(1, 10, year=2028)).ended_at == day(1, 9, year=2028)
    assert not year.has_access(day(1, 9, year=2028))
    assert not year.has_access(day(1, 10, year=2028))
    assert [(w.starts_at, w.ends_at) for w in year.windows] == [
        (day(1, 10), day(6, 25)),
        (day(7, 25), day(1, 9, year=2028)),
    ]


T0 = day(3, 1)


def test_a_renewal_paid_exactly_at_the_period_end_never_shows_past_due() -> None:
    state = monthly([period(1, T0), period(2, day(4, 1)), period(3, day(5, 1))])
    assert Status.PAST_DUE not in [status for at, status in state.schedule if at < day(6, 1)]
    assert state.paid_through == day(6, 1)


def test_a_late_renewal_within_the_grace_stays_anchored_to_the_cycle() -> None:
    state = monthly([period(1, T0), period(2, day(4, 3, hour=18))])
    assert state.status_at(day(4, 2)) is Status.PAST_DUE
    assert state.status_at(day(4, 3, hour=18)) is Status.ACTIVE
    assert state.paid_through == day(5, 1)
    assert state.has_access(day(5, 4) - SECOND) and not state.has_access(day(5, 4))


def test_a_renewal_after_the_grace_starts_a_new_cycle() -> None:
    state = monthly([period(1, T0), period(2, day(4, 6))])
    assert state.status_at(day(4, 4)) is Status.EXPIRED
    assert not state.has_access(day(4, 5))
    assert state.status_at(day(4, 6)) is Status.ACTIVE
    assert state.paid_through == day(5, 6)


def test_max_cycles_expire_at_the_paid_end_without_grace() -> None:
    state = monthly([period(1, T0), period(2, day(4, 1))], Terms("P1M", max_cycles=2))
    assert state.status_at(day(5, 1) - SECOND) is Status.ACTIVE
    assert state.status_at(day(5, 1)) is Status.EXPIRED
    assert state.has_access(day(5, 1) - SECOND) and not state.has_access(day(5, 1))


def test_min_term_pushes_a_cancellation_to_its_end() -> None:
    terms = Terms("P1M", min_term="P3M")
    cancel = SubFact("cancel", Kind.CANCELLED, day(3, 11))
    assert monthly([period(1, T0), cancel], terms).cancel_at == day(6, 1)
    state = monthly([period(1, T0), cancel, period(2, day(4, 1)), period(3, day(5, 1))], terms)
    assert state.status_at(day(6, 1) - SECOND) is Status.ACTIVE
    assert state.status_at(day(6, 1)) is Status.CANCELLED
    assert state.has_access(day(6, 1) - SECOND) and not state.has_access(day(6, 1))


def test_a_trial_without_payment_goes_past_due_then_expires() -> None:
    state = monthly([SubFact("created", Kind.CREATED, T0)], Terms("P1M", trial="P14D"))
    assert state.schedule == (
        (T0, Status.TRIALING),
        (day(3, 15), Status.PAST_DUE),
        (day(3, 18), Status.EXPIRED),
    )
    assert state.has_access(day(3, 18) - SECOND) and not state.has_access(day(3, 18))


# --- bugs the properties found, now regressions ------------------------------------------------


def test_paid_snapshot_after_the_end_restarts_the_subscription() -> None:
    """Stripe's late retry succeeds after einlass expired it: it runs again, with timers (was: active forever)."""
    facts = [
        SubFact("a", Kind.SNAPSHOT, T0, status="active", period_end=day(4, 1)),
        SubFact("b", Kind.SNAPSHOT, day(4, 1), status="past_due", period_end=day(4, 1)),
        SubFact("c", Kind.SNAPSHOT, day(4, 11), status="active", period_end=day(5, 11)),
    ]
    state = monthly(facts, now=day(4, 12))
    assert state.status_at(day(4, 4)) is Status.EXPIRED
    assert state.status_at(day(4, 11)) is Status.ACTIVE
    assert state.ended_at is None
    assert state.status_at(day(5, 11)) is Status.PAST_DUE
    assert state.status_at(day(5, 14)) is Status.EXPIRED


def test_resume_of_a_never_paid_subscription_gives_no_access() -> None:
    """Created (waiting for its first payment), paused, resumed: nothing was paid (was: three days)."""
    kinds = (Kind.CREATED, Kind.PAUSED, Kind.RESUMED)
    state = monthly(SubFact(kind.value, kind, day(3, n)) for n, kind in enumerate(kinds, start=1))
    assert state.windows == ()
    assert state.status_at(day(3, 3)) is Status.PENDING
    assert state.status_at(day(4, 1)) is Status.PENDING


def test_pause_in_the_grace_keeps_the_grace_that_is_left() -> None:
    """Paused two days into the grace, resumed an hour later: one day is left (was: a fresh three)."""
    pause, resume = SubFact("z", Kind.PAUSED, day(4, 3)), SubFact("r", Kind.RESUMED, day(4, 3, hour=11))
    state = monthly([period(1, T0), pause, resume])
    assert state.status_at(day(4, 3, hour=11)) is Status.PAST_DUE
    assert state.has_access(day(4, 4, hour=11) - SECOND)
    assert not state.has_access(day(4, 4, hour=11))


def test_bare_paid_snapshot_after_the_end_leaves_it_ended() -> None:
    """An ``active`` snapshot after the end, with no period end ahead, pays for nothing.

    It once cleared ``ended_at`` but opened nothing and set no status: the
    fields said "running", the schedule "expired", and no timer followed.
    """
    trial = SubFact("created", Kind.CREATED, T0, trial_end=day(3, 2))
    state = monthly([trial, SubFact("s", Kind.SNAPSHOT, day(3, 6), status="active")], now=day(3, 6))
    assert state.status_at(day(3, 6)) is Status.EXPIRED
    assert state.ended_at == day(3, 5)


@pytest.mark.parametrize("ended_before", [False, True])
def test_past_due_snapshot_without_paid_time_does_not_stay_past_due_forever(ended_before: bool) -> None:
    """Seen first as ``past_due`` (its payment never reached einlass), or ``past_due`` after it expired.

    It once stayed past due from then on, with no access and no timer (and, after
    the end, with ``ended_at`` set), counting as running in every figure for ever.
    """
    trial = [SubFact("created", Kind.CREATED, T0, trial_end=day(3, 2))] if ended_before else []
    snapshot = SubFact("s", Kind.SNAPSHOT, day(3, 10), status="past_due")
    state = monthly([*trial, snapshot], now=day(6, 1))
    assert not state.has_access(day(3, 10))
    assert state.status_at(day(6, 1)) is not Status.PAST_DUE
