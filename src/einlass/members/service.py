"""Members, their credentials and their grants."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.access.models import AccessChange
from einlass.audit.service import Actor, record, redact_member_entries
from einlass.billing.models import Area, InboxEvent, Order, Payment, PaymentFact
from einlass.billing.subscriptions.models import Subscription, SubscriptionFact
from einlass.crypto import generate_password, hash_generated_password, hash_password
from einlass.db.util import newest_first
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.ids import new_id
from einlass.members.access import GrantWindow, MemberStanding, access_until, may_enter
from einlass.members.models import GRANT_SOURCE_MANUAL, Grant, Member
from einlass.outbox.service import enqueue
from einlass.provisioning.hashing import replace_push_hashes
from einlass.provisioning.models import MemberPushHash, WebhookDelivery
from einlass.tenants.models import Merchant

JOB_CREDENTIALS_EMAIL = "email.credentials"
JOB_PROVISION = "provisioning.sync"


def normalize_email(email: str) -> str:
    """The identity of a member within a merchant: a valid address, lower-cased."""
    try:
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidInput(f"invalid email address {email!r}: {error}", param="email") from None
    return result.normalized.lower()


def member_snapshot(member: Member) -> dict[str, Any]:
    return {
        "email": member.email,
        "name": member.name,
        "username": member.username,
        "locked": member.locked_at is not None,
        "deleted": member.deleted_at is not None,
    }


async def get_member(
    session: AsyncSession, merchant_id: str, member_id: str, *, for_update: bool = False
) -> Member:
    query = select(Member).where(Member.id == member_id, Member.merchant_id == merchant_id)
    if for_update:
        query = query.with_for_update()
    member = await session.scalar(query)
    if member is None:
        raise NotFound(f"no member {member_id!r}")
    return member


async def find_member_by_email(session: AsyncSession, merchant_id: str, email: str) -> Member | None:
    return await session.scalar(
        select(Member).where(
            Member.merchant_id == merchant_id, Member.email_normalized == normalize_email(email)
        )
    )


async def list_members(
    session: AsyncSession,
    merchant_id: str,
    *,
    email: str | None = None,
    starting_after: str | None = None,
    limit: int = 50,
) -> list[Member]:
    query = select(Member).where(Member.merchant_id == merchant_id, Member.deleted_at.is_(None))
    if email:
        query = query.where(Member.email_normalized == normalize_email(email))
    return await newest_first(session, query, Member.id, starting_after=starting_after, limit=limit)


async def access_changed(session: AsyncSession, merchant_id: str, member_id: str | None, reason: str) -> None:
    """Something that decides access changed: tell the caches and the push targets.

    Both in the caller's transaction: the change-log row makes every process
    drop its cached decision for the member, and one coalesced provisioning
    job per merchant makes the push targets converge.
    """
    session.add(
        AccessChange(merchant_id=merchant_id, member_id=member_id, reason=reason[:100], at=clock.now())
    )
    await enqueue(
        session,
        JOB_PROVISION,
        {"reason": reason},
        merchant_id=merchant_id,
        dedup_key=f"{JOB_PROVISION}:{merchant_id}",
    )


async def send_credentials(
    session: AsyncSession,
    merchant: Merchant,
    member: Member,
    *,
    new_password: bool,
    only_if_unset: bool = False,
    actor: Actor | None = None,
) -> None:
    """Queue the credentials email.

    With ``new_password`` the job generates the password, stores its hash and
    mails it: the plain password is never stored, and the slow hash runs in
    the worker instead of the payment's transaction. With ``only_if_unset`` a
    password set in the meantime (by an admin) is kept.

    With ``actor`` (someone asked for the email: a resend) the send is audited
    as ``member.credentials_sent``. The sends that belong to another audited
    change (a new member, a password reset, a payment) pass none.
    """
    await enqueue(
        session,
        JOB_CREDENTIALS_EMAIL,
        {"member_id": member.id, "new_password": new_password, "only_if_unset": only_if_unset},
        merchant_id=merchant.id,
    )
    if actor is not None:
        record(
            session,
            merchant_id=merchant.id,
            actor=actor,
            action="member.credentials_sent",
            entity_kind="member",
            entity_id=member.id,
            member_id=member.id,
            after={"new_password": new_password},
        )


async def hashed(password: str, *, generated: bool = False) -> str:
    """argon2id off the event loop; a chosen password's hash takes ~175 ms of CPU.

    ``generated``: the password came from ``generate_password`` (high entropy),
    so the small work factor of ``hash_generated_password`` is enough.
    """
    return await asyncio.to_thread(hash_generated_password if generated else hash_password, password)


async def create_member(
    session: AsyncSession,
    merchant: Merchant,
    *,
    email: str,
    name: str | None,
    actor: Actor,
    password: str | None = None,
    generate: bool = False,
    locale: str | None = None,
) -> tuple[Member, str | None]:
    """Create a member; returns the plain password once when one was given or ``generate``d.

    Without either, the member has no password until the credentials job issues one.
    """
    normalized = normalize_email(email)
    existing = await session.scalar(
        select(Member.id).where(Member.merchant_id == merchant.id, Member.email_normalized == normalized)
    )
    if existing:
        raise Conflict(f"a member with email {email!r} exists already ({existing})", code="member_exists")
    if password is not None:
        check_password(password)
    plain = password or (generate_password() if generate else None)
    password_hash = await hashed(plain, generated=password is None) if plain else None
    now = clock.now()
    member = Member(
        id=new_id("mem"),
        merchant_id=merchant.id,
        email=email.strip(),
        email_normalized=normalized,
        name=name,
        username=normalized,
        password_hash=password_hash,
        locale=_locale(locale, merchant),
        created_at=now,
        updated_at=now,
    )
    session.add(member)
    await session.flush()
    if plain:
        await replace_push_hashes(session, merchant.id, member.id, password=plain)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="member.created",
        entity_kind="member",
        entity_id=member.id,
        member_id=member.id,
        after=member_snapshot(member),
    )
    return member, plain


def _locale(locale: str | None, merchant: Merchant) -> str:
    if locale and locale.lower()[:2] in ("de", "en"):
        return locale.lower()[:2]
    return str(merchant.setting("locale"))


def check_password(password: str) -> None:
    if len(password) < 10:
        raise InvalidInput("password must have at least 10 characters", param="password")
    if len(password) > 256:
        raise InvalidInput("password must have at most 256 characters", param="password")


async def update_member(
    session: AsyncSession,
    merchant: Merchant,
    member: Member,
    *,
    email: str | None,
    name: str | None,
    actor: Actor,
    locale: str | None = None,
) -> Member:
    """Change what is given (None keeps a field); ``locale`` is the member's language, de or en."""
    _require_not_deleted(member)
    if locale is not None and locale not in ("de", "en"):
        raise InvalidInput("locale must be de or en", param="locale")
    before = {**member_snapshot(member), "locale": member.locale}
    if email is not None:
        normalized = normalize_email(email)
        clash = await session.scalar(
            select(Member.id).where(
                Member.merchant_id == merchant.id,
                Member.email_normalized == normalized,
                Member.id != member.id,
            )
        )
        if clash:
            raise Conflict(f"another member has email {email!r}", code="member_exists")
        member.email, member.email_normalized, member.username = email.strip(), normalized, normalized
    if name is not None:
        member.name = name
    if locale is not None:
        member.locale = locale
    member.updated_at = clock.now()
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="member.updated",
        entity_kind="member",
        entity_id=member.id,
        member_id=member.id,
        before=before,
        after={**member_snapshot(member), "locale": member.locale},
    )
    await access_changed(session, merchant.id, member.id, "member.updated")
    return member


