"""The credentials email: rendering in English and German, sending through a real SMTP server
(aiosmtpd in a thread) and writing .eml files when no SMTP server is configured."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from structlog.testing import capture_logs

from einlass import clock
from einlass.config import Settings
from einlass.notify.email import (
    EmailDeliveryError,
    OutgoingEmail,
    parse_smtp_url,
    render_credentials_email,
    send_email,
)

PASSWORD = "Zx9<&>q=\u00fc-Geheim-42"
LOGIN_URL = "https://shop.example/m/acme/login"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def credentials(locale: str = "en", password: str | None = PASSWORD, **overrides: Any) -> OutgoingEmail:
    kwargs: dict[str, Any] = {
        "locale": locale,
        "merchant_name": "Acme Media",
        "to": "erika@example.org",
        "member_name": "Erika Mustermann",
        "username": "erika",
        "password": password,
        "login_url": LOGIN_URL,
    }
    kwargs.update(overrides)
    return render_credentials_email(**kwargs)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


# --------------------------------------------------------------------------- SMTP server


@dataclass
class Collector:
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd answers 535 itself on failure (handled=True would leave the client waiting).
        return AuthResult(success=(login, password) == (SMTP_USER, SMTP_PASSWORD), handled=False)


SMTP_USER = "mailer@acme.example"
SMTP_PASSWORD = "s3cr:et/p@ss%"


@dataclass
class SmtpServer:
    port: int
    collector: Collector


def _start(collector: Collector, **kwargs: Any) -> Iterator[SmtpServer]:
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer(port=port, collector=collector)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from _start(Collector())


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpServer]:
    collector = Collector()
    yield from _start(collector, authenticator=collector.authenticate, auth_require_tls=False)


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("en", "en"), ("de", "de"), ("de-AT", "de"), ("de_DE", "de"), ("DE", "de"), ("fr", "en"), ("", "en")],
)
def test_locale_selection(locale: str, expected: str) -> None:
    mail = credentials(locale)
    if expected == "de":
        assert mail.subject == "Ihre Zugangsdaten für Acme Media"
        assert "Zugangsdaten" in mail.text
        assert "Sie" in mail.text and "Passwort: " + PASSWORD in mail.text
    else:
        assert mail.subject == "Your credentials for Acme Media"
        assert "Password: " + PASSWORD in mail.text


@pytest.mark.parametrize("locale", ["en", "de"])
def test_render_with_password(locale: str) -> None:
    mail = credentials(locale)
    assert mail.to == "erika@example.org"
    assert "Erika Mustermann" in mail.text
    assert "erika" in mail.text and LOGIN_URL in mail.text
    assert PASSWORD in mail.text
    # HTML is autoescaped: the raw password with < & > never appears, the escaped one does.
    assert mail.html is not None
    assert PASSWORD not in mail.html
    assert "Zx9&lt;&amp;&gt;q=" in mail.html
    assert f'href="{LOGIN_URL}"' in mail.html


def test_render_german_is_formal() -> None:
    mail = credentials("de")
    assert mail.text.startswith("Guten Tag Erika Mustermann,")
    assert "Ihre Zugangsdaten" in mail.text or "Ihr Zugang" in mail.text
    assert " du " not in mail.text.lower() and " dein" not in mail.text.lower()


@pytest.mark.parametrize("locale", ["en", "de"])
def test_render_without_password_says_use_existing_password(locale: str) -> None:
    mail = credentials(locale, password=None, member_name=None)
    assert mail.html is not None
    assert "None" not in mail.text and "None" not in mail.html
    if locale == "de":
        assert mail.subject == "Ihr Zugang zu Acme Media ist freigeschaltet"
        assert mail.text.startswith("Guten Tag,")
        assert "bisherigen Passwort" in mail.text
        assert "Passwort:" not in mail.text
    else:
        assert mail.subject == "Your access to Acme Media is active"
        assert mail.text.startswith("Hello,")
        assert "existing password" in mail.text
        assert "Password:" not in mail.text
    assert "erika" in mail.text


def test_render_escapes_html_and_keeps_subject_on_one_line() -> None:
    mail = credentials(merchant_name="Evil <script>\r\nBcc: x@example.org", login_url="javascript:alert(1)")
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.html is not None
    assert "<script>" not in mail.html
    assert 'href="javascript' not in mail.html


def test_repr_hides_body() -> None:
    mail = credentials()
    assert PASSWORD not in repr(mail)


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "starttls", "user", "password", "timeout"),
    [
        ("smtp://mail.example", "mail.example", 25, False, False, None, None, None),
        ("smtp://mail.example:2525?starttls=1", "mail.example", 2525, False, True, None, None, None),
        ("smtps://mail.example", "mail.example", 465, True, False, None, None, None),
        ("smtps://mail.example:4650?timeout=7.5", "mail.example", 4650, True, False, None, None, 7.5),
        (
            "smtp://"
            + quote(SMTP_USER, safe="")
            + ":"
            + quote(SMTP_PASSWORD, safe="")
            + "@mail.example:587?starttls=true",
            "mail.example",
            587,
            False,
            True,
            SMTP_USER,
            SMTP_PASSWORD,
            None,
        ),
    ],
)
def test_parse_smtp_url(
    url: str,
    host: str,
    port: int,
    tls: bool,
    starttls: bool,
    user: str | None,
    password: str | None,
    timeout: float | None,
) -> None:
    cfg = parse_smtp_url(url)
    assert (cfg.hostname, cfg.port, cfg.use_tls, cfg.start_tls) == (host, port, tls, starttls)
    assert (cfg.username, cfg.password, cfg.timeout) == (user, password, timeout)
    if password:
        assert password not in repr(cfg)


@pytest.mark.parametrize(
    "url", ["http://mail.example", "smtp://user:hunter2@mail.example:notaport", "smtp://"]
)
def test_parse_smtp_url_rejects_bad_urls_without_leaking(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_smtp_url(url)
    assert "hunter2" not in str(info.value)


# --------------------------------------------------------------------------- SMTP


@pytest.mark.parametrize(
    ("locale", "subject"),
    [("en", "Your credentials for Acme Media"), ("de", "Ihre Zugangsdaten für Acme Media")],
)
async def test_send_through_smtp(smtp_server: SmtpServer, locale: str, subject: str) -> None:
    settings = Settings(
        smtp_url=f"smtp://127.0.0.1:{smtp_server.port}?timeout=5", mail_from="Acme <no@acme.example>"
    )
    message_id = await send_email(settings, credentials(locale), message_id_domain="acme.example")

    assert message_id.startswith("<") and message_id.endswith("@acme.example>")
    [envelope] = smtp_server.collector.envelopes
    assert envelope.rcpt_tos == ["erika@example.org"]
    assert envelope.mail_from == "no@acme.example"
    assert isinstance(envelope.content, bytes)
    msg = parse(envelope.content)
    assert msg["Subject"] == subject
    assert msg["To"] == "erika@example.org"
    assert msg["From"] == "Acme <no@acme.example>"
    assert msg["Message-ID"] == message_id
    assert msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    assert PASSWORD in text_part(msg)
    assert "Zx9&lt;&amp;&gt;q=" in html_part(msg)


async def test_send_text_only(smtp_server: SmtpServer) -> None:
    settings = Settings(smtp_url=f"smtp://127.0.0.1:{smtp_server.port}")
    plain = OutgoingEmail(to="x@example.org", subject="Hi", text="Just text \u00e4")
    await send_email(settings, plain)
    [envelope] = smtp_server.collector.envelopes
    assert isinstance(envelope.content, bytes)
    msg = parse(envelope.content)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Just text \u00e4"


async def test_send_with_smtp_auth(smtp_auth_server: SmtpServer) -> None:
    user, pw = quote(SMTP_USER, safe=""), quote(SMTP_PASSWORD, safe="")
    settings = Settings(smtp_url=f"smtp://{user}:{pw}@127.0.0.1:{smtp_auth_server.port}?timeout=5")
    await send_email(settings, credentials("de"))
    assert smtp_auth_server.collector.logins == [(SMTP_USER, SMTP_PASSWORD)]
    [envelope] = smtp_auth_server.collector.envelopes
    assert isinstance(envelope.content, bytes)
    assert parse(envelope.content)["Subject"] == "Ihre Zugangsdaten für Acme Media"


async def test_smtp_auth_failure_raises_without_secrets(smtp_auth_server: SmtpServer) -> None:
    url = f"smtp://{quote(SMTP_USER, safe='')}:wrong-pw@127.0.0.1:{smtp_auth_server.port}?timeout=5"
    settings = Settings(smtp_url=url)
    with pytest.raises(EmailDeliveryError) as info:
        await send_email(settings, credentials())
    assert "535" in str(info.value)
    # aiosmtplib tries each mechanism the server offers (PLAIN, then LOGIN).
    assert smtp_auth_server.collector.logins
    assert set(smtp_auth_server.collector.logins) == {(SMTP_USER, "wrong-pw")}
    assert "wrong-pw" not in str(info.value)
    assert PASSWORD not in str(info.value)
    assert smtp_auth_server.collector.envelopes == []


async def test_smtp_server_down_raises_without_password() -> None:
    port = free_port()  # nothing listens here
    settings = Settings(smtp_url=f"smtp://user:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:{port}?timeout=3")
    with capture_logs() as logs, pytest.raises(EmailDeliveryError) as info:
        await send_email(settings, credentials())
    error = info.value
    for text in (str(error), repr(error), str(error.__cause__), repr(logs)):
        assert PASSWORD not in text
        assert SMTP_PASSWORD not in text
    assert f"127.0.0.1:{port}" in str(error)
    assert error.message_id in str(error)


# --------------------------------------------------------------------------- .eml folder


async def test_no_smtp_url_writes_eml(tmp_path: Path) -> None:
    mail_dir = tmp_path / "var" / "mail"
    settings = Settings(smtp_url="", mail_dir=mail_dir, mail_from="Acme <no@acme.example>")
    message_id = await send_email(settings, credentials("de"))

    files = list(mail_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml"
    msg = parse(files[0].read_bytes())
    assert msg["Message-ID"] == message_id
    assert msg["To"] == "erika@example.org"
    assert msg["From"] == "Acme <no@acme.example>"
    assert msg["Subject"] == "Ihre Zugangsdaten für Acme Media"
    assert msg.get_content_type() == "multipart/alternative"
    assert PASSWORD in text_part(msg)
    assert "Zugangsdaten" in html_part(msg)


async def test_eml_date_comes_from_the_clock(tmp_path: Path) -> None:
    frozen = clock.FrozenClock(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    previous = clock.get_clock()
    clock.set_clock(frozen)
    try:
        await send_email(Settings(smtp_url="", mail_dir=tmp_path), credentials())
    finally:
        clock.set_clock(previous)
    [path] = tmp_path.iterdir()
    assert parse(path.read_bytes())["Date"].datetime == frozen.now()


async def test_eml_with_stable_message_id_is_overwritten(tmp_path: Path) -> None:
    settings = Settings(smtp_url="", mail_dir=tmp_path)
    mid = "<job-42/../x@einlass.local>"
    assert await send_email(settings, credentials(), message_id=mid) == mid
    assert await send_email(settings, credentials(), message_id=mid) == mid
    files = list(tmp_path.iterdir())
    assert len(files) == 1  # no duplicate, no leftover temp file
    assert files[0].parent == tmp_path and files[0].suffix == ".eml"
    bare = await send_email(settings, credentials(), message_id="job-43@einlass.local")
    assert bare == "<job-43@einlass.local>"


# --------------------------------------------------------------------------- logging


async def test_logs_never_contain_the_password(tmp_path: Path, smtp_server: SmtpServer) -> None:
    with capture_logs() as logs:
        await send_email(Settings(smtp_url="", mail_dir=tmp_path), credentials("en"))
        await send_email(Settings(smtp_url=f"smtp://127.0.0.1:{smtp_server.port}"), credentials("de"))

    assert [entry["event"] for entry in logs] == ["email.written", "email.sent"]
    written, sent = logs
    assert written["to"] == "erika@example.org"
    assert Path(written["path"]).parent == tmp_path
    assert sent["to"] == "erika@example.org"
    dump = repr(logs)
    assert PASSWORD not in dump
    assert "Zugangsdaten" not in dump and "credentials" not in dump.lower()
