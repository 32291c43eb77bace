"""Our RFC 8291 encryption read back by http_ece (the library pywebpush encrypts with)."""

from __future__ import annotations

import base64
import os

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from avisos_dispatcher.ece import HEADER_BYTES, RECORD_SIZE, KeyCache, SubscriptionKeys, encrypt


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _browser() -> tuple[ec.EllipticCurvePrivateKey, bytes, str, str]:
    """What a browser keeps (private key, auth) and hands out (p256dh, auth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return key, auth, _b64(public), _b64(auth)


@pytest.mark.parametrize("size", [0, 1, 200, 3993])
def test_http_ece_decrypts_what_we_encrypt(size: int) -> None:
    key, auth, p256dh, auth_b64 = _browser()
    data = os.urandom(size)
    body = encrypt(SubscriptionKeys.decode(p256dh, auth_b64), data)
    assert len(body) == HEADER_BYTES + size + 1 + 16
    assert int.from_bytes(body[16:20], "big") == RECORD_SIZE
    plain = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
    assert plain == data


def test_every_message_has_a_fresh_key_and_salt() -> None:
    _, _, p256dh, auth = _browser()
    keys = SubscriptionKeys.decode(p256dh, auth)
    a, b = encrypt(keys, b"same"), encrypt(keys, b"same")
    assert a[:16] != b[:16]  # salt
    assert a[21:HEADER_BYTES] != b[21:HEADER_BYTES]  # ephemeral public key


def test_another_subscription_cannot_decrypt() -> None:
    _, _, p256dh, auth = _browser()
    other, other_auth, _, _ = _browser()
    body = encrypt(SubscriptionKeys.decode(p256dh, auth), b"secret")
    with pytest.raises(http_ece.ECEException):
        http_ece.decrypt(body, private_key=other, auth_secret=other_auth, version="aes128gcm")


@pytest.mark.parametrize(
    ("p256dh", "auth"),
    [("not-a-point", _b64(b"x" * 16)), (_b64(b"\x04" + b"\x01" * 64), _b64(b"x" * 16))],
)
def test_malformed_keys_are_value_errors(p256dh: str, auth: str) -> None:
    with pytest.raises(ValueError):
        KeyCache().get(p256dh, auth)


def test_short_auth_secret_is_refused() -> None:
    _, _, p256dh, _ = _browser()
    with pytest.raises(ValueError, match="auth"):
        SubscriptionKeys.decode(p256dh, _b64(b"short"))


def test_key_cache_keeps_the_most_recent() -> None:
    cache = KeyCache(max_entries=2)
    subs = [_browser() for _ in range(3)]
    first = cache.get(subs[0][2], subs[0][3])
    cache.get(subs[1][2], subs[1][3])
    assert cache.get(subs[0][2], subs[0][3]) is first  # hit, now most recent
    cache.get(subs[2][2], subs[2][3])  # evicts subs[1]
    assert cache.get(subs[0][2], subs[0][3]) is first
