"""Standard Webhooks signing and verification (https://www.standardwebhooks.com/).

Used for einlass's own incoming "generic" gateway and for the webhooks einlass
sends. The scheme, symmetric version ``v1``:

* The secret is ``whsec_`` followed by the base64 of a random key; the HMAC key
  is the decoded part. A secret without the prefix is accepted too.
* Three headers travel with the request: ``webhook-id`` (unique per message,
  stable across retries), ``webhook-timestamp`` (integer Unix seconds of this
  attempt) and ``webhook-signature``.
* The signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}`` and the
  signature is ``v1,`` followed by the base64 of its HMAC-SHA256.
* ``webhook-signature`` is a space-separated list of signatures (several during
  a secret rotation); one matching ``v1`` signature is enough. Other versions,
  such as the asymmetric ``v1a``, are skipped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from einlass.billing.gateways.base import InvalidSignature, constant_time_equals

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

_SECRET_BYTES = 24
_TIMESTAMP = re.compile(r"[0-9]+", re.ASCII)
# More digits than this is tens of thousands of centuries away; no need to convert it.
_MAX_TIMESTAMP_DIGITS = 15


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` and the base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key behind ``secret``; raise ValueError if it is not a usable secret.

    Call this when a merchant saves a secret, to reject a typo at once rather than
    on the first delivery.
    """
    encoded = secret.strip()
    encoded = encoded.removeprefix(SECRET_PREFIX)
    if not encoded:
        raise ValueError("the signing secret is empty")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            'the signing secret must be "whsec_" followed by base64 (or the base64 part alone)'
        ) from None
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value, ``v1,<base64>``, for one message.

    Raise ValueError for an unusable secret, a message id that is empty, not
    ASCII or contains a ``.`` (the dot separates the signed parts), or a negative
    timestamp.
    """
    if not msg_id or "." in msg_id or not msg_id.isascii():
        raise ValueError("msg_id must be non-empty ASCII without '.'")
    if timestamp < 0:
        raise ValueError("timestamp must be Unix seconds, not negative")
    return f"{SIGNATURE_VERSION},{_signature(decode_secret(secret), msg_id, str(timestamp), body)}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise InvalidSignature unless ``body`` and ``headers`` carry a valid, fresh signature.

    Header names are matched case-insensitively. ``now`` should be timezone-aware;
    a naive datetime is taken as UTC. A timestamp more than ``tolerance_s`` seconds
    before or after ``now`` is refused, which bounds replays.
    """
    msg_id = get_header(headers, HEADER_ID)
    if not msg_id:
        raise InvalidSignature(f"missing {HEADER_ID} header")
    if not msg_id.isascii():
        raise InvalidSignature(f"{HEADER_ID} must contain only ASCII characters")
    raw_timestamp = get_header(headers, HEADER_TIMESTAMP)
    if not raw_timestamp:
        raise InvalidSignature(f"missing {HEADER_TIMESTAMP} header")
    raw_signatures = get_header(headers, HEADER_SIGNATURE)
    if not raw_signatures or not raw_signatures.strip():
        raise InvalidSignature(f"missing {HEADER_SIGNATURE} header")

    raw_timestamp = raw_timestamp.strip()
    if not _TIMESTAMP.fullmatch(raw_timestamp):
        raise InvalidSignature(
            f"{HEADER_TIMESTAMP} must be an integer Unix timestamp in seconds, got {_shorten(raw_timestamp)}"
        )
    current = _unix_seconds(now)
    if len(raw_timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise InvalidSignature(f"{HEADER_TIMESTAMP} is too far in the future (tolerance is {tolerance_s} s)")
    timestamp = int(raw_timestamp)
    if timestamp < current - tolerance_s:
        raise InvalidSignature(
            f"{HEADER_TIMESTAMP} is too old: {current - timestamp} s before the current time "
            f"(tolerance is {tolerance_s} s); check the sender's clock or resend the message"
        )
    if timestamp > current + tolerance_s:
        raise InvalidSignature(
            f"{HEADER_TIMESTAMP} is too far in the future: {timestamp - current} s after the "
            f"current time (tolerance is {tolerance_s} s); check the sender's clock"
        )

    try:
        key = decode_secret(secret)
    except ValueError as error:
        raise InvalidSignature(f"cannot check the signature: {error}") from None

    candidates = []
    for entry in raw_signatures.split():
        version, _, value = entry.partition(",")
        if version == SIGNATURE_VERSION and value:
            candidates.append(value)
    if not candidates:
        raise InvalidSignature(f'{HEADER_SIGNATURE} contains no "{SIGNATURE_VERSION},<base64>" signature')

    expected = _signature(key, msg_id, raw_timestamp, body)
    # Compare against every candidate, without stopping early, in constant time each.
    matched = False
    for candidate in candidates:
        # A base64 signature is ASCII; anything else cannot match.
        matched |= candidate.isascii() and constant_time_equals(expected, candidate)
    if not matched:
        raise InvalidSignature(
            f"no {SIGNATURE_VERSION} signature in {HEADER_SIGNATURE} matches: "
            "wrong signing secret, or the body, webhook-id or webhook-timestamp changed after signing"
        )


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (lower case), whatever the case of the keys in ``headers``."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")


def _unix_seconds(now: datetime) -> int:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return math.floor(now.timestamp())


def _shorten(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
