"""VAPID keys (RFC 8292) for Web Push: generation for operators, signing for the sender.

``avisos-admin vapid-keys`` prints a new pair: the private key goes into the secret
``AVISOS_VAPID_PRIVATE_KEY`` (dispatcher), the public key is the ``applicationServerKey``
browsers subscribe with (served by the API to the web app).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

#: Push services reject tokens valid for longer than this.
MAX_TOKEN_TTL_SECS = 24 * 3600
#: A cached token is renewed when less than this remains.
RENEW_MARGIN_SECS = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class VapidKeys:
    #: base64url of the raw 32-byte private scalar (secret).
    private_key: str
    #: base64url of the uncompressed P-256 point (65 bytes): the applicationServerKey.
    public_key: str


def generate_vapid_keys() -> VapidKeys:
    """A new P-256 key pair for VAPID, both halves base64url without padding."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return VapidKeys(b64url(private), b64url(public))


def audience(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


class VapidSigner:
    """Signs ``Authorization: vapid t=...,k=...`` headers, one cached token per push
    service origin (signing per message would waste an ECDSA signature each time)."""

    def __init__(self, private_key: str, subject: str, ttl_secs: int) -> None:
        if ttl_secs > MAX_TOKEN_TTL_SECS:
            raise ValueError("VAPID tokens may not be valid for more than 24 h")
        self._vapid = Vapid02.from_string(private_key)
        self.subject = subject
        self.ttl_secs = ttl_secs
        self._cache: dict[str, tuple[float, str]] = {}

    def authorization(self, endpoint: str) -> str:
        aud = audience(endpoint)
        now = time.time()
        cached = self._cache.get(aud)
        if cached is not None and cached[0] - now > min(RENEW_MARGIN_SECS, self.ttl_secs / 2):
            return cached[1]
        exp = int(now) + self.ttl_secs
        headers = self._vapid.sign({"aud": aud, "exp": exp, "sub": self.subject})
        value = str(headers["Authorization"])
        self._cache[aud] = (exp, value)
        return value


def main() -> None:
    """Print a new key pair (also reachable as ``python -m avisos_dispatcher.vapid``)."""
    keys = generate_vapid_keys()
    print(f"AVISOS_VAPID_PRIVATE_KEY={keys.private_key}")
    print(f"AVISOS_VAPID_PUBLIC_KEY={keys.public_key}")


if __name__ == "__main__":
    main()
