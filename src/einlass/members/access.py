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
    """When access to the area ends, given that ``may_enter`` is true; None means never."""
    covering = [grant for grant in grants if grant.area_id == area_id and grant.covers(at)]
    if any(grant.ends_at is None for grant in covering):
        return None
    return max((grant.ends_at for grant in covering if grant.ends_at is not None), default=None)
