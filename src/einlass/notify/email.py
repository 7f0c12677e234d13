"""Credentials email: rendering (English, German) and sending (SMTP or a folder of .eml files).

The body of a credentials email contains the member's password, so neither the
body nor the password is ever logged or put into an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from einlass import clock
from einlass.config import Settings

__all__ = [
    "EmailDeliveryError",
    "OutgoingEmail",
    "SmtpConfig",
    "parse_smtp_url",
    "render_credentials_email",
    "send_email",
]

TEMPLATE_DIR = Path(__file__).parent / "templates"
SUPPORTED_LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"

_SUBJECTS: dict[tuple[str, bool], str] = {
    ("en", True): "Your credentials for {merchant}",
    ("en", False): "Your access to {merchant} is active",
    ("de", True): "Ihre Zugangsdaten für {merchant}",
    ("de", False): "Ihr Zugang zu {merchant} ist freigeschaltet",
}


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str | None = None

    def __repr__(self) -> str:
        # The body carries a password; keep it out of reprs (tracebacks, debuggers, logs).
        return f"OutgoingEmail(to={self.to!r}, subject={self.subject!r}, text=<redacted>, html=<redacted>)"


class EmailDeliveryError(RuntimeError):
    """Sending failed. The message names the transport and the cause, never the body."""

    def __init__(self, message: str, *, message_id: str) -> None:
        super().__init__(message)
        self.message_id = message_id


# --------------------------------------------------------------------------- rendering


def normalize_locale(locale: str | None) -> str:
    """``"de"``, ``"de-AT"``, ``"de_DE"`` -> ``"de"``; anything unsupported -> ``"en"``."""
    primary = re.split(r"[-_.@]", (locale or "").strip(), maxsplit=1)[0].lower()
    return primary if primary in SUPPORTED_LOCALES else DEFAULT_LOCALE


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _one_line(value: str) -> str:
    """Collapse whitespace (including CR/LF) so a value is safe in a header or a text line."""
    return " ".join(value.split())


def _safe_href(url: str) -> str | None:
    """Only http(s) URLs become links in the HTML part."""
    return url if urlsplit(url).scheme.lower() in ("http", "https") else None


def render_credentials_email(
    *,
    locale: str,
    merchant_name: str,
    to: str,
    member_name: str | None,
    username: str,
    password: str | None,
    login_url: str,
) -> OutgoingEmail:
    """The email sent when a payment creates a member (or activates one that already had credentials).

    ``password`` is ``None`` when the member already had credentials: the email then
    says that access was activated and that the existing password stays valid.
    """
    lang = normalize_locale(locale)
    merchant = _one_line(merchant_name)
    name = _one_line(member_name) if member_name else None
    context = {
        "merchant_name": merchant,
        "member_name": name or None,
        "username": username,
        "password": password,
        "login_url": login_url,
        "login_href": _safe_href(login_url),
    }
    env = _environment()
    text = env.get_template(f"credentials.{lang}.txt").render(context)
    html = env.get_template(f"credentials.{lang}.html").render(context)
    subject = _SUBJECTS[(lang, password is not None)].format(merchant=merchant)
    return OutgoingEmail(to=_one_line(to), subject=subject, text=text, html=html)


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None
    timeout: float | None

    def __repr__(self) -> str:
        return (
            f"SmtpConfig(hostname={self.hostname!r}, port={self.port}, use_tls={self.use_tls}, "
            f"start_tls={self.start_tls}, username={self.username!r}, password=<redacted>, "
            f"timeout={self.timeout})"
        )

    @property
    def where(self) -> str:
        return f"{'smtps' if self.use_tls else 'smtp'}://{self.hostname}:{self.port}"


_TRUE = frozenset({"1", "true", "yes", "on"})


def parse_smtp_url(url: str) -> SmtpConfig:
    """Parse ``smtp[s]://[user[:pass]@]host[:port][?starttls=1&timeout=S]``.

    Error messages never repeat the URL, which may hold the SMTP password.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("invalid smtp_url (cannot parse host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ValueError(f"invalid smtp_url: scheme must be smtp or smtps, not {scheme!r}")
    if not parts.hostname:
        raise ValueError("invalid smtp_url: no host")
    query = parse_qs(parts.query)

    def flag(key: str) -> bool:
        return any(v.strip().lower() in _TRUE for v in query.get(key, []))

    timeout: float | None = None
    if query.get("timeout"):
        try:
            timeout = float(query["timeout"][-1])
        except ValueError:
            raise ValueError("invalid smtp_url: timeout must be a number of seconds") from None
        if timeout <= 0:
            raise ValueError("invalid smtp_url: timeout must be positive")
    use_tls = scheme == "smtps"
    return SmtpConfig(
        hostname=parts.hostname,
        port=port if port is not None else (465 if use_tls else 25),
        use_tls=use_tls,
        start_tls=False if use_tls else flag("starttls"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
    )


def build_message(settings: Settings, email: OutgoingEmail, *, message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = message_id
    # quoted-printable keeps the message 7-bit (no 8BITMIME needed) and still readable.
    msg.set_content(email.text, cte="quoted-printable")
    if email.html is not None:
        msg.add_alternative(email.html, subtype="html", cte="quoted-printable")
    return msg


def _eml_name(message_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", message_id.strip().strip("<>")).strip("._") or "message"
    return f"{stem[:200]}.eml"


def _write_atomically(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


def _describe(exc: BaseException) -> str:
    """A short cause for an SMTP failure: the server's reply or the OS error, nothing from the message."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.code} {exc.message}"[:300]
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    if isinstance(exc, aiosmtplib.SMTPException):
        return f"{type(exc).__name__}: {exc.message}"[:300]
    return type(exc).__name__


async def send_email(
    settings: Settings,
    email: OutgoingEmail,
    *,
    message_id_domain: str = "einlass.local",
    message_id: str | None = None,
    name_recipient: bool = True,
) -> str:
    """Send ``email`` through ``settings.smtp_url``, or write it into ``settings.mail_dir``.

    Returns the Message-ID. Pass ``message_id`` (for instance derived from the outbox
    job) to keep it stable across retries; a retry then overwrites the same .eml file.
    Failures raise :class:`EmailDeliveryError` (or ``ValueError`` for a bad
    ``smtp_url``, ``OSError`` for the mail folder), never carrying the body.
    With ``name_recipient=False`` neither the logs nor the error name the
    address (it is a screening identifier, invariant 5).
    """
    log = structlog.get_logger()
    mid = message_id.strip() if message_id else make_msgid(domain=message_id_domain)
    if not mid.startswith("<"):
        mid = f"<{mid}>"
    msg = build_message(settings, email, message_id=mid)
    recipient = email.to if name_recipient else "(not logged)"

    if not settings.smtp_url:
        path = await asyncio.to_thread(
            _write_atomically, Path(settings.mail_dir), _eml_name(mid), msg.as_bytes()
        )
        log.info("email.written", to=recipient, path=str(path), message_id=mid)
        return mid

    smtp = parse_smtp_url(settings.smtp_url)
    try:
        await aiosmtplib.send(
            msg,
            hostname=smtp.hostname,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=smtp.timeout if smtp.timeout is not None else 60,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise EmailDeliveryError(
            f"sending email {mid} to {recipient} via {smtp.where} failed: {_describe(exc)}",
            message_id=mid,
        ) from exc
    log.info("email.sent", to=recipient, message_id=mid, via=smtp.where)
    return mid
