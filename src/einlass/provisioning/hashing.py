"""Password hashes for htpasswd files ("push hashes"), and keeping them per member.

A target's scheme key is ``"<scheme>:<cost>"``: ``"bcrypt:10"``, ``"sha512_crypt:5000"``,
``"apr1:0"``. The web server checks the hash on *every* request (nginx inside
its worker process), so the scheme and cost are a setting of the target; see
docs/provisioning.md for the trade-off and the default.

The plain password exists only while it is being set (credentials job, API,
member pages, member creation). That is when :func:`replace_push_hashes`
stores one hash for each scheme key that the merchant's enabled htpasswd
targets use. A member without a hash in a target's scheme cannot be written to
that target until the password is set again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from passlib.hash import apr_md5_crypt, bcrypt, sha512_crypt  # type: ignore[import-untyped]
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass import clock
from einlass.db.engine import Database
from einlass.provisioning.models import HTPASSWD_KINDS, MemberPushHash, ProvisioningTarget

BCRYPT = "bcrypt"
SHA512_CRYPT = "sha512_crypt"
APR1 = "apr1"


@dataclass(frozen=True)
class SchemeRule:
    default_cost: int
    min_cost: int
    max_cost: int
    what: str  # what the cost means, for error messages


# Bounds are what a web server can afford per request, not what the algorithm allows:
# bcrypt 12 already costs a few hundred ms of a worker per request.
SCHEMES: dict[str, SchemeRule] = {
    SHA512_CRYPT: SchemeRule(default_cost=5000, min_cost=1000, max_cost=50_000, what="rounds"),
    BCRYPT: SchemeRule(default_cost=5, min_cost=4, max_cost=12, what="cost (log2 rounds)"),
    APR1: SchemeRule(default_cost=0, min_cost=0, max_cost=0, what="no cost setting (use 0)"),
}
DEFAULT_SCHEME = SHA512_CRYPT
DEFAULT_SCHEME_KEY = f"{SHA512_CRYPT}:5000"
# bcrypt only reads the first 72 bytes; nginx, Apache and libxcrypt cut there too.
BCRYPT_MAX_BYTES = 72


def scheme_key(scheme: str, cost: int | None = None) -> str:
    """The checked key for a scheme and cost; ``ValueError`` with a precise message otherwise."""
    rule = SCHEMES.get(scheme)
    if rule is None:
        raise ValueError(f"unknown hash_scheme {scheme!r}; use one of {', '.join(sorted(SCHEMES))}")
    value = rule.default_cost if cost is None else cost
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"hash_cost must be an integer, not {value!r}")
    if not rule.min_cost <= value <= rule.max_cost:
        if rule.min_cost == rule.max_cost:
            raise ValueError(f"{scheme} has {rule.what}; hash_cost {value} is not allowed")
        raise ValueError(
            f"hash_cost for {scheme} is the {rule.what} and must be between "
            f"{rule.min_cost} and {rule.max_cost}, not {value}"
        )
    return f"{scheme}:{value}"


def parse_scheme_key(key: str) -> tuple[str, int]:
    scheme, _, cost = key.partition(":")
    try:
        number = int(cost)
    except ValueError:
        raise ValueError(f"bad scheme key {key!r}; expected e.g. {DEFAULT_SCHEME_KEY!r}") from None
    scheme_key(scheme, number)
    return scheme, number


def target_scheme_key(config: Mapping[str, Any]) -> str:
    """The scheme key of an htpasswd target's config (``hash_scheme``, ``hash_cost``)."""
    return scheme_key(str(config.get("hash_scheme") or DEFAULT_SCHEME), config.get("hash_cost"))


def hash_password(key: str, password: str) -> str:
    """Hash in the scheme of ``key``; CPU-bound (use :func:`hash_for_schemes` from async code)."""
    scheme, cost = parse_scheme_key(key)
    if scheme == BCRYPT:
        # $2y$ is what Apache's htpasswd writes; every crypt() that knows bcrypt reads it.
        return str(bcrypt.using(rounds=cost, ident="2y").hash(password.encode()[:BCRYPT_MAX_BYTES]))
    if scheme == SHA512_CRYPT:
        return str(sha512_crypt.using(rounds=cost).hash(password))
    return str(apr_md5_crypt.hash(password))


def verify_password(password: str, hashed: str) -> bool:
    """Check a password against an htpasswd hash of any supported scheme (tests, diagnostics)."""
    try:
        if hashed.startswith(("$2y$", "$2b$", "$2a$")):
            return bool(bcrypt.verify(password.encode()[:BCRYPT_MAX_BYTES], hashed))
        if hashed.startswith("$6$"):
            return bool(sha512_crypt.verify(password, hashed))
        if hashed.startswith("$apr1$"):
            return bool(apr_md5_crypt.verify(password, hashed))
    except ValueError:
        return False
    return False


def _hash_all(password: str, keys: list[str]) -> dict[str, str]:
    return {key: hash_password(key, password) for key in keys}


async def hash_for_schemes(password: str, keys: Iterable[str]) -> dict[str, str]:
    """One hash per scheme key, off the event loop (bcrypt takes tens of ms)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    return await asyncio.to_thread(_hash_all, password, wanted)


async def schemes_in_use(session: AsyncSession, merchant_id: str) -> list[str]:
    """The distinct scheme keys of the merchant's enabled htpasswd targets."""
    configs = await session.scalars(
        select(ProvisioningTarget.config).where(
            ProvisioningTarget.merchant_id == merchant_id,
            ProvisioningTarget.enabled.is_(True),
            ProvisioningTarget.kind.in_(HTPASSWD_KINDS),
        )
    )
    keys = set()
    for config in configs:
        try:
            keys.add(target_scheme_key(config or {}))
        except ValueError:
            continue  # a broken config shows on the target's status; it needs no hashes
    return sorted(keys)


@asynccontextmanager
async def read_only_session(db: Database) -> AsyncIterator[AsyncSession]:
    """A session for reads only; on SQLite it does not queue on the write lock."""
    async with AsyncSession(db.reader, expire_on_commit=False) as session, session.begin():
        yield session


async def precompute_push_hashes(db: Database, merchant_id: str, password: str) -> dict[str, str]:
    """The push hashes a new password needs, made before the caller's transaction opens."""
    async with read_only_session(db) as session:
        keys = await schemes_in_use(session, merchant_id)
    return await hash_for_schemes(password, keys)


async def replace_push_hashes(
    session: AsyncSession,
    merchant_id: str,
    member_id: str,
    *,
    password: str | None,
    precomputed: Mapping[str, str] | None = None,
) -> list[str]:
    """Replace the member's push hashes after a password change; returns the scheme keys stored.

    ``precomputed`` hashes (made before the transaction, to keep slow hashing
    out of it) are used where their scheme is still in use; schemes added in
    the meantime are hashed here from ``password``. Without a password, the
    old hashes are only removed: they belong to a password that is gone.
    """
    keys = await schemes_in_use(session, merchant_id)
    hashes = {key: value for key, value in (precomputed or {}).items() if key in keys}
    missing = [key for key in keys if key not in hashes]
    if missing and password is not None:
        hashes.update(await hash_for_schemes(password, missing))
    await session.execute(
        delete(MemberPushHash).where(
            MemberPushHash.merchant_id == merchant_id, MemberPushHash.member_id == member_id
        )
    )
    now = clock.now()
    for key, value in sorted(hashes.items()):
        session.add(
            MemberPushHash(
                member_id=member_id, scheme=key, merchant_id=merchant_id, hash=value, created_at=now
            )
        )
    return sorted(hashes)
