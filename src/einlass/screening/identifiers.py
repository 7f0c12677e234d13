"""Identifiers for screening: normalised, then kept only as keyed digests (invariant 5).

Pure: no I/O. ``normalize`` turns what a customer typed or a gateway sent into
one canonical form per kind, so that spellings of the same identifier meet;
``digest`` is HMAC-SHA256 under a key derived from the instance secret, which
is all the shared blacklist ever stores.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from einlass.errors import InvalidInput


class IdentifierKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    IBAN = "iban"
    CARD_FINGERPRINT = "card_fingerprint"  # as the gateway gives it (Stripe card.fingerprint)
    IP = "ip"
    DEVICE_ID = "device_id"
    NAME_POSTCODE = "name_postcode"  # "name|postcode"


# Mailbox providers that ignore dots in the local part and route "+tag" to the same inbox.
_DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_PLUS_TAG_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "fastmail.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "posteo.de",
        "yahoo.com",
    }
)
_SPACES = re.compile(r"\s+")
MAX_RAW = 500


@dataclass(frozen=True)
class Identifier:
    kind: IdentifierKind
    value: str  # canonical form; never stored in the shared list


def normalize(kind: IdentifierKind | str, raw: str, *, default_region: str = "DE") -> Identifier:
    """The canonical form, or InvalidInput naming what is wrong."""
    kind = IdentifierKind(kind)
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(f"{kind.value} is empty", param=kind.value)
    if len(raw) > MAX_RAW:
        raise InvalidInput(f"{kind.value} is longer than {MAX_RAW} characters", param=kind.value)
    text = raw.strip()
    match kind:
        case IdentifierKind.EMAIL:
            value = _email(text)
        case IdentifierKind.PHONE:
            value = _phone(text, default_region)
        case IdentifierKind.IBAN:
            value = _iban(text)
        case IdentifierKind.IP:
            value = _ip(text)
        case IdentifierKind.NAME_POSTCODE:
            value = _name_postcode(text)
        case IdentifierKind.CARD_FINGERPRINT | IdentifierKind.DEVICE_ID:
            value = _SPACES.sub("", text)
    return Identifier(kind, value)


def _email(text: str) -> str:
    try:
        address = validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise InvalidInput(f"email is not valid: {error}", param="email") from None
    local, _, domain = address.rpartition("@")
    domain = domain.lower()
    if domain == "googlemail.com":
        domain = "gmail.com"
    local = local.lower()
    if domain in _PLUS_TAG_DOMAINS:
        local = local.split("+", 1)[0]
    if domain in _DOTLESS_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def _phone(text: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as error:
        raise InvalidInput(f"phone is not a phone number: {error}", param="phone") from None
    # Validity per the numbering plan: a fragment such as "12" is "possible" but names nobody.
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("phone is not a valid phone number", param="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _iban(text: str) -> str:
    try:
        return str(IBAN(text).compact)
    except SchwiftyException as error:
        raise InvalidInput(f"iban is not valid: {error}", param="iban") from None


def _ip(text: str) -> str:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise InvalidInput("ip is not an IPv4 or IPv6 address", param="ip") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def _fold_text(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    plain = plain.replace("ß", "ss")
    return _SPACES.sub(" ", re.sub(r"[^\w\s]", " ", plain)).strip()


def _name_postcode(text: str) -> str:
    name, separator, postcode = text.rpartition("|")
    if not separator or not name.strip() or not postcode.strip():
        raise InvalidInput(
            'name_postcode must be "name|postcode", e.g. "Anna Muster|10115"', param="name_postcode"
        )
    return f"{_fold_text(name)}|{_SPACES.sub('', postcode).upper()}"


def blacklist_key(secret_key: str) -> bytes:
    """A key of its own for the digests, derived from the instance secret."""
    return hmac.new(secret_key.encode(), b"einlass screening digests v1", hashlib.sha256).digest()


def digest(key: bytes, identifier: Identifier) -> str:
    message = f"{identifier.kind.value}:{identifier.value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
