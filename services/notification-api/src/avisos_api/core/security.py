"""Passwords, session tokens, API keys and gateway tickets (pure functions, no I/O)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id minimum: m=19 MiB, t=2, p=1. Changing these makes existing hashes
# "need rehash", and they are upgraded at the user's next successful login.
ARGON2_MEMORY_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)

SESSION_TOKEN_BYTES = 32
API_KEY_PREFIX = "avk"
API_KEY_SECRET_BYTES = 32  # 256 bits
TICKET_AUDIENCE = "avisos-gateway"
TICKET_ISSUER = "avisos-api"
TICKET_ALGORITHM = "HS256"

SCOPES = ("events:publish", "notifications:write", "reports:read")


def hash_password(password: str, hasher: PasswordHasher = _hasher) -> str:
    return hasher.hash(password)


def verify_password(
    password_hash: str, password: str, hasher: PasswordHasher = _hasher
) -> tuple[bool, bool]:
    """Return (valid, needs_rehash)."""
    try:
        hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return True, hasher.check_needs_rehash(password_hash)


#: A valid hash to verify against when the user does not exist, so that the response
#: time does not tell whether an email is registered.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(16))


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_session_token() -> tuple[str, str]:
    """Return (token for the cookie, id to store = sha256 of it)."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    return token, sha256_hex(token)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str  # shown once
    prefix: str
    key_hash: str


def new_api_key() -> NewApiKey:
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(API_KEY_SECRET_BYTES)
    plaintext = f"{API_KEY_PREFIX}_{prefix}_{secret}"
    return NewApiKey(plaintext, prefix, sha256_hex(plaintext))


def parse_api_key(value: str) -> str | None:
    """Return the key's prefix if ``value`` has the API key shape, else None."""
    parts = value.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 8 or not parts[2]:
        return None
    return parts[1]


def mint_ticket(
    secret: str, user_id: uuid.UUID, session_id: str, ttl_secs: int, now: dt.datetime | None = None
) -> str:
    """A single-use, short-lived WebSocket ticket (see docs/architecture.md)."""
    now = now or dt.datetime.now(dt.UTC)
    claims = {
        "sub": str(user_id),
        "sid": session_id,
        "jti": secrets.token_hex(16),
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(seconds=ttl_secs)).timestamp()),
        "aud": TICKET_AUDIENCE,
        "iss": TICKET_ISSUER,
    }
    return jwt.encode(claims, secret, algorithm=TICKET_ALGORITHM)
