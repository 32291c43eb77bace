"""Web Push message encryption (RFC 8291 on RFC 8188 ``aes128gcm``), one record.

What pywebpush's ``WebPusher(...).encode()`` does through http_ece, without its per-call
overhead (a ``WebPusher`` object, deep copies, base64 decoding and point validation of the
subscription keys, cipher objects; about half of the ~0.3 ms it took per push). The work that
must stay per message stays: a fresh ephemeral P-256 key, the ECDH agreement with the
subscription's key, the HKDF derivations and AES-128-GCM. The decoded subscription keys are
cached (:class:`SubscriptionKeys`), they change only when the browser resubscribes.

Checked against http_ece's decryption in ``tests/test_ece.py`` and by the local push
service (``verify=True``) in the push tests.
"""

from __future__ import annotations

import base64
import hmac
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Record size announced in the header (RFC 8188; what pywebpush/http_ece send).
RECORD_SIZE = 4096
#: Header (16 salt + 4 rs + 1 idlen + 65 key), then one record: data, delimiter, 16-byte tag.
HEADER_BYTES = 16 + 4 + 1 + 65
MAX_PLAINTEXT_BYTES = RECORD_SIZE - 1 - 16
_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
_LAST_RECORD = b"\x02"
_CURVE = ec.SECP256R1()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


@dataclass(frozen=True)
class SubscriptionKeys:
    """A subscription's ``p256dh`` (validated point) and ``auth`` secret, decoded."""

    public_key: ec.EllipticCurvePublicKey
    public_bytes: bytes
    auth: bytes

    @classmethod
    def decode(cls, p256dh: str, auth: str) -> SubscriptionKeys:
        """Raise ValueError when the keys are malformed (the subscription is unusable)."""
        raw = _unb64url(p256dh)
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, raw)
        secret = _unb64url(auth)
        if len(secret) < 16:
            raise ValueError("auth secret shorter than 16 bytes")
        return cls(public_key, raw, secret)


class KeyCache:
    """Decoded subscription keys by (p256dh, auth), least recently used dropped first.
    Not thread-safe: use it from one thread (the event loop) and hand the keys on."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._keys: OrderedDict[tuple[str, str], SubscriptionKeys] = OrderedDict()

    def get(self, p256dh: str, auth: str) -> SubscriptionKeys:
        key = (p256dh, auth)
        found = self._keys.get(key)
        if found is not None:
            self._keys.move_to_end(key)
            return found
        found = SubscriptionKeys.decode(p256dh, auth)
        self._keys[key] = found
        if len(self._keys) > self.max_entries:
            self._keys.popitem(last=False)
        return found


def encrypt(keys: SubscriptionKeys, data: bytes) -> bytes:
    """The ``aes128gcm`` body of one push message for this subscription."""
    if len(data) > MAX_PLAINTEXT_BYTES:
        raise ValueError(f"push payload of {len(data)} bytes does not fit one record")
    ephemeral = ec.generate_private_key(_CURVE)
    as_public = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    shared = ephemeral.exchange(ec.ECDH(), keys.public_key)
    # RFC 8291 3.4: IKM = HKDF(salt=auth, ikm=ECDH, info="WebPush: info" 0 ua_pub as_pub, 32)
    prk_key = _hmac(keys.auth, shared)
    ikm = _hmac(prk_key, _KEY_INFO + keys.public_bytes + as_public + b"\x01")
    # RFC 8188 2.2/2.3: CEK and NONCE from HKDF(salt, IKM); one record, so counter 0.
    salt = os.urandom(16)
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, _CEK_INFO)[:16]
    nonce = _hmac(prk, _NONCE_INFO)[:12]
    record = AESGCM(cek).encrypt(nonce, data + _LAST_RECORD, None)
    return salt + struct.pack("!LB", RECORD_SIZE, len(as_public)) + as_public + record
