"""What the reconciler and its targets share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class EntitledMember:
    """A member who may enter at least one of a target's areas right now."""

    member_id: str
    username: str
    email: str | None
    name: str | None
    # Password hashes by scheme key ("bcrypt:10", "sha512_crypt:5000", "apr1:0").
    push_hashes: dict[str, str]
    # When the last covering grant ends; None: no end.
    until: datetime | None


@dataclass
class Drift:
    """The difference found between what a target holds and what it should hold."""

    unexpected: list[str] = field(default_factory=list)  # there, but must not be (removed)
    missing: list[str] = field(default_factory=list)  # entitled, but not there (added)
    changed: list[str] = field(default_factory=list)  # there with a stale hash (rewritten)
    without_hash: list[str] = field(default_factory=list)  # entitled, but no hash in the target's scheme

    @property
    def any(self) -> bool:
        return bool(self.unexpected or self.missing or self.changed)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "unexpected": self.unexpected,
            "missing": self.missing,
            "changed": self.changed,
            "without_hash": self.without_hash,
        }


class TargetUnreachable(Exception):
    """The target could not be read or written; the reconciler retries with backoff."""


class FileTransport(Protocol):
    """Where an htpasswd file lives: local disk, or a server reached over FTP, FTPS or SFTP."""

    async def read(self) -> bytes | None:
        """The file's content, or None when it does not exist. Raises TargetUnreachable."""

    async def write_atomic(self, content: bytes) -> None:
        """Replace the file in one step (temporary name, then rename). Raises TargetUnreachable."""