def _require_not_deleted(member: Member) -> None:
    if member.deleted_at is not None:
        raise Conflict(f"member {member.id} was deleted", code="member_deleted")


async def lock_member(session: AsyncSession, member: Member, reason: str | None, actor: Actor) -> Member:
    _require_not_deleted(member)
    if member.locked_at is None:
        member.locked_at, member.lock_reason, member.updated_at = clock.now(), reason, clock.now()
        record(
            session,
            merchant_id=member.merchant_id,
            actor=actor,
            action="member.locked",
            entity_kind="member",
            entity_id=member.id,
            member_id=member.id,
            after={"reason": reason},
        )
        await access_changed(session, member.merchant_id, member.id, "member.locked")
    return member


async def unlock_member(session: AsyncSession, member: Member, actor: Actor) -> Member:
    _require_not_deleted(member)
    if member.locked_at is not None:
        member.locked_at, member.lock_reason, member.updated_at = None, None, clock.now()
        record(
            session,
            merchant_id=member.merchant_id,
            actor=actor,
            action="member.unlocked",
            entity_kind="member",
            entity_id=member.id,
            member_id=member.id,
        )
        await access_changed(session, member.merchant_id, member.id, "member.unlocked")
    return member


async def set_password(
    session: AsyncSession, merchant: Merchant, member: Member, password: str | None, actor: Actor
) -> None:
    """Set the given password, or reset: the credentials job issues a new one by email."""
    _require_not_deleted(member)
    if password is None:
        record(
            session,
            merchant_id=merchant.id,
            actor=actor,
            action="member.password_reset",
            entity_kind="member",
            entity_id=member.id,
            member_id=member.id,
        )
        await send_credentials(session, merchant, member, new_password=True)
        return
    check_password(password)
    await store_password(
        session, member, await hashed(password), actor, "member.password_set", password=password
    )


