"""Screening decisions: is this customer let in? Asked at checkout and when a payment is paid.

``screen`` normalises the identifiers it is given, digests them and reads the
merchant's whitelist, the shared blacklist (and, when a member is named, that
the member is the merchant's) in one query; ``rules.decide`` decides; the
decision is stored with its reasons and returned. Checkout calls it on the hot
path (``POST /api/v1/screenings``), so it does one read and one insert.

Reasons name kind, category, status and source only: never a raw identifier, a
digest, or who reported an entry (invariant 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Select, and_, cast, literal_column, null, or_, select, union_all
from sqlalchemy import String as SqlString
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import SYSTEM, record
from einlass.billing.models import Payment
from einlass.config import Settings
from einlass.errors import InvalidInput, NotFound
from einlass.ids import new_id
from einlass.members.models import Member
from einlass.members.service import normalize_email
from einlass.outbox.service import enqueue
from einlass.screening.identifiers import Identifier, IdentifierKind, blacklist_key, digest, normalize
from einlass.screening.models import (
    ENTRY_ACTIVE,
    ENTRY_PENDING,
    OUTCOME_REJECT,
    BlacklistEntry,
    ScreeningDecision,
    WhitelistEntry,
)
from einlass.screening.rules import Hit, decide
from einlass.tenants.models import Merchant

log = structlog.get_logger(__name__)

CONTEXT_CHECKOUT = "checkout"
CONTEXT_PAYMENT = "payment"
JOB_PAYMENT_REJECTED = "screening.payment_rejected"
# The whitelist reason's kind when the merchant whitelisted the member itself.
WHITELISTED_MEMBER = "member"
FALLBACK_REGION = "DE"

_SOURCE_BLACKLIST = "blacklist"
_SOURCE_WHITELIST = "whitelist"
_SOURCE_MEMBER = "member"
# Rows of (source, kind, digest, category, status).
_LookupSelect = Select[Any, Any, Any, Any, Any]


def default_region(merchant: Merchant) -> str:
    """Where a phone number without country code is from: the merchant's setting, else Germany."""
    region = merchant.setting("default_region") or merchant.setting("country")
    return region.upper() if isinstance(region, str) and len(region) == 2 else FALLBACK_REGION


@lru_cache(maxsize=4)
def _digest_key(secret_key: str) -> bytes:
    # Derived once per secret, not on every request of the hot path.
    return blacklist_key(secret_key)


def normalize_all(identifiers: Mapping[str, str], region: str) -> list[Identifier]:
    """Every identifier in canonical form; InvalidInput naming the first one that is not valid."""
    normalized = []
    for kind, raw in identifiers.items():
        try:
            identifier_kind = IdentifierKind(kind)
        except ValueError:
            known = ", ".join(k.value for k in IdentifierKind)
            raise InvalidInput(f"unknown identifier {kind!r}; known are {known}", param=kind) from None
        normalized.append(normalize(identifier_kind, raw, default_region=region))
    return normalized


def identifier_digests(settings: Settings, identifiers: Iterable[Identifier]) -> dict[tuple[str, str], str]:
    """(kind, digest) -> kind, for every identifier."""
    key = _digest_key(settings.secret_key)
    return {(item.kind.value, digest(key, item)): item.kind.value for item in identifiers}


