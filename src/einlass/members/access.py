"""The access rule (invariant 1). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class GrantWindow:
    area_id: str
    starts_at: datetime
    ends_at: datetime | None
    revoked_at: datetime | None

    def covers(self, at: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= at:
            return False
        if at < self.starts_at:
            return False
        return self.ends_at is None or at < self.ends_at

    @property
    def effective_end(self) -> datetime | None:
        """Where the window stops covering: its end or its revocation, whichever is first; None: never."""
        if self.revoked_at is None:
            return self.ends_at
        return self.revoked_at if self.ends_at is None else min(self.ends_at, self.revoked_at)


@dataclass(frozen=True)
class MemberStanding:
    locked: bool
    deleted: bool


def may_enter(member: MemberStanding, grants: Iterable[GrantWindow], area_id: str, at: datetime) -> bool:
    """A member may enter an area when not locked or deleted and a grant covers ``at``."""
    if member.locked or member.deleted:
        return False
    return any(grant.area_id == area_id and grant.covers(at) for grant in grants)


def access_until(grants: Iterable[GrantWindow], area_id: str, at: datetime) -> datetime | None:
    """When access to the area ends, given that ``may_enter`` is true; None means never.

    The end of the stretch without a gap: a grant that starts at or before the end
    reached so far (an extension starting where another grant ends, or an overlap)
    carries the access on to its own end.
    """
    windows = [grant for grant in grants if grant.area_id == area_id]
    end = at
    while covering := [grant for grant in windows if grant.covers(end)]:
        ends = [grant.effective_end for grant in covering]
        if any(stop is None for stop in ends):
            return None
        end = max(stop for stop in ends if stop is not None)  # later than ``end``: each covers it
    return end if end != at else None
