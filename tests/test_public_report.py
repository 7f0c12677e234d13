"""The public /report pages: report, confirm by emailed link, withdraw, appeal; neutral answers."""

from __future__ import annotations

import email
import html
import re
from datetime import timedelta
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import httpx
from sqlalchemy import select

from einlass.config import Settings
from einlass.db.engine import Database
from einlass.screening.blacklist import file_report, identifier_digest
from einlass.screening.identifiers import normalize
from einlass.screening.models import Appeal, BlacklistEntry, BlacklistReport
from test_flow_email import SmtpProcess, smtp_process  # noqa: F401 - the fixture

ANNA = "anna.muster@example.de"
PHONE = "+49 30 1234567"


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return html.unescape(match.group(1))


async def submit(
    client: httpx.AsyncClient, path: str, data: dict[str, str], lang: str = "en"
) -> httpx.Response:
    """Fill the form as a browser would: load it (CSRF cookie and field), then post it."""
    page = await client.get(path, params={"lang": lang})
    assert page.status_code == 200
    return await client.post(
        path, params={"lang": lang}, data={**data, "csrf_token": hidden(page.text, "csrf_token")}
    )


def subject_of(message: Message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def body_of(message: Message) -> str:
    part = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def token_in(message: Message) -> str:
    match = re.search(r"/report/confirm\?token=(\S+)", body_of(message))
    assert match, "the email holds a confirmation link"
    return match.group(1)


def folder_mails(settings: Settings) -> list[Message]:
    folder = Path(settings.mail_dir)
    files = sorted(folder.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns) if folder.exists() else []
    return [email.message_from_bytes(path.read_bytes()) for path in files]


async def follow(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """Open the link (a page with a button, changing nothing), then press the button."""
    page = await client.get("/report/confirm", params={"token": token})
    assert page.status_code == 200, page.text
    return await client.post(
        "/report/confirm",
        data={"token": hidden(page.text, "token"), "csrf_token": hidden(page.text, "csrf_token")},
    )


async def entry_status(db: Database, settings: Settings, kind: str, raw: str) -> str | None:
    value = identifier_digest(settings, normalize(kind, raw))
    async with db.transaction() as session:
        entry = await session.scalar(
            select(BlacklistEntry).where(BlacklistEntry.kind == kind, BlacklistEntry.digest == value)
        )
    return entry.status if entry else None


async def report_statuses(db: Database) -> list[str]:
    async with db.transaction() as session:
        return sorted(report.status for report in await session.scalars(select(BlacklistReport)))


async def test_report_confirm_by_email_link_lists_the_email_and_queues_the_phone(
    client,
    db,
    settings,
    shop,
    smtp_process: SmtpProcess,  # noqa: F811 - the imported fixture
):
    settings.smtp_url = f"smtp://127.0.0.1:{smtp_process.port}"
    response = await submit(
        client,
        "/report",
        {"email": ANNA, "phone": PHONE, "statement": "Jemand bestellt in meinem Namen.", "consent": "yes"},
        lang="de",
    )
    assert response.status_code == 200
    assert "Wenn die Adresse gültig ist, haben wir Ihnen einen Link gesendet" in response.text
    assert await report_statuses(db) == ["unverified", "unverified"], "nothing counts before the link"
    assert await entry_status(db, settings, "email", ANNA) != "active"

    [message] = smtp_process.messages()
    assert message["To"] == ANNA
    assert "Bitte bestätigen Sie Ihre Meldung" in subject_of(message)
    assert "Der Link gilt 24 Stunden" in body_of(message)

    confirm_page = await client.get("/report/confirm", params={"token": token_in(message)})
    assert "Meldung bestätigen" in confirm_page.text
    assert await report_statuses(db) == ["unverified", "unverified"], "opening the link changes nothing"
    done = await follow(client, token_in(message))
    assert done.status_code == 200
    assert "Ihre Meldung ist bestätigt" in done.text

    assert await entry_status(db, settings, "email", ANNA) == "active"
    assert await entry_status(db, settings, "phone", PHONE) == "pending", "the phone waits for the operator"
    screening = await client.post(
        "/api/v1/screenings", headers=shop.auth, json={"identifiers": {"email": "Anna.Muster@Example.de"}}
    )
    assert screening.status_code == 201, screening.text
    assert screening.json()["outcome"] == "reject"


async def test_tampered_and_expired_links_change_nothing(client, db, settings, clock):
    await submit(client, "/report", {"email": ANNA, "consent": "yes"})
    token = token_in(folder_mails(settings)[-1])
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")

    page = await client.get("/report/confirm", params={"token": tampered})
    assert page.status_code == 400
    assert "not valid or has expired" in page.text
    good_page = await client.get("/report/confirm", params={"token": token})
    csrf = hidden(good_page.text, "csrf_token")
    refused = await client.post("/report/confirm", data={"token": tampered, "csrf_token": csrf})
    assert refused.status_code == 400
    assert (await client.post("/report/api/confirm", json={"token": tampered})).json()["error"][
        "code"
    ] == "link_invalid"

    clock.advance(timedelta(hours=25))
    assert (await client.get("/report/confirm", params={"token": token})).status_code == 400
    fresh_csrf = hidden((await client.get("/report")).text, "csrf_token")
    expired = await client.post("/report/confirm", data={"token": token, "csrf_token": fresh_csrf})
    assert expired.status_code == 400
    assert "not valid or has expired" in expired.text
    assert await report_statuses(db) == ["unverified"]
    assert await entry_status(db, settings, "email", ANNA) != "active"


async def test_withdrawal_by_link_removes_the_entries(client, db, settings):
    await submit(client, "/report", {"email": ANNA, "phone": PHONE, "consent": "yes"})
    await follow(client, token_in(folder_mails(settings)[-1]))
    assert await entry_status(db, settings, "email", ANNA) == "active"

    response = await submit(client, "/report/withdraw", {"email": ANNA})
    assert "If the address is valid, we sent you a link" in response.text
    assert await entry_status(db, settings, "email", ANNA) == "active", "not before the link is followed"
    [_, withdrawal] = folder_mails(settings)
    assert "Withdraw your report" in subject_of(withdrawal)
    done = await follow(client, token_in(withdrawal))
    assert "Your reports are withdrawn" in done.text

    assert await entry_status(db, settings, "email", ANNA) is None
    assert await entry_status(db, settings, "phone", PHONE) is None
    assert await report_statuses(db) == []


async def test_appeal_by_link_opens_an_appeal_for_a_listed_address(client, db, settings):
    async with db.transaction() as session:
        await file_report(
            session,
            settings,
            normalize("email", ANNA),
            category="fraud_attempt",
            source="operator",
            merchant_id=None,
            status="confirmed",
        )
    assert await entry_status(db, settings, "email", ANNA) == "active"

    statement = {"statement": "I never ordered anything there.", "consent": "yes"}
    await submit(client, "/report/appeal", {"email": ANNA, **statement})
    await submit(client, "/report/appeal", {"email": "nobody@example.org", **statement})
    listed_mail, unlisted_mail = folder_mails(settings)
    assert "Please confirm your objection" in subject_of(listed_mail)

    for message in (listed_mail, unlisted_mail, listed_mail):  # the first one twice: no second appeal
        done = await follow(client, token_in(message))
        assert "If your address is listed, an operator will review your objection" in done.text
    async with db.transaction() as session:
        appeals = list(await session.scalars(select(Appeal)))
    assert [appeal.status for appeal in appeals] == ["pending"]
    assert appeals[0].statement is not None
    assert b"never ordered" not in appeals[0].statement, "the statement is stored encrypted"


async def test_the_answer_is_the_same_for_a_listed_and_an_unlisted_address(client, db, settings, clock):
    async with db.transaction() as session:
        await file_report(
            session,
            settings,
            normalize("email", ANNA),
            category="chargeback",
            source="operator",
            merchant_id=None,
            status="confirmed",
        )
    listed = await submit(client, "/report", {"email": ANNA, "consent": "yes"})
    unlisted = await submit(client, "/report", {"email": "someone.else@example.org", "consent": "yes"})
    assert (listed.status_code, listed.text) == (unlisted.status_code, unlisted.text)
    for path in ("/report/withdraw", "/report/appeal"):
        clock.advance(timedelta(hours=1))  # out of the rate limit's window
        data = {"statement": "wrong", "consent": "yes"}
        first = await submit(client, path, {"email": ANNA, **data})
        second = await submit(client, path, {"email": "someone.else@example.org", **data})
        assert (first.status_code, first.text) == (second.status_code, second.text)
    clock.advance(timedelta(hours=1))
    api_listed = await client.post("/report/api/reports", json={"email": ANNA, "consent": True})
    api_unlisted = await client.post("/report/api/reports", json={"email": "x@example.org", "consent": True})
    assert api_listed.status_code == api_unlisted.status_code == 202
    assert api_listed.json() == api_unlisted.json()


async def test_posts_without_the_csrf_token_are_refused(client, db, settings):
    await client.get("/report")  # the cookie is there, the field is not
    response = await client.post("/report", data={"email": ANNA, "consent": "yes"})
    assert response.status_code == 403
    assert "nothing was changed" in response.text
    forged = await client.post("/report", data={"email": ANNA, "consent": "yes", "csrf_token": "1.x.y"})
    assert forged.status_code == 403
    assert await report_statuses(db) == []
    assert folder_mails(settings) == []


async def test_consent_and_valid_input_are_required(client, db):
    no_consent = await submit(client, "/report", {"email": ANNA}, lang="de")
    assert no_consent.status_code == 400
    assert "Häkchen" in no_consent.text
    bad_phone = await submit(client, "/report", {"email": ANNA, "phone": "12", "consent": "yes"})
    assert bad_phone.status_code == 400
    assert "not a valid phone number" in bad_phone.text
    assert await report_statuses(db) == []


async def test_too_many_requests_for_one_address_get_429(client, settings):
    for _ in range(5):
        assert (await submit(client, "/report/withdraw", {"email": ANNA})).status_code == 200
    limited = await submit(client, "/report/withdraw", {"email": ANNA})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    api = await client.post("/report/api/withdrawals", json={"email": ANNA})
    assert api.status_code == 429
    assert api.json()["error"]["code"] == "rate_limited"
    assert len(folder_mails(settings)) == 5


async def test_the_api_flow_reports_and_confirms(client, db, settings):
    response = await client.post(
        "/report/api/reports", json={"email": ANNA, "iban": "DE89 3704 0044 0532 0130 00", "consent": True}
    )
    assert response.status_code == 202
    done = await client.post("/report/api/confirm", json={"token": token_in(folder_mails(settings)[-1])})
    assert done.json() == {"status": "done", "purpose": "report"}
    assert await entry_status(db, settings, "email", ANNA) == "active"
    assert await entry_status(db, settings, "iban", "DE89370400440532013000") == "pending"
    refused = await client.post("/report/api/reports", json={"email": ANNA})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "consent"


async def test_pages_speak_german_and_english_and_send_security_headers(client):
    german = await client.get("/report", headers={"accept-language": "de-DE,de;q=0.9,en;q=0.5"})
    assert "Missbrauch Ihrer Daten melden" in german.text
    assert "Wie wir Ihre Daten verarbeiten" in german.text
    english = await client.get("/report", params={"lang": "en"}, headers={"accept-language": "de"})
    assert "Report misuse of your data" in english.text
    assert 'href="/report?lang=de"' in english.text
    assert english.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in english.headers["content-security-policy"]
    assert english.headers["cache-control"] == "no-store"