def _lookup(
    merchant_id: str, member_id: str | None, pairs: Iterable[tuple[str, str]]
) -> _LookupSelect | None:
    """One statement for everything the decision reads: (source, kind, digest, category, status) rows."""
    pairs = list(pairs)
    kinds = sorted({kind for kind, _ in pairs})
    digests = sorted({value for _, value in pairs})
    text_null = cast(null(), SqlString)
    parts: list[_LookupSelect] = []
    if pairs:
        parts.append(
            select(
                literal_column(f"'{_SOURCE_BLACKLIST}'", SqlString).label("source"),
                BlacklistEntry.kind,
                BlacklistEntry.digest,
                BlacklistEntry.category,
                BlacklistEntry.status,
            ).where(
                BlacklistEntry.digest.in_(digests),
                BlacklistEntry.kind.in_(kinds),
                BlacklistEntry.status.in_((ENTRY_ACTIVE, ENTRY_PENDING)),
                # An entry past its retention counts as expired before the sweep marks it.
                BlacklistEntry.expires_at > clock.now(),
            )
        )
    whitelist_matches = []
    if member_id is not None:
        whitelist_matches.append(WhitelistEntry.member_id == member_id)
    if pairs:
        whitelist_matches.append(and_(WhitelistEntry.kind.in_(kinds), WhitelistEntry.digest.in_(digests)))
    if whitelist_matches:
        parts.append(
            select(
                literal_column(f"'{_SOURCE_WHITELIST}'", SqlString),
                WhitelistEntry.kind,
                WhitelistEntry.digest,
                text_null,
                text_null,
            ).where(WhitelistEntry.merchant_id == merchant_id, or_(*whitelist_matches))
        )
    if member_id is not None:
        # The member must be this merchant's: checked in the same round trip.
        parts.append(
            select(
                literal_column(f"'{_SOURCE_MEMBER}'", SqlString), text_null, text_null, text_null, text_null
            ).where(Member.id == member_id, Member.merchant_id == merchant_id)
        )
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return select(union_all(*parts).subquery())


async def screen(
    session: AsyncSession,
    settings: Settings,
    merchant: Merchant,
    identifiers: Mapping[str, str],
    *,
    member_id: str | None = None,
    payment_id: str | None = None,
    context: str = CONTEXT_CHECKOUT,
) -> ScreeningDecision:
    """Decide and store the decision; InvalidInput (nothing stored) for an identifier that is not valid."""
    normalized = normalize_all(identifiers, default_region(merchant))
    return await _screen_normalized(
        session,
        settings,
        merchant.id,
        normalized,
        member_id=member_id,
        payment_id=payment_id,
        context=context,
    )


async def _screen_normalized(
    session: AsyncSession,
    settings: Settings,
    merchant_id: str,
    identifiers: list[Identifier],
    *,
    member_id: str | None,
    payment_id: str | None,
    context: str,
) -> ScreeningDecision:
    wanted = identifier_digests(settings, identifiers)
    statement = _lookup(merchant_id, member_id, wanted)
    rows = (await session.execute(statement)).all() if statement is not None else []
    whitelisted_by: list[str] = []
    hits: list[Hit] = []
    member_known = False
    for source, kind, value, category, status in rows:
        if source == _SOURCE_MEMBER:
            member_known = True
        elif source == _SOURCE_WHITELIST:
            if kind is None:
                whitelisted_by.append(WHITELISTED_MEMBER)
            elif (kind, value) in wanted:
                whitelisted_by.append(kind)
        elif (kind, value) in wanted:  # the digest and its kind, not a digest of another kind
            hits.append(Hit(kind=kind, category=category, status=status))
    if member_id is not None and not member_known:
        raise NotFound(f"no member {member_id!r}", param="member")
    decision = decide(whitelisted_by=whitelisted_by, hits=hits)
    stored = ScreeningDecision(
        id=new_id("scr"),
        merchant_id=merchant_id,
        member_id=member_id,
        payment_id=payment_id,
        context=context,
        outcome=decision.outcome,
        reasons=[dict(reason) for reason in decision.reasons],
        created_at=clock.now(),
    )
    # Written with the caller's commit: one INSERT, no flush of its own.
    session.add(stored)
    return stored


def decision_document(decision: ScreeningDecision) -> dict[str, Any]:
    """The API's rendering (also in the member detail)."""
    return {
        "id": decision.id,
        "object": "screening",
        "outcome": decision.outcome,
        "reasons": decision.reasons,
        "context": decision.context,
        "member": decision.member_id,
        "payment": decision.payment_id,
        "created_at": decision.created_at.isoformat(),
    }


