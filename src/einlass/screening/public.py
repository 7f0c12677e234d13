"""The public side of the blacklist: people whose data was misused report it, withdraw it, or appeal.

Nothing counts until the person proves they control the email address: every
request mails a link (``public_links.LinkToken``: signed, expiring after 24 h). Answers never say whether an
address is listed; only the mailbox's owner learns anything, by following the
link. No raw identifier is stored (only digests) or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.config import Settings
from einlass.crypto import encrypt_json
from einlass.errors import InvalidInput
from einlass.ids import new_id
from einlass.screening.blacklist import file_report, identifier_digest, recompute
from einlass.screening.identifiers import Identifier, IdentifierKind, normalize
from einlass.screening.models import (
    ENTRY_ACTIVE,
    ENTRY_PENDING,
    REPORT_CONFIRMED,
    REPORT_PENDING,
    REPORT_UNVERIFIED,
    REPORT_WITHDRAWN,
    SOURCE_END_CUSTOMER,
    Appeal,
    BlacklistEntry,
    BlacklistReport,
)
from einlass.screening.public_links import (
    LINK_LIFETIME,
    PURPOSE_APPEAL,
    PURPOSE_REPORT,
    PURPOSE_WITHDRAW,
    LinkToken,
    open_link,
)

CATEGORY = "identity_misuse"
MAX_STATEMENT = 2000
# The audit log's actor for what a person does through these pages (who they are is not known).
PUBLIC = Actor("end_customer")


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class ReportInput:
    """What a person reports: their email (proved by the link) and other identifiers of theirs."""

    email: Identifier
    others: tuple[Identifier, ...]
    statement: str | None


def clean_statement(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_STATEMENT:
        raise InvalidInput(f"statement is longer than {MAX_STATEMENT} characters", param="statement")
    cleaned = "".join(char for char in value if char.isprintable() or char in "\n\t").strip()
    return cleaned or None


def parse_email(raw: str | None) -> Identifier:
    return normalize(IdentifierKind.EMAIL, raw or "")


def parse_report(
    *,
    email: str | None,
    phone: str | None = None,
    iban: str | None = None,
    name: str | None = None,
    postcode: str | None = None,
    statement: str | None = None,
) -> ReportInput:
    """The normalised report, or InvalidInput naming the field (``param``) that is wrong."""
    others: list[Identifier] = []
    if phone and phone.strip():
        others.append(normalize(IdentifierKind.PHONE, phone))
    if iban and iban.strip():
        others.append(normalize(IdentifierKind.IBAN, iban))
    has_name, has_postcode = bool(name and name.strip()), bool(postcode and postcode.strip())
    if has_name != has_postcode:
        raise InvalidInput("name and postcode go together", param="name" if has_postcode else "postcode")
    if name and postcode and has_name:
        if "|" in name or "|" in postcode:
            raise InvalidInput("name and postcode may not contain |", param="name")
        others.append(normalize(IdentifierKind.NAME_POSTCODE, f"{name}|{postcode}"))
    return ReportInput(parse_email(email), tuple(dict.fromkeys(others)), clean_statement(statement))


# --------------------------------------------------------------------------- requests (before the proof)


def _encrypted(settings: Settings, value: dict[str, Any]) -> bytes:
    return encrypt_json(settings.secret_key, value).encode()


async def request_report(
    session: AsyncSession, settings: Settings, report: ReportInput, lang: str
) -> LinkToken:
    """File an unverified report per identifier; the link mailed to the email confirms them."""
    await purge_unconfirmed(session, settings)
    contact = identifier_digest(settings, report.email)
    evidence = {"statement": report.statement, "kinds": [item.kind.value for item in report.others]}
    report_ids: list[str] = []
    email_report_id: str | None = None
    for identifier in (report.email, *report.others):
        # Evidence is set here, as bytes: the LargeBinary column refuses file_report's str.
        _entry, filed = await file_report(
            session,
            settings,
            identifier,
            category=CATEGORY,
            source=SOURCE_END_CUSTOMER,
            merchant_id=None,
            status=REPORT_UNVERIFIED,
            contact_digest=contact,
        )
        filed.evidence = _encrypted(settings, {**evidence, "kind": identifier.kind.value})
        report_ids.append(filed.id)
        if identifier is report.email:
            email_report_id = filed.id
    return LinkToken(PURPOSE_REPORT, contact, lang, tuple(report_ids), email_report_id)


def request_withdrawal(settings: Settings, email: Identifier, lang: str) -> LinkToken:
    return LinkToken(PURPOSE_WITHDRAW, identifier_digest(settings, email), lang)


def request_appeal(settings: Settings, email: Identifier, statement: str | None, lang: str) -> LinkToken:
    return LinkToken(PURPOSE_APPEAL, identifier_digest(settings, email), lang, statement=statement)


async def purge_unconfirmed(session: AsyncSession, settings: Settings) -> int:
    """Reports whose link expired unfollowed go, and entries left with no report go with them."""
    cutoff = clock.now() - LINK_LIFETIME
    stale = list(
        await session.scalars(
            select(BlacklistReport).where(
                BlacklistReport.status == REPORT_UNVERIFIED, BlacklistReport.created_at < cutoff
            )
        )
    )
    for report in stale:
        await session.delete(report)
    await session.flush()
    await _settle_entries(session, settings, {report.entry_id for report in stale}, only_contact=None)
    return len(stale)


# --------------------------------------------------------------------------- following the link


@dataclass
class Outcome:
    purpose: str
    lang: str
    changed: list[str] = field(default_factory=list)  # ids of what changed, for the audit log


async def follow_link(session: AsyncSession, settings: Settings, token: str | None) -> Outcome:
    """Do what the link stands for. Following it again changes nothing more."""
    link = open_link(settings.secret_key, token)
    if link.purpose == PURPOSE_REPORT:
        return await _confirm_report(session, settings, link)
    if link.purpose == PURPOSE_WITHDRAW:
        return await _withdraw(session, settings, link)
    return await _appeal(session, settings, link)


async def _confirm_report(session: AsyncSession, settings: Settings, link: LinkToken) -> Outcome:
    outcome = Outcome(link.purpose, link.lang)
    reports = await session.scalars(
        select(BlacklistReport)
        .where(
            BlacklistReport.id.in_(link.report_ids),
            BlacklistReport.source == SOURCE_END_CUSTOMER,
            BlacklistReport.contact_digest == link.contact_digest,
            BlacklistReport.status == REPORT_UNVERIFIED,
        )
        .with_for_update()
    )
    now = clock.now()
    for report in reports:
        # The link proves the email only; the other identifiers wait for the operator.
        report.status = REPORT_CONFIRMED if report.id == link.email_report_id else REPORT_PENDING
        report.updated_at = now
        outcome.changed.append(report.id)
        record(
            session,
            merchant_id=None,
            actor=PUBLIC,
            action="blacklist_report.verified",
            entity_kind="blacklist_report",
            entity_id=report.id,
            before={"status": REPORT_UNVERIFIED},
            after={"status": report.status},
        )
        entry = await session.get(BlacklistEntry, report.entry_id)
        if entry is not None:
            await session.flush()
            await recompute(session, settings, entry)
    return outcome


async def _withdraw(session: AsyncSession, settings: Settings, link: LinkToken) -> Outcome:
    outcome = Outcome(link.purpose, link.lang)
    reports = list(
        await session.scalars(
            select(BlacklistReport)
            .where(
                BlacklistReport.source == SOURCE_END_CUSTOMER,
                BlacklistReport.contact_digest == link.contact_digest,
                BlacklistReport.status != REPORT_WITHDRAWN,
            )
            .with_for_update()
        )
    )
    now = clock.now()
    for report in reports:
        record(
            session,
            merchant_id=None,
            actor=PUBLIC,
            action="blacklist_report.withdrawn",
            entity_kind="blacklist_report",
            entity_id=report.id,
            before={"status": report.status},
            after={"status": REPORT_WITHDRAWN},
        )
        report.status, report.evidence, report.updated_at = REPORT_WITHDRAWN, None, now
        outcome.changed.append(report.id)
    await session.flush()
    await _settle_entries(
        session, settings, {report.entry_id for report in reports}, only_contact=link.contact_digest
    )
    return outcome


async def _settle_entries(
    session: AsyncSession, settings: Settings, entry_ids: set[str], *, only_contact: str | None
) -> None:
    """Recompute each entry; delete it when nothing but this person's withdrawn reports is left.

    An entry someone else reported too stays (with this person's report
    withdrawn): their report is not this person's to take back.
    """
    for entry_id in sorted(entry_ids):
        entry = await session.get(BlacklistEntry, entry_id)
        if entry is None:
            continue
        rows = list(
            await session.scalars(select(BlacklistReport).where(BlacklistReport.entry_id == entry_id))
        )
        nobody_else = all(
            row.source == SOURCE_END_CUSTOMER
            and row.contact_digest == only_contact
            and row.status == REPORT_WITHDRAWN
            for row in rows
        )
        if not rows or (only_contact is not None and nobody_else):
            await session.execute(delete(Appeal).where(Appeal.entry_id == entry_id))
            await session.execute(delete(BlacklistReport).where(BlacklistReport.entry_id == entry_id))
            await session.delete(entry)
            record(
                session,
                merchant_id=None,
                actor=PUBLIC,
                action="blacklist_entry.deleted",
                entity_kind="blacklist_entry",
                entity_id=entry_id,
            )
        else:
            await recompute(session, settings, entry)
    await session.flush()


async def _appeal(session: AsyncSession, settings: Settings, link: LinkToken) -> Outcome:
    outcome = Outcome(link.purpose, link.lang)
    entries = await session.scalars(
        select(BlacklistEntry).where(
            BlacklistEntry.kind == IdentifierKind.EMAIL.value,
            BlacklistEntry.digest == link.contact_digest,
            BlacklistEntry.status.in_((ENTRY_ACTIVE, ENTRY_PENDING)),
        )
    )
    for entry in entries:
        already = await session.scalar(
            select(Appeal.id).where(
                Appeal.entry_id == entry.id,
                Appeal.contact_digest == link.contact_digest,
                Appeal.status == REPORT_PENDING,
            )
        )
        if already is not None:
            continue  # the same link followed twice, or an appeal still open
        appeal = Appeal(
            id=new_id("bla"),
            entry_id=entry.id,
            status=REPORT_PENDING,
            statement=_encrypted(settings, {"statement": link.statement, "lang": link.lang}),
            contact_digest=link.contact_digest,
            decided_at=None,
            created_at=clock.now(),
        )
        session.add(appeal)
        outcome.changed.append(appeal.id)
        record(
            session,
            merchant_id=None,
            actor=PUBLIC,
            action="blacklist_appeal.created",
            entity_kind="blacklist_appeal",
            entity_id=appeal.id,
            after={"entry_id": entry.id, "status": REPORT_PENDING},
        )
    return outcome


# --------------------------------------------------------------------------- rate limit


class RequestLimiter:
    """At most ``limit`` requests per key in a sliding ``window``, counted in this process.

    Meanwhile in memory: keys are keyed digests (no raw address or email), so
    nothing identifying is kept. Several processes each count on their own,
    which multiplies the limit; the durable table is a proposal in docs/report-page.md.
    """

    def __init__(self, limit: int = 5, window: timedelta = timedelta(hours=1)) -> None:
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[datetime]] = {}

    def retry_after(self, *keys: str) -> int | None:
        """Count this request under every key; seconds to wait when one is over the limit."""
        now = clock.now()
        waits: list[int] = []
        for key in keys:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                waits.append(max(1, math.ceil((hits[0] + self.window - now).total_seconds())))
        if not waits:
            # A refused request does not count, so waiting out Retry-After is enough.
            for key in keys:
                self._hits[key].append(now)
        if len(self._hits) > 100_000:
            self._forget_idle(now)
        return max(waits) if waits else None

    def _forget_idle(self, now: datetime) -> None:
        for key in [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]:
            del self._hits[key]


def limit_key(secret_key: str, kind: str, value: str) -> str:
    key = hmac.new(secret_key.encode(), b"einlass/public-report-limits", hashlib.sha256).digest()
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
