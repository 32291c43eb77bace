"""Pure security helpers (no I/O)."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import jwt
import pytest
from argon2 import PasswordHasher

from avisos_api.core import security


def test_argon2id_with_owasp_parameters() -> None:
    h = security.hash_password("s3cret-password")
    assert h.startswith("$argon2id$")
    assert f"m={security.ARGON2_MEMORY_KIB},t={security.ARGON2_TIME_COST},p=1" in h
    assert security.ARGON2_MEMORY_KIB >= 19456 and security.ARGON2_TIME_COST >= 2
    assert security.verify_password(h, "s3cret-password") == (True, False)
    assert security.verify_password(h, "wrong") == (False, False)
    assert security.verify_password("not a hash", "x") == (False, False)


def test_weaker_hash_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw-pw-pw-pw")
    assert security.verify_password(weak, "pw-pw-pw-pw") == (True, True)


def test_api_key_shape_and_entropy() -> None:
    keys = {security.new_api_key().plaintext for _ in range(50)}
    assert len(keys) == 50
    new = security.new_api_key()
    assert new.plaintext.startswith("avk_")
    assert security.parse_api_key(new.plaintext) == new.prefix
    secret = new.plaintext.split("_", 2)[2]
    assert len(secret) * math.log2(64) >= 128  # base64url characters carry 6 bits
    assert new.key_hash == security.sha256_hex(new.plaintext)
    assert new.plaintext not in new.key_hash
    for bad in ("", "avk_", "xyz_12345678_abc", "avk_short_abc", "avk_12345678_"):
        assert security.parse_api_key(bad) is None


def test_ticket_claims() -> None:
    uid = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    token = security.mint_ticket("k" * 40, uid, "sid123", 30, now)
    claims = jwt.decode(
        token, "k" * 40, algorithms=["HS256"], audience="avisos-gateway", issuer="avisos-api"
    )
    assert claims["sub"] == str(uid) and claims["sid"] == "sid123"
    assert claims["exp"] - claims["iat"] == 30
    assert len(claims["jti"]) == 32
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "other" * 10, algorithms=["HS256"], audience="avisos-gateway")


def test_session_tokens_are_random_and_stored_hashed() -> None:
    t1, sid1 = security.new_session_token()
    t2, _ = security.new_session_token()
    assert t1 != t2 and sid1 == security.sha256_hex(t1) and t1 not in sid1