async def get_decision(session: AsyncSession, merchant_id: str, decision_id: str) -> ScreeningDecision:
    found = await session.scalar(
        select(ScreeningDecision).where(
            ScreeningDecision.id == decision_id, ScreeningDecision.merchant_id == merchant_id
        )
    )
    if found is None:
        raise NotFound(f"no screening {decision_id!r}")
    return found


def of_member(merchant_id: str, member_id: str) -> ColumnElement[bool]:
    """A member's decisions: made for it, or for its payments.

    A new customer's first payment is screened before the member exists, so
    that decision names the payment only; the payment names the member later.
    """
    payments = select(Payment.id).where(Payment.merchant_id == merchant_id, Payment.member_id == member_id)
    return and_(
        ScreeningDecision.merchant_id == merchant_id,
        or_(ScreeningDecision.member_id == member_id, ScreeningDecision.payment_id.in_(payments)),
    )


async def recent_decisions(
    session: AsyncSession, merchant_id: str, member_id: str, limit: int = 5
) -> list[ScreeningDecision]:
    rows = await session.scalars(
        select(ScreeningDecision)
        .where(of_member(merchant_id, member_id))
        .order_by(ScreeningDecision.id.desc())
        .limit(limit)
    )
    return list(rows)


# --- payments -------------------------------------------------------------------------------


def _payment_identifiers(payment: Payment, region: str) -> list[Identifier]:
    """What the ledger knows of the customer, the unusable parts left out.

    Today that is the email: a payment carries no postcode (for name_postcode),
    and gateways' card fingerprints, IBANs and IP addresses are not kept yet.
    """
    known = {IdentifierKind.EMAIL: payment.customer_email}
    found = []
    for kind, raw in known.items():
        if not raw:
            continue
        try:
            found.append(normalize(kind, raw, default_region=region))
        except InvalidInput:
            # A gateway's garbage must not stop the payment; the kind is logged, never the value.
            log.warning("payment identifier not usable for screening", payment_id=payment.id, kind=kind.value)
    return found


async def _member_of(session: AsyncSession, merchant_id: str, payment: Payment) -> str | None:
    if payment.member_id is not None:
        return payment.member_id
    if not payment.customer_email:
        return None
    try:
        email = normalize_email(payment.customer_email)
    except InvalidInput:
        return None
    return await session.scalar(
        select(Member.id).where(
            Member.merchant_id == merchant_id, Member.email_normalized == email, Member.deleted_at.is_(None)
        )
    )


async def screen_payment(
    session: AsyncSession, settings: Settings, merchant: Merchant, payment: Payment
) -> str:
    """Screen a payment the first time it is paid, before access; returns the outcome.

    A rejected payment opens nothing; a job tells the merchant so it can refund.
    """
    identifiers = _payment_identifiers(payment, default_region(merchant))
    member_id = await _member_of(session, merchant.id, payment)
    decision = await _screen_normalized(
        session,
        settings,
        merchant.id,
        identifiers,
        member_id=member_id,
        payment_id=payment.id,
        context=CONTEXT_PAYMENT,
    )
    record(
        session,
        merchant_id=merchant.id,
        actor=SYSTEM,
        action="payment.screened",
        entity_kind="payment",
        entity_id=payment.id,
        member_id=member_id,
        after={"outcome": decision.outcome, "screening": decision.id, "reasons": decision.reasons},
    )
    if decision.outcome == OUTCOME_REJECT:
        log.info("payment rejected by screening", merchant_id=merchant.id, payment_id=payment.id)
        await enqueue(
            session,
            JOB_PAYMENT_REJECTED,
            {"payment_id": payment.id, "decision_id": decision.id},
            merchant_id=merchant.id,
            dedup_key=f"{JOB_PAYMENT_REJECTED}:{payment.id}",
        )
    return decision.outcome