async def store_password(
    session: AsyncSession,
    member: Member,
    password_hash: str,
    actor: Actor,
    action: str,
    *,
    password: str | None = None,
    push_hashes: Mapping[str, str] | None = None,
) -> None:
    """Store a new password's hash, and its htpasswd hashes for the merchant's push targets.

    Pass the plain ``password`` (and, to keep slow hashing out of the
    transaction, the ``push_hashes`` made beforehand with
    ``einlass.provisioning.hashing.precompute_push_hashes``). Without the plain
    password the member's old push hashes are dropped, so the member leaves the
    htpasswd targets until the password is set again, rather than keep working
    there with the old password.
    """
    member.password_hash, member.updated_at = password_hash, clock.now()
    await replace_push_hashes(
        session, member.merchant_id, member.id, password=password, precomputed=push_hashes
    )
    record(
        session,
        merchant_id=member.merchant_id,
        actor=actor,
        action=action,
        entity_kind="member",
        entity_id=member.id,
        member_id=member.id,
    )
    await access_changed(session, member.merchant_id, member.id, action)


def pseudonym(secret_key: str, value: str) -> str:
    digest = hmac.new(secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()[:24]
    return f"erased:{digest}"


async def erase_member(session: AsyncSession, secret_key: str, member: Member, actor: Actor) -> Member:
    """Delete a member: personal data goes, the ledger stays under a pseudonym."""
    if member.deleted_at is not None:
        return member
    now = clock.now()
    alias = pseudonym(secret_key, member.email_normalized or member.id)
    before = member_snapshot(member)
    await session.execute(
        update(Payment)
        .where(Payment.merchant_id == member.merchant_id, Payment.member_id == member.id)
        .values(customer_email=alias, customer_name=None)
    )
    member_payments = select(Payment.id).where(
        Payment.merchant_id == member.merchant_id, Payment.member_id == member.id
    )
    member_orders = select(Payment.order_id).where(
        Payment.merchant_id == member.merchant_id, Payment.member_id == member.id
    )
    email = member.email_normalized or ""
    await session.execute(
        update(Order)
        .where(
            Order.merchant_id == member.merchant_id,
            Order.id.in_(member_orders) | (func.lower(Order.customer_email) == email),
        )
        .values(customer_email=None, customer_name=None)
    )
    await session.execute(
        update(Subscription)
        .where(Subscription.merchant_id == member.merchant_id, Subscription.member_id == member.id)
        .values(customer_email=alias, customer_name=None, customer_locale=None)
    )
    member_subscriptions = select(Subscription.id).where(
        Subscription.merchant_id == member.merchant_id, Subscription.member_id == member.id
    )
    # The raw gateway requests of the member's payments and subscriptions carry the same personal data.
    fact_events = select(PaymentFact.inbox_event_id).where(PaymentFact.payment_id.in_(member_payments))
    subscription_events = select(SubscriptionFact.inbox_event_id).where(
        SubscriptionFact.subscription_id.in_(member_subscriptions)
    )
    await session.execute(
        update(InboxEvent)
        .where(
            InboxEvent.merchant_id == member.merchant_id,
            InboxEvent.payment_id.in_(member_payments)
            | InboxEvent.id.in_(fact_events)
            | InboxEvent.id.in_(subscription_events),
        )
        .values(body=b'{"erased": true}', headers={})
    )
    await redact_member_entries(session, member.merchant_id, member.id)
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.merchant_id == member.merchant_id, WebhookDelivery.member_id == member.id)
        .values(payload={"erased": True})
    )
    # Password-derived data goes too, though it is never written once the member is deleted.
    await session.execute(
        delete(MemberPushHash).where(
            MemberPushHash.merchant_id == member.merchant_id, MemberPushHash.member_id == member.id
        )
    )
    await session.execute(
        update(Grant)
        .where(Grant.member_id == member.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason="member deleted", updated_at=now)
    )
    member.email = member.email_normalized = member.name = member.username = member.password_hash = None
    member.deleted_at = member.updated_at = now
    record(
        session,
        merchant_id=member.merchant_id,
        actor=actor,
        action="member.deleted",
        entity_kind="member",
        entity_id=member.id,
        member_id=member.id,
        before={"locked": before["locked"]},
        after={"erased": True},
    )
    await access_changed(session, member.merchant_id, member.id, "member.deleted")
    return member


