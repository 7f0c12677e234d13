"""The ledger rule (billing/ledger.py): a payment's state is a pure fold of its facts.

Unit tests of every status, of credits, refunds and chargebacks, of ``opens_access``
under both partial-refund policies, and Hypothesis properties: the fold does not
depend on the order of the facts nor on how often one fact is delivered (invariant 2).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from einlass.billing.gateways.base import FactKind
from einlass.billing.ledger import Fact, PaymentState, PaymentStatus, fold

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AMOUNT = 990

_keys = itertools.count(1)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fact(kind: FactKind, amount: int | None = None, *, key: str | None = None, minute: int = 0) -> Fact:
    return Fact(key=key or f"{kind.value}:{next(_keys)}", kind=kind, amount=amount, occurred_at=at(minute))


def confirmed(amount: int | None = AMOUNT, minute: int = 0) -> Fact:
    return fact(FactKind.CONFIRMED, amount, key="payment", minute=minute)


def refund(amount: int, key: str, minute: int = 10) -> Fact:
    return fact(FactKind.REFUND, amount, key=f"refund:{key}", minute=minute)


def chargeback(key: str, minute: int = 20) -> Fact:
    return fact(FactKind.CHARGEBACK, AMOUNT, key=f"chargeback:{key}", minute=minute)


def reversal(key: str, minute: int = 30) -> Fact:
    return fact(FactKind.CHARGEBACK_REVERSED, AMOUNT, key=f"chargeback_reversed:{key}", minute=minute)


def credit(amount: int, key: str, minute: int) -> Fact:
    return fact(FactKind.CREDIT, amount, key=f"credit:{key}", minute=minute)


# --- statuses -----------------------------------------------------------------------------------


def test_no_facts_is_pending_with_the_order_amount():
    state = fold([], default_amount=AMOUNT)
    assert state == PaymentState(
        status=PaymentStatus.PENDING,
        was_paid=False,
        amount=AMOUNT,
        amount_paid=0,
        amount_refunded=0,
        charged_back=False,
        confirmed_at=None,
    )
    assert not state.is_paid


def test_pending():
    state = fold([fact(FactKind.PENDING, AMOUNT)], default_amount=0)
    assert state.status is PaymentStatus.PENDING
    assert (state.amount, state.amount_paid, state.confirmed_at) == (AMOUNT, 0, None)


def test_on_hold():
    state = fold([fact(FactKind.ON_HOLD, AMOUNT)], default_amount=0)
    assert state.status is PaymentStatus.ON_HOLD
    assert (state.amount_paid, state.confirmed_at, state.is_paid) == (0, None, False)


def test_on_hold_outranks_pending_whatever_the_order():
    early_hold = [fact(FactKind.ON_HOLD, AMOUNT, minute=0), fact(FactKind.PENDING, AMOUNT, minute=5)]
    late_hold = [fact(FactKind.PENDING, AMOUNT, minute=0), fact(FactKind.ON_HOLD, AMOUNT, minute=5)]
    assert fold(early_hold, 0).status is PaymentStatus.ON_HOLD
    assert fold(late_hold, 0).status is PaymentStatus.ON_HOLD


def test_confirmed():
    state = fold([confirmed(minute=3)], default_amount=0)
    assert state == PaymentState(
        status=PaymentStatus.CONFIRMED,
        was_paid=True,
        amount=AMOUNT,
        amount_paid=AMOUNT,
        amount_refunded=0,
        charged_back=False,
        confirmed_at=at(3),
    )
    assert state.is_paid


@pytest.mark.parametrize("earlier", [FactKind.PENDING, FactKind.ON_HOLD])
def test_confirmed_outranks_an_earlier_or_later_pending_or_on_hold(earlier):
    before = fold([fact(earlier, AMOUNT, minute=0), confirmed(minute=5)], 0)
    after = fold([confirmed(minute=0), fact(earlier, AMOUNT, minute=5)], 0)
    assert before.status is after.status is PaymentStatus.CONFIRMED
    assert before.confirmed_at == at(5)
    assert after.confirmed_at == at(0)


def test_confirmed_at_is_the_earliest_confirmation():
    state = fold(
        [
            fact(FactKind.CONFIRMED, AMOUNT, key="capture", minute=7),
            fact(FactKind.CONFIRMED, AMOUNT, key="update", minute=2),
        ],
        0,
    )
    assert state.confirmed_at == at(2)


def test_failed():
    state = fold([fact(FactKind.FAILED, AMOUNT)], default_amount=0)
    assert state.status is PaymentStatus.FAILED
    assert (state.amount_paid, state.is_paid, state.confirmed_at) == (0, False, None)


def test_failed_without_amount_keeps_the_order_amount():
    assert fold([fact(FactKind.FAILED)], default_amount=AMOUNT).amount == AMOUNT


def test_cancelled():
    state = fold([fact(FactKind.ON_HOLD, AMOUNT), fact(FactKind.CANCELLED, minute=5)], 0)
    assert state.status is PaymentStatus.CANCELLED
    assert not state.is_paid


def test_cancelled_wins_over_failed():
    state = fold([fact(FactKind.FAILED, minute=0), fact(FactKind.CANCELLED, minute=1)], AMOUNT)
    assert state.status is PaymentStatus.CANCELLED


@pytest.mark.parametrize("void", [FactKind.FAILED, FactKind.CANCELLED])
def test_a_confirmation_wins_over_a_void_in_any_order(void):
    for void_minute in (0, 10):
        state = fold([confirmed(minute=5), fact(void, minute=void_minute)], 0)
        assert state.status is PaymentStatus.CONFIRMED


def test_partially_refunded():
    state = fold([confirmed(), refund(300, "a")], 0)
    assert state.status is PaymentStatus.PARTIALLY_REFUNDED
    assert (state.amount_paid, state.amount_refunded) == (AMOUNT, 300)
    assert state.is_paid
    assert state.confirmed_at == at(0)


def test_refunded():
    state = fold([confirmed(), refund(AMOUNT, "a")], 0)
    assert state.status is PaymentStatus.REFUNDED
    assert state.amount_refunded == AMOUNT
    assert not state.is_paid


def test_refunded_in_parts():
    facts = [confirmed(), refund(300, "a"), refund(300, "b", minute=11)]
    assert fold(facts, 0).status is PaymentStatus.PARTIALLY_REFUNDED
    state = fold([*facts, refund(390, "c", minute=12)], 0)
    assert state.status is PaymentStatus.REFUNDED
    assert state.amount_refunded == AMOUNT


def test_refunds_beyond_the_amount_are_counted_and_still_refunded():
    state = fold([confirmed(), refund(700, "a"), refund(700, "b")], 0)
    assert state.status is PaymentStatus.REFUNDED
    assert state.amount_refunded == 1400


def test_charged_back():
    state = fold([confirmed(), chargeback("x")], 0)
    assert state.status is PaymentStatus.CHARGED_BACK
    assert state.charged_back
    assert not state.is_paid


def test_chargeback_outranks_refunds():
    assert fold([confirmed(), refund(AMOUNT, "a"), chargeback("x")], 0).status is PaymentStatus.CHARGED_BACK
    assert fold([confirmed(), refund(100, "a"), chargeback("x")], 0).status is PaymentStatus.CHARGED_BACK


def test_a_chargeback_of_an_unpaid_payment_is_charged_back():
    state = fold([fact(FactKind.PENDING, AMOUNT), chargeback("x")], 0)
    assert state.status is PaymentStatus.CHARGED_BACK
    assert state.confirmed_at is None


def test_refunds_of_an_unpaid_payment_leave_it_unpaid():
    state = fold([fact(FactKind.PENDING, AMOUNT), refund(AMOUNT, "a")], 0)
    assert state.status is PaymentStatus.PENDING
    assert state.amount_refunded == AMOUNT


def test_refunds_of_a_failed_payment_leave_it_failed():
    assert fold([fact(FactKind.FAILED, AMOUNT), refund(100, "a")], 0).status is PaymentStatus.FAILED


def test_a_zero_amount_payment_is_confirmed():
    state = fold([confirmed(amount=0)], default_amount=0)
    assert state.status is PaymentStatus.CONFIRMED
    assert state.amount_paid == 0


# --- amounts ------------------------------------------------------------------------------------


def test_the_earliest_opening_fact_names_the_amount():
    facts = [
        fact(FactKind.PENDING, 500, minute=0),
        fact(FactKind.CONFIRMED, 700, minute=5),
    ]
    assert fold(facts, default_amount=AMOUNT).amount == 500


def test_an_opening_fact_without_amount_keeps_the_default():
    assert fold([confirmed(amount=None)], default_amount=AMOUNT).amount == AMOUNT
    assert fold([confirmed(amount=None)], default_amount=AMOUNT).amount_paid == AMOUNT


def test_the_latest_amount_change_wins():
    facts = [
        confirmed(minute=0),
        fact(FactKind.AMOUNT_CHANGED, 1200, minute=20),
        fact(FactKind.AMOUNT_CHANGED, 800, minute=10),
        fact(FactKind.AMOUNT_CHANGED, None, minute=30),  # names no amount: ignored
    ]
    state = fold(facts, default_amount=0)
    assert state.amount == 1200
    assert state.amount_paid == 1200


def test_an_amount_change_moves_the_refund_threshold():
    facts = [confirmed(), refund(AMOUNT, "a"), fact(FactKind.AMOUNT_CHANGED, 1200, minute=20)]
    assert fold(facts, 0).status is PaymentStatus.PARTIALLY_REFUNDED


# --- invoice and prepayment credits -------------------------------------------------------------


def test_invoice_credits_in_parts_confirm_once_they_reach_the_amount():
    pending = fact(FactKind.PENDING, AMOUNT, key="payment", minute=0)
    first = credit(300, "1", minute=10)
    second = credit(300, "2", minute=20)
    third = credit(390, "3", minute=30)

    state = fold([pending, first], 0)
    assert (state.status, state.amount_paid, state.confirmed_at) == (PaymentStatus.PENDING, 300, None)
    state = fold([pending, first, second], 0)
    assert (state.status, state.amount_paid, state.confirmed_at) == (PaymentStatus.PENDING, 600, None)

    state = fold([pending, first, second, third], 0)
    assert state.status is PaymentStatus.CONFIRMED
    assert state.amount_paid == AMOUNT
    assert state.confirmed_at == at(30)
    assert state.opens_access(partial_refund_keeps_access=False)


def test_credits_count_against_the_order_amount_without_an_opening_amount():
    state = fold([credit(500, "1", minute=1), credit(490, "2", minute=2)], default_amount=AMOUNT)
    assert state.status is PaymentStatus.CONFIRMED
    assert state.confirmed_at == at(2)


def test_overpaid_credits_count_in_full():
    state = fold([fact(FactKind.PENDING, AMOUNT), credit(600, "1", 1), credit(600, "2", 2)], 0)
    assert state.status is PaymentStatus.CONFIRMED
    assert state.amount_paid == 1200


def test_the_same_credit_delivered_twice_counts_once():
    state = fold([fact(FactKind.PENDING, AMOUNT), credit(500, "1", 1), credit(500, "1", 1)], 0)
    assert state.status is PaymentStatus.PENDING
    assert state.amount_paid == 500


def test_credits_never_confirm_a_payment_of_no_amount():
    state = fold([credit(100, "1", 1)], default_amount=0)
    assert state.status is PaymentStatus.PENDING
    assert state.amount_paid == 100


def test_credits_beat_a_failed_fact():
    # A failed fact names no amount of its own: the order's counts.
    state = fold([fact(FactKind.FAILED, 5000, minute=0), credit(AMOUNT, "1", 5)], default_amount=AMOUNT)
    assert state.status is PaymentStatus.CONFIRMED
    assert state.amount == AMOUNT


def test_a_confirmed_payment_with_credits_keeps_its_confirmation_time():
    state = fold([confirmed(minute=0), credit(AMOUNT, "1", minute=9)], 0)
    assert state.confirmed_at == at(0)
    assert state.amount_paid == AMOUNT


def test_an_invoice_is_confirmed_when_its_credits_first_cover_it():
    facts = [
        fact(FactKind.PENDING, AMOUNT, minute=0),
        credit(500, "1", minute=10),
        credit(490, "2", minute=20),  # covered here
        credit(100, "3", minute=90),  # an overpayment, later
    ]
    assert fold(facts, 0).confirmed_at == at(20)


# --- refund totals ------------------------------------------------------------------------------


def test_single_refunds_add_up():
    state = fold([confirmed(), refund(100, "a"), refund(200, "b"), refund(50, "c")], 0)
    assert state.amount_refunded == 350


def test_the_same_refund_twice_counts_once():
    state = fold([confirmed(), refund(100, "a"), refund(100, "a"), refund(200, "b")], 0)
    assert state.amount_refunded == 300


def test_refund_totals_take_the_highest_not_the_sum():
    totals = [
        fact(FactKind.REFUND_TOTAL, 100, key="total:1", minute=10),
        fact(FactKind.REFUND_TOTAL, 300, key="total:2", minute=20),
        fact(FactKind.REFUND_TOTAL, 250, key="total:3", minute=30),  # stale, delivered late
    ]
    state = fold([confirmed(), *totals], 0)
    assert state.amount_refunded == 300
    assert state.status is PaymentStatus.PARTIALLY_REFUNDED


def test_a_refund_total_of_the_amount_is_refunded():
    total = fact(FactKind.REFUND_TOTAL, AMOUNT, key="total:9", minute=10)
    assert fold([confirmed(), total], 0).status is PaymentStatus.REFUNDED


@pytest.mark.parametrize(
    ("singles", "totals", "expected"),
    [
        ([100, 200], [250], 300),  # the singles know more
        ([100], [250], 250),  # the cumulative total knows more
        ([100, 150], [250], 250),  # both describe the same refunds
        ([], [0], 0),
        ([0], [], 0),
    ],
)
def test_refund_singles_and_totals_combine_by_maximum(singles, totals, expected):
    facts = [confirmed()]
    facts += [refund(amount, f"s{i}") for i, amount in enumerate(singles)]
    facts += [fact(FactKind.REFUND_TOTAL, amount, key=f"t{i}") for i, amount in enumerate(totals)]
    assert fold(facts, 0).amount_refunded == expected


def test_a_refund_without_amount_counts_zero():
    state = fold([confirmed(), fact(FactKind.REFUND, None, key="refund:x")], 0)
    assert state.amount_refunded == 0
    assert state.status is PaymentStatus.CONFIRMED


# --- chargebacks and their reversal -------------------------------------------------------------


def test_a_reversed_chargeback_restores_the_payment():
    state = fold([confirmed(), chargeback("x"), reversal("x")], 0)
    assert not state.charged_back
    assert state.status is PaymentStatus.CONFIRMED


def test_a_reversed_chargeback_restores_a_partial_refund():
    state = fold([confirmed(), refund(100, "a"), chargeback("x"), reversal("x")], 0)
    assert state.status is PaymentStatus.PARTIALLY_REFUNDED


def test_a_reversal_delivered_before_its_chargeback():
    state = fold([confirmed(), reversal("x", minute=1), chargeback("x", minute=2)], 0)
    assert not state.charged_back
    assert state.status is PaymentStatus.CONFIRMED


def test_a_reversal_alone_changes_nothing():
    state = fold([confirmed(), reversal("x")], 0)
    assert not state.charged_back
    assert state.status is PaymentStatus.CONFIRMED


@pytest.mark.parametrize(
    ("chargebacks", "reversals", "charged_back"),
    [(1, 0, True), (1, 1, False), (2, 1, True), (2, 2, False), (3, 1, True), (1, 2, False), (0, 1, False)],
)
def test_chargebacks_and_reversals_are_counted(chargebacks, reversals, charged_back):
    facts = [confirmed()]
    facts += [chargeback(f"c{i}") for i in range(chargebacks)]
    facts += [reversal(f"r{i}") for i in range(reversals)]
    state = fold(facts, 0)
    assert state.charged_back is charged_back
    assert (state.status is PaymentStatus.CHARGED_BACK) is charged_back


def test_a_chargeback_delivered_twice_counts_once():
    state = fold([confirmed(), chargeback("x"), chargeback("x"), reversal("x")], 0)
    assert not state.charged_back


@pytest.mark.parametrize(
    "later",
    [[], [("refund", AMOUNT)], [("chargeback", 0)], [("refund", 10)]],
)
def test_was_paid_stays_true_whatever_follows(later):
    facts = [confirmed()]
    for kind, amount in later:
        facts.append(fact(FactKind.REFUND, amount, key="r") if kind == "refund" else chargeback("c"))
    assert fold(facts, 0).was_paid
    assert not fold([fact(FactKind.PENDING, AMOUNT), chargeback("c")], 0).was_paid


def test_a_reversal_delivered_twice_counts_once():
    state = fold([confirmed(), chargeback("x"), chargeback("y"), reversal("x"), reversal("x")], 0)
    assert state.charged_back


# --- access -------------------------------------------------------------------------------------


def _state(status: PaymentStatus) -> PaymentState:
    return PaymentState(
        status=status,
        was_paid=False,
        amount=AMOUNT,
        amount_paid=0,
        amount_refunded=0,
        charged_back=False,
        confirmed_at=None,
    )


# status -> (opens access when a partial refund keeps access, ... when it revokes access)
ACCESS_TABLE = {
    PaymentStatus.PENDING: (False, False),
    PaymentStatus.ON_HOLD: (False, False),
    PaymentStatus.CONFIRMED: (True, True),
    PaymentStatus.PARTIALLY_REFUNDED: (True, False),
    PaymentStatus.REFUNDED: (False, False),
    PaymentStatus.CHARGED_BACK: (False, False),
    PaymentStatus.FAILED: (False, False),
    PaymentStatus.CANCELLED: (False, False),
}


def test_the_access_table_covers_every_status():
    assert set(ACCESS_TABLE) == set(PaymentStatus)


@pytest.mark.parametrize(("status", "expected"), ACCESS_TABLE.items())
def test_opens_access_under_both_partial_refund_policies(status, expected):
    keep, revoke = expected
    state = _state(status)
    assert state.opens_access(partial_refund_keeps_access=True) is keep
    assert state.opens_access(partial_refund_keeps_access=False) is revoke


@pytest.mark.parametrize("status", list(PaymentStatus))
def test_is_paid(status):
    paid = {PaymentStatus.CONFIRMED, PaymentStatus.PARTIALLY_REFUNDED}
    assert _state(status).is_paid is (status in paid)


def test_folded_access_follows_the_life_of_a_payment():
    steps: list[Fact] = [confirmed()]
    assert fold(steps, 0).opens_access(False)
    steps.append(refund(100, "a"))
    assert fold(steps, 0).opens_access(True)
    assert not fold(steps, 0).opens_access(False)
    steps.append(chargeback("x"))
    assert not fold(steps, 0).opens_access(True)
    steps.append(reversal("x"))
    assert fold(steps, 0).opens_access(True)
    steps.append(refund(AMOUNT - 100, "b"))
    assert not fold(steps, 0).opens_access(True)


# --- properties ---------------------------------------------------------------------------------

KINDS = list(FactKind)


@st.composite
def fact_lists(draw: st.DrawFn) -> list[Fact]:
    """Facts of one payment with distinct keys; few distinct times, so ties happen."""
    count = draw(st.integers(min_value=0, max_value=12))
    facts = []
    for index in range(count):
        kind = draw(st.sampled_from(KINDS))
        amount = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=3000)))
        minute = draw(st.integers(min_value=0, max_value=4))
        key = draw(st.sampled_from([f"{kind.value}:{index}", f"k{index}", f"z{index}"]))
        facts.append(Fact(key=key, kind=kind, amount=amount, occurred_at=at(minute)))
    return facts


@st.composite
def reorderings(draw: st.DrawFn, facts: list[Fact]) -> list[Fact]:
    """A permutation of ``facts`` with some of them delivered again at random places."""
    shuffled = list(draw(st.permutations(facts)))
    if facts:
        repeats = draw(
            st.lists(
                st.tuples(st.sampled_from(facts), st.integers(min_value=0, max_value=len(facts) * 2)),
                max_size=6,
            )
        )
        for repeated, position in repeats:
            shuffled.insert(min(position, len(shuffled)), repeated)
    return shuffled


@st.composite
def facts_and_reordering(draw: st.DrawFn) -> tuple[list[Fact], list[Fact]]:
    facts = draw(fact_lists())
    return facts, draw(reorderings(facts))


default_amounts = st.sampled_from([0, 1, AMOUNT, 4900])


@hypothesis_settings(max_examples=200)
@given(pair=facts_and_reordering(), default_amount=default_amounts)
def test_fold_is_invariant_under_permutation_and_duplication(pair, default_amount):
    facts, reordered = pair
    assert fold(reordered, default_amount) == fold(facts, default_amount)


@hypothesis_settings(max_examples=100)
@given(facts=fact_lists(), default_amount=default_amounts)
def test_fold_accepts_any_iterable_once(facts, default_amount):
    assert fold(iter(facts), default_amount) == fold(tuple(facts), default_amount)


@hypothesis_settings(max_examples=200)
@given(facts=fact_lists(), default_amount=default_amounts)
def test_folded_state_is_consistent(facts, default_amount):
    state = fold(facts, default_amount)
    assert state.amount_refunded >= 0
    assert state.amount_paid >= 0
    assert state.charged_back is (state.status is PaymentStatus.CHARGED_BACK)
    if state.is_paid:
        assert state.confirmed_at is not None
        assert state.amount_paid >= state.amount
    if state.status in (PaymentStatus.PENDING, PaymentStatus.ON_HOLD):
        assert state.confirmed_at is None
    if state.status is PaymentStatus.PARTIALLY_REFUNDED:
        assert state.amount_refunded > 0
        assert state.amount == 0 or state.amount_refunded < state.amount
    if state.status is PaymentStatus.REFUNDED:
        assert state.amount_refunded >= state.amount > 0
    # The stricter policy never opens what the lenient one keeps closed.
    if state.opens_access(partial_refund_keeps_access=False):
        assert state.opens_access(partial_refund_keeps_access=True)
    if state.opens_access(partial_refund_keeps_access=True):
        assert state.is_paid


@hypothesis_settings(max_examples=100)
@given(facts=fact_lists(), extra=st.integers(min_value=1, max_value=3000))
def test_another_refund_never_raises_access(facts, extra):
    """More money back never turns a closed payment into an open one."""
    before = fold(facts, AMOUNT)
    after = fold([*facts, Fact("refund:extra", FactKind.REFUND, extra, at(2))], AMOUNT)
    assert after.amount_refunded >= before.amount_refunded
    for keeps in (True, False):
        if not before.opens_access(keeps):
            assert not after.opens_access(keeps)
