"""Staff accounts of the admin UI: passwords, TOTP second factor, lockout, server-side sessions.

The operator has no merchant and sees every tenant; a merchant's staff are
``admin`` (may change things) or ``viewer`` (reads only). A login needs the
password and a current TOTP code; a code is accepted once. After
``MAX_FAILED_LOGINS`` failures in a row the account is locked for
``LOCKOUT``, whatever is typed.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pyotp
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.audit.service import Actor, record
from einlass.crypto import (
    decrypt_json,
    encrypt_json,
    generate_password,
    hash_password,
    sha256_hex,
    verify_password,
)
from einlass.errors import Conflict, InvalidInput, NotFound
from einlass.ids import new_id
from einlass.members.service import normalize_email
from einlass.tenants.models import (
    STAFF_ROLE_OPERATOR,
    STAFF_ROLES,
    Merchant,
    StaffAccount,
    StaffSession,
)

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=2)
MIN_PASSWORD = 12
MAX_PASSWORD = 256
TOTP_ISSUER = "einlass"
_TOUCH_EVERY = timedelta(minutes=1)
_KEEP_ENDED = timedelta(days=1)
# A password nobody has: a failed lookup still costs one argon2 verification.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def staff_actor(staff: StaffAccount) -> Actor:
    return Actor("operator" if staff.role == STAFF_ROLE_OPERATOR else "admin", staff.id)


@dataclass(frozen=True)
class NewStaff:
    account: StaffAccount
    password: str  # shown once when generated
    totp_secret: str  # shown once, for the authenticator app
    totp_uri: str


def totp_uri(email: str, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def check_staff_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD} characters", param="password")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"the password may have at most {MAX_PASSWORD} characters", param="password")


async def create_staff(
    session: AsyncSession,
    secret_key: str,
    *,
    email: str,
    role: str,
    merchant: Merchant | None,
    actor: Actor,
    name: str = "",
    password: str | None = None,
    locale: str = "en",
) -> NewStaff:
    if role not in STAFF_ROLES:
        raise InvalidInput(f"role must be one of {', '.join(STAFF_ROLES)}", param="role")
    if (role == STAFF_ROLE_OPERATOR) != (merchant is None):
        raise InvalidInput("the operator has no merchant; admins and viewers need one", param="merchant")
    address = normalize_email(email)
    if "@" not in address:
        raise InvalidInput("email is not an email address", param="email")
    if await session.scalar(select(StaffAccount.id).where(StaffAccount.email == address)):
        raise Conflict(f"a staff account for {address} exists already", param="email")
    generated = password is None
    password = password if password is not None else generate_password()
    if not generated:
        check_staff_password(password)
    secret = pyotp.random_base32()
    now = clock.now()
    account = StaffAccount(
        id=new_id("stf"),
        merchant_id=merchant.id if merchant else None,
        email=address,
        name=name.strip()[:200],
        role=role,
        locale=locale if locale in ("en", "de") else "en",
        password_hash=hash_password(password),
        encrypted_totp=encrypt_json(secret_key, {"secret": secret}),
        last_totp_step=0,
        failed_logins=0,
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    record(
        session,
        merchant_id=account.merchant_id,
        actor=actor,
        action="staff.created",
        entity_kind="staff",
        entity_id=account.id,
        after={"email": address, "role": role},
    )
    return NewStaff(account, password, secret, totp_uri(address, secret))


async def list_staff(session: AsyncSession, merchant_id: str | None) -> list[StaffAccount]:
    """The merchant's staff, or with ``None`` the operator accounts."""
    query = select(StaffAccount).order_by(StaffAccount.email)
    query = query.where(
        StaffAccount.merchant_id == merchant_id if merchant_id else StaffAccount.merchant_id.is_(None)
    )
    return list(await session.scalars(query))


async def get_staff_by_email(session: AsyncSession, email: str) -> StaffAccount:
    account = await session.scalar(select(StaffAccount).where(StaffAccount.email == normalize_email(email)))
    if account is None:
        raise NotFound(f"no staff account {email!r}")
    return account


def totp_secret(secret_key: str, account: StaffAccount) -> str:
    return str(decrypt_json(secret_key, account.encrypted_totp)["secret"])


