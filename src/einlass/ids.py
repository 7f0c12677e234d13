"""Resource ids with a type prefix, sortable by creation time (like ULIDs).

``mem_01J...``: 48 bits of milliseconds and 80 random bits, Crockford base32,
so ordering by id is ordering by creation, which makes cursor pagination a
plain ``WHERE id < :cursor``.
"""

from __future__ import annotations

import secrets

from einlass import clock

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    millis = int(clock.now().timestamp() * 1000)
    randomness = secrets.randbits(80)
    return f"{prefix}_{_base32(millis, 10)}{_base32(randomness, 16)}"
