"""Resource ids with a type prefix, sortable by creation time (like monotonic ULIDs).

``mem_01J...``: 48 bits of milliseconds and 80 random bits, Crockford base32,
so ordering by id is ordering by creation, which makes cursor pagination a
plain ``WHERE id < :cursor``. Within one millisecond (or when the clock stands
still, as in tests) a process counts the random part up, so its ids stay in
creation order.
"""

from __future__ import annotations

import secrets
import threading

from einlass import clock

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    global _last
    millis = int(clock.now().timestamp() * 1000)
    with _lock:
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, randomness = last_millis, last_random + 1
            if randomness >= 1 << _RANDOM_BITS:
                millis, randomness = millis + 1, secrets.randbits(_RANDOM_BITS - 1)
        else:
            # Half the range leaves room to count up within the millisecond.
            randomness = secrets.randbits(_RANDOM_BITS - 1)
        _last = (millis, randomness)
    return f"{prefix}_{_base32(millis, 10)}{_base32(randomness, 16)}"