async def grants_of(session: AsyncSession, member: Member) -> list[Grant]:
    query = select(Grant).where(Grant.merchant_id == member.merchant_id, Grant.member_id == member.id)
    return list(await session.scalars(query.order_by(Grant.starts_at, Grant.id)))


async def grant_manually(
    session: AsyncSession,
    merchant: Merchant,
    member: Member,
    area: Area,
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    note: str | None,
    actor: Actor,
) -> Grant:
    _require_not_deleted(member)
    now = clock.now()
    starts = starts_at or now
    if ends_at is not None and ends_at <= starts:
        raise InvalidInput("ends_at must be after starts_at", param="ends_at")
    grant_id = new_id("grt")
    grant = Grant(
        id=grant_id,
        merchant_id=merchant.id,
        member_id=member.id,
        area_id=area.id,
        source_kind=GRANT_SOURCE_MANUAL,
        source_id=grant_id,
        starts_at=starts,
        ends_at=ends_at,
        note=note,
        created_at=now,
        updated_at=now,
    )
    session.add(grant)
    record(
        session,
        merchant_id=merchant.id,
        actor=actor,
        action="grant.created",
        entity_kind="grant",
        entity_id=grant.id,
        member_id=member.id,
        after={
            "area": area.slug,
            "starts_at": starts.isoformat(),
            "ends_at": ends_at and ends_at.isoformat(),
            "source": GRANT_SOURCE_MANUAL,
            "note": note,
        },
    )
    await access_changed(session, merchant.id, member.id, "grant.created")
    return grant


async def revoke_grant(
    session: AsyncSession, merchant: Merchant, grant_id: str, reason: str, actor: Actor
) -> Grant:
    grant = await session.scalar(select(Grant).where(Grant.id == grant_id, Grant.merchant_id == merchant.id))
    if grant is None:
        raise NotFound(f"no grant {grant_id!r}")
    if grant.revoked_at is None:
        grant.revoked_at, grant.revoked_reason, grant.updated_at = clock.now(), reason, clock.now()
        record(
            session,
            merchant_id=merchant.id,
            actor=actor,
            action="grant.revoked",
            entity_kind="grant",
            entity_id=grant.id,
            member_id=grant.member_id,
            after={"reason": reason},
        )
        await access_changed(session, merchant.id, grant.member_id, "grant.revoked")
    return grant


@dataclass(frozen=True)
class AreaAccess:
    area_id: str
    area_slug: str
    active: bool
    until: datetime | None


def window(grant: Grant) -> GrantWindow:
    return GrantWindow(
        area_id=grant.area_id, starts_at=grant.starts_at, ends_at=grant.ends_at, revoked_at=grant.revoked_at
    )


async def access_of(session: AsyncSession, member: Member, at: datetime | None = None) -> list[AreaAccess]:
    """The member's access per area right now, derived from grants (invariant 1)."""
    at = at or clock.now()
    windows = [window(grant) for grant in await grants_of(session, member)]
    standing = MemberStanding(locked=member.locked_at is not None, deleted=member.deleted_at is not None)
    areas = await session.scalars(
        select(Area).where(Area.merchant_id == member.merchant_id).order_by(Area.slug)
    )
    result = []
    for area in areas:
        if not any(w.area_id == area.id for w in windows):
            continue
        active = may_enter(standing, windows, area.id, at)
        result.append(
            AreaAccess(area.id, area.slug, active, access_until(windows, area.id, at) if active else None)
        )
    return result
