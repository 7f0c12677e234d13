"""The access rule's end of access: ``members.access.access_until`` follows grants that carry on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from einlass.members.access import GrantWindow, access_until

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def grant(starts: int, ends: int | None, *, area: str = "premium", revoked: int | None = None) -> GrantWindow:
    """A grant from ``starts`` to ``ends`` days after NOW (None: no end), revoked ``revoked`` days after."""
    return GrantWindow(
        area_id=area,
        starts_at=NOW + starts * DAY,
        ends_at=NOW + ends * DAY if ends is not None else None,
        revoked_at=NOW + revoked * DAY if revoked is not None else None,
    )


def test_one_grant_ends_at_its_end() -> None:
    assert access_until([grant(-1, 30)], "premium", NOW) == NOW + 30 * DAY


def test_a_grant_that_starts_where_another_ends_carries_the_access_on() -> None:
    """An extension: adjacent grants, in any order, and a chain of them."""
    assert access_until([grant(-1, 30), grant(30, 60)], "premium", NOW) == NOW + 60 * DAY
    assert access_until([grant(60, 90), grant(30, 60), grant(-1, 30)], "premium", NOW) == NOW + 90 * DAY


def test_overlapping_grants_count_as_one_stretch() -> None:
    assert access_until([grant(-1, 30), grant(10, 45), grant(40, 50)], "premium", NOW) == NOW + 50 * DAY
    assert access_until([grant(-1, 30), grant(-5, 20)], "premium", NOW) == NOW + 30 * DAY


def test_a_gap_ends_the_access() -> None:
    later = grant(31, 60)  # a second later than the end would be a gap too
    assert access_until([grant(-1, 30), later], "premium", NOW) == NOW + 30 * DAY


def test_a_grant_without_end_in_the_chain_means_no_end() -> None:
    assert access_until([grant(-1, 30), grant(30, None)], "premium", NOW) is None
    assert access_until([grant(-1, None)], "premium", NOW) is None


def test_revocations_and_other_areas() -> None:
    # A revoked extension carries the access on until its revocation only, one revoked
    # before it starts not at all.
    assert access_until([grant(-1, 30), grant(30, 60, revoked=40)], "premium", NOW) == NOW + 40 * DAY
    assert access_until([grant(-1, 30), grant(30, 60, revoked=20)], "premium", NOW) == NOW + 30 * DAY
    assert access_until([grant(-1, None, revoked=5)], "premium", NOW) == NOW + 5 * DAY
    # Grants of another area do not count.
    assert access_until([grant(-1, 30), grant(30, 60, area="archive")], "premium", NOW) == NOW + 30 * DAY