def _matching_step(secret: str, code: str, last_step: int) -> int | None:
    """The TOTP step (30 s) the code belongs to, allowing one step of clock skew, if not used yet."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(clock.now().timestamp()) // totp.interval
    for step in (now_step, now_step - 1, now_step + 1):
        if step > last_step and hmac.compare_digest(totp.at(step * totp.interval), code):
            return step
    return None


@dataclass(frozen=True)
class LoginResult:
    account: StaffAccount | None
    locked_until_minutes: int | None = None  # set when the account is locked


async def check_login(
    session: AsyncSession, secret_key: str, email: str, password: str, code: str
) -> LoginResult:
    """Password and TOTP code together; failures count towards the lockout. Commit afterwards."""
    now = clock.now()
    account = await session.scalar(
        select(StaffAccount).where(StaffAccount.email == normalize_email(email)).with_for_update()
    )
    if account is None or account.disabled_at is not None:
        verify_password(password, _DUMMY_HASH)
        return LoginResult(None)
    if account.locked_until is not None and account.locked_until > now:
        return LoginResult(None, _minutes(account.locked_until - now))
    password_ok = verify_password(password, account.password_hash)
    step = _matching_step(totp_secret(secret_key, account), code, account.last_totp_step)
    if password_ok and step is not None:
        account.failed_logins = 0
        account.locked_until = None
        account.last_totp_step = step
        account.last_login_at = now
        return LoginResult(account)
    account.failed_logins += 1
    record(
        session,
        merchant_id=account.merchant_id,
        actor=staff_actor(account),
        action="staff.login_failed",
        entity_kind="staff",
        entity_id=account.id,
        after={"failed_logins": account.failed_logins},
    )
    if account.failed_logins >= MAX_FAILED_LOGINS:
        account.failed_logins = 0
        account.locked_until = now + LOCKOUT
        record(
            session,
            merchant_id=account.merchant_id,
            actor=staff_actor(account),
            action="staff.locked_out",
            entity_kind="staff",
            entity_id=account.id,
            after={"locked_until": account.locked_until.isoformat()},
        )
        return LoginResult(None, _minutes(LOCKOUT))
    return LoginResult(None)


def _minutes(delta: timedelta) -> int:
    return max(1, -(-int(delta.total_seconds()) // 60))


@dataclass(frozen=True)
class IssuedStaffSession:
    row: StaffSession
    token: str  # for the cookie; never stored


async def start_staff_session(
    session: AsyncSession, account: StaffAccount, user_agent: str | None
) -> IssuedStaffSession:
    now = clock.now()
    await session.execute(
        delete(StaffSession).where(
            StaffSession.staff_id == account.id,
            or_(StaffSession.expires_at <= now - _KEEP_ENDED, StaffSession.revoked_at <= now - _KEEP_ENDED),
        )
    )
    token = secrets.token_urlsafe(32)
    row = StaffSession(
        id=new_id("sss"),
        staff_id=account.id,
        token_digest=sha256_hex(token),
        csrf_token=secrets.token_urlsafe(32),
        user_agent=(user_agent or "")[:300] or None,
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(row)
    record(
        session,
        merchant_id=account.merchant_id,
        actor=staff_actor(account),
        action="staff.login",
        entity_kind="staff",
        entity_id=account.id,
    )
    return IssuedStaffSession(row, token)


async def current_staff_session(
    session: AsyncSession, token: str | None
) -> tuple[StaffSession, StaffAccount] | None:
    """The live session of this cookie token and its account; None when absent, ended, idle or disabled."""
    if not token or len(token) > 128:
        return None
    now = clock.now()
    row = (
        await session.execute(
            select(StaffSession, StaffAccount)
            .join(StaffAccount, StaffAccount.id == StaffSession.staff_id)
            .where(
                StaffSession.token_digest == sha256_hex(token),
                StaffSession.revoked_at.is_(None),
                StaffSession.expires_at > now,
                StaffSession.last_seen_at > now - SESSION_IDLE,
                StaffAccount.disabled_at.is_(None),
            )
        )
    ).first()
    if row is None:
        return None
    staff_session, account = row
    if now - staff_session.last_seen_at >= _TOUCH_EVERY:
        staff_session.last_seen_at = now
    return staff_session, account


async def end_staff_session(
    session: AsyncSession, staff_session: StaffSession, account: StaffAccount
) -> None:
    if staff_session.revoked_at is None:
        staff_session.revoked_at = clock.now()
        record(
            session,
            merchant_id=account.merchant_id,
            actor=staff_actor(account),
            action="staff.logout",
            entity_kind="staff",
            entity_id=account.id,
        )


async def disable_staff(session: AsyncSession, account: StaffAccount, actor: Actor) -> None:
    now = clock.now()
    account.disabled_at = now
    account.updated_at = now
    await session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == account.id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    record(
        session,
        merchant_id=account.merchant_id,
        actor=actor,
        action="staff.disabled",
        entity_kind="staff",
        entity_id=account.id,
    )
