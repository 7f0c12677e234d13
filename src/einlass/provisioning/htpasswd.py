"""Reading and writing htpasswd files. Pure: no I/O.

The format: one ``user:hash`` per line. nginx and Apache skip lines that start
with ``#`` and blank lines. Whatever else a file holds (a line without a colon,
bytes that are not UTF-8) is reported, never a crash: the reconciler rewrites
the file anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_COLON = re.compile(r"[\x00-\x1f\x7f:]")
HEADER = "# Managed by einlass. Lines changed here are replaced at the next reconciliation.\n"


@dataclass
class ParsedFile:
    entries: dict[str, str] = field(default_factory=dict)  # username -> hash; the first line wins
    problems: list[str] = field(default_factory=list)  # "line 7: ..." for lines that are no entry
    duplicates: list[str] = field(default_factory=list)  # usernames on more than one line


@dataclass
class Rendered:
    content: bytes
    written: int  # entries in the file
    rejected: list[str] = field(default_factory=list)  # usernames that cannot be written


def username_problem(username: str) -> str | None:
    """Why a username cannot stand in an htpasswd file, or None when it can."""
    if not username:
        return "empty username"
    if ":" in username:
        return "username contains ':'"
    if _CONTROL.search(username):
        return "username contains a newline or control character"
    if username.startswith("#"):
        return "username starts with '#' (read as a comment)"
    if username != username.strip():
        return "username starts or ends with white space"
    return None


def _hash_problem(value: str) -> str | None:
    if not value:
        return "empty hash"
    if _CONTROL_OR_COLON.search(value):
        return "hash contains ':' or a control character"
    return None


def parse(content: bytes | None) -> ParsedFile:
    """Entries of an htpasswd file; comments and blank lines skipped, anything else reported."""
    parsed = ParsedFile()
    if not content:
        return parsed
    for number, raw in enumerate(content.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            parsed.problems.append(f"line {number}: not UTF-8")
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        username, colon, rest = line.partition(":")
        if not colon:
            parsed.problems.append(f"line {number}: no ':' between username and hash")
            continue
        if not username:
            parsed.problems.append(f"line {number}: empty username")
            continue
        # Apache allows a comment field after a second colon: "user:hash:comment".
        hashed = rest.split(":", 1)[0]
        if not hashed:
            parsed.problems.append(f"line {number}: empty hash for {username!r}")
        if username in parsed.entries:
            if username not in parsed.duplicates:
                parsed.duplicates.append(username)
            continue
        parsed.entries[username] = hashed
    return parsed


def render(entries: Mapping[str, str], header: str = HEADER) -> Rendered:
    """The file for these entries: sorted by username, so the same entries give the same bytes."""
    lines = [header] if header else []
    rejected = []
    for username in sorted(entries):
        hashed = entries[username]
        if username_problem(username) or _hash_problem(hashed):
            rejected.append(username)
            continue
        lines.append(f"{username}:{hashed}\n")
    return Rendered(
        content="".join(lines).encode("utf-8"), written=len(entries) - len(rejected), rejected=rejected
    )
