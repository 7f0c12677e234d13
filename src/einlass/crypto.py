"""Secrets at rest, keyed digests and passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

_password_hash = PasswordHash((Argon2Hasher(),))
# Passwords einlass generates have about 93 bits of entropy: no attacker can
# guess them, so the work factor that protects chosen passwords buys nothing and
# would cost ~175 ms of CPU per new member. Still argon2id; the parameters are
# part of each hash, so one verify handles both.
_generated_password_hash = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))


def _derive(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()


@lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(secret_key, "einlass/secrets-at-rest")))


def encrypt_json(secret_key: str, value: dict[str, Any]) -> str:
    return _fernet(secret_key).encrypt(json.dumps(value).encode()).decode()


def decrypt_json(secret_key: str, token: str) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = json.loads(_fernet(secret_key).decrypt(token.encode()))
    except InvalidToken as error:
        raise ValueError("stored secret cannot be decrypted: was EINLASS_SECRET_KEY changed?") from error
    return decoded


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    """argon2id, for passwords people choose or receive."""
    return _password_hash.hash(password)


def hash_generated_password(password: str) -> str:
    """argon2id with a small work factor, only for passwords from ``generate_password``."""
    return _generated_password_hash.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _password_hash.verify(password, password_hash)
    except Exception:  # a malformed stored hash must read as "wrong password"
        return False


_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def generate_password(length: int = 16) -> str:
    """About 93 bits of entropy, without look-alike characters."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def generate_token(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"
