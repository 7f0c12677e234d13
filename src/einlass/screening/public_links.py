"""The emailed link that proves control of an address, and sending it.

A ``LinkToken`` is a Fernet token under a key derived from the instance
secret: signed (HMAC-SHA256 over the content and the issue time), expiring
after ``LINK_LIFETIME``, and encrypted, so the link shows neither the report
ids nor the digest it carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from einlass import clock
from einlass.config import Settings
from einlass.errors import EinlassError
from einlass.notify.email import EmailDeliveryError, OutgoingEmail, send_email
from einlass.screening.identifiers import Identifier

log = structlog.get_logger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
LANGUAGES = ("en", "de")
LINK_LIFETIME = timedelta(hours=24)
CSRF_LIFETIME = timedelta(hours=12)
PURPOSE_REPORT, PURPOSE_WITHDRAW, PURPOSE_APPEAL = "report", "withdraw", "appeal"
PURPOSES = (PURPOSE_REPORT, PURPOSE_WITHDRAW, PURPOSE_APPEAL)


class LinkInvalid(EinlassError):
    """The link is expired, altered or not one of ours; nothing was changed."""

    code = "link_invalid"


@lru_cache(maxsize=1)
def messages() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads((TEMPLATE_DIR / "messages.json").read_text("utf-8"))
    return loaded


def text(lang: str, key: str, **values: object) -> str:
    message = messages()[key][lang if lang in LANGUAGES else "en"]
    return message.format(**values) if values else message


# --------------------------------------------------------------------------- the link


def _fernet(secret_key: str) -> Fernet:
    key = hmac.new(secret_key.encode(), b"einlass/public-report-links", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


@dataclass(frozen=True)
class LinkToken:
    purpose: str
    contact_digest: str
    lang: str
    report_ids: tuple[str, ...] = ()
    email_report_id: str | None = None
    statement: str | None = None

    def seal(self, secret_key: str) -> str:
        payload = {
            "p": self.purpose,
            "c": self.contact_digest,
            "l": self.lang,
            "r": list(self.report_ids),
            "e": self.email_report_id,
            "s": self.statement,
        }
        # Fernet signs the issue time with the payload; ``open_link`` enforces the lifetime.
        data = json.dumps(payload, separators=(",", ":")).encode()
        return _fernet(secret_key).encrypt_at_time(data, int(clock.now().timestamp())).decode()


def open_link(secret_key: str, token: str | None) -> LinkToken:
    """The link's content while it is ours, unaltered and younger than ``LINK_LIFETIME``."""
    if not token or len(token) > 8000:
        raise LinkInvalid("This link is not valid.")
    try:
        data = _fernet(secret_key).decrypt_at_time(
            token.encode("ascii", "replace"),
            int(LINK_LIFETIME.total_seconds()),
            int(clock.now().timestamp()),
        )
        payload = json.loads(data)
    except (InvalidToken, ValueError):
        raise LinkInvalid("This link is not valid or has expired.") from None
    if payload.get("p") not in PURPOSES:
        raise LinkInvalid("This link is not valid.")
    return LinkToken(
        purpose=payload["p"],
        contact_digest=payload["c"],
        lang=payload["l"] if payload.get("l") in LANGUAGES else "en",
        report_ids=tuple(payload.get("r") or ()),
        email_report_id=payload.get("e"),
        statement=payload.get("s"),
    )


# --------------------------------------------------------------------------- the email


@lru_cache(maxsize=1)
def _mail_templates() -> Environment:
    # Plain text only; nothing is HTML-escaped.
    return Environment(  # noqa: S701
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def link_email(settings: Settings, to: Identifier, link: LinkToken, raw_address: str) -> OutgoingEmail:
    """The email with the link, in the language the person used."""
    lang = link.lang
    url = f"{settings.base_url.rstrip('/')}/report/confirm?token={link.seal(settings.secret_key)}"
    body = (
        _mail_templates()
        .get_template(f"report_link.{lang}.txt")
        .render(purpose=link.purpose, url=url, hours=int(LINK_LIFETIME.total_seconds() // 3600))
    )
    # To the address as typed (a gmail "+tag" still reaches the same inbox), folded to one line.
    address = " ".join(raw_address.split()) or to.value
    return OutgoingEmail(to=address, subject=text(lang, f"mail_subject_{link.purpose}"), text=body)


async def send_link_email(settings: Settings, email: OutgoingEmail) -> bool:
    """Send it (through ``settings.smtp_url`` or into ``settings.mail_dir``); False when it failed.

    The address is a screening identifier (invariant 5): it is neither logged
    nor named in the error. A failure is logged and not shown, so the answer
    stays the same.
    """
    try:
        message_id = await send_email(settings, email, name_recipient=False)
    except (EmailDeliveryError, OSError, ValueError) as error:
        log.warning("report.link_mail_failed", error=type(error).__name__)
        return False
    log.info("report.link_mail_sent", message_id=message_id)
    return True


# --------------------------------------------------------------------------- the forms' CSRF token (double submit: cookie and field, signed)


def _csrf_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"einlass/report-csrf", hashlib.sha256).digest()


def new_csrf(secret_key: str) -> str:
    """``timestamp.nonce.signature``: the value of both the CSRF cookie and the form field."""
    payload = f"{int(clock.now().timestamp())}.{secrets.token_urlsafe(18)}"
    return f"{payload}.{hmac.new(_csrf_key(secret_key), payload.encode(), hashlib.sha256).hexdigest()}"


def csrf_signed(secret_key: str, token: str | None) -> bool:
    if not token or len(token) > 200:
        return False
    payload, _, signature = token.rpartition(".")
    timestamp, _, nonce = payload.partition(".")
    if not timestamp.isdigit() or len(timestamp) > 12 or not nonce:
        return False
    expected = hmac.new(_csrf_key(secret_key), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return False
    return -300 <= clock.now().timestamp() - int(timestamp) <= CSRF_LIFETIME.total_seconds()


def csrf_valid(secret_key: str, cookie: str | None, field: str | None) -> bool:
    if not cookie or not field:
        return False
    same = hmac.compare_digest(cookie.encode("utf-8", "replace"), field.encode("utf-8", "replace"))
    return same and csrf_signed(secret_key, cookie)
