"""A local Web Push service: verifies VAPID and decrypts what the dispatcher sends.

``new_subscription()`` creates what a browser would (a P-256 key pair, a 16-byte auth
secret, an endpoint on this server) and returns the subscription JSON. A ``POST`` to the
endpoint must carry ``Authorization: vapid t=<JWT>,k=<public key>``: the JWT must be ES256,
signed by ``k``, with ``aud`` = this server's origin, ``exp`` in the future and at most 24 h
away, and ``sub`` a ``mailto:`` or ``https:`` URL; ``TTL`` is required and the body must
decrypt (RFC 8291 aes128gcm, with http_ece and the subscription's private key). Failures
answer 401/400 like real push services; ``gone`` subscriptions answer 410; ``script`` plans
answers (e.g. ``[500, 500]``); ``hold_response_secs`` delays every 201. What was accepted
is kept in ``received``.

``verify=False`` skips the JWT and decryption work (benchmarks that measure the sender).
Runs in a background thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from avisos_testkit.aioserver import ThreadedApp
from avisos_testkit.infra import free_port

MAX_VAPID_TTL_SECS = 24 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class PushReceived:
    subscription_id: str
    headers: dict[str, str]
    payload: dict[str, Any] | None
    size: int
    claims: dict[str, Any] | None
    #: When the whole request had arrived (time.monotonic()).
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class _Sub:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes


class PushService:
    def __init__(self, *, verify: bool = True) -> None:
        self.port = free_port()
        self.verify = verify
        self.received: list[PushReceived] = []
        self.rejected: list[tuple[int, str]] = []
        self.gone: set[str] = set()
        self.script: list[int] = []
        #: Keep every 201 this long after the push was accepted: a sender killed meanwhile
        #: has had its push taken without learning it (the crash window).
        self.hold_response_secs = 0.0
        self._subs: dict[str, _Sub] = {}
        self._cond = threading.Condition()
        self._server: ThreadedApp | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_subscription(self) -> dict[str, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        sid = uuid.uuid4().hex
        self._subs[sid] = _Sub(key, auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.origin}/push/{sid}",
            "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
        }

    @staticmethod
    def subscription_id(endpoint: str) -> str:
        return endpoint.rsplit("/", 1)[-1]

    def _check_vapid(self, header: str) -> dict[str, Any]:
        scheme, _, params = header.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("Authorization scheme must be vapid")
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        token, k = parts.get("t"), parts.get("k")
        if not token or not k:
            raise ValueError("vapid t= and k= required")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(k))
        if jwt.get_unverified_header(token).get("alg") != "ES256":
            raise ValueError("JWT must be ES256")
        claims: dict[str, Any] = jwt.decode(
            token,
            public,
            algorithms=["ES256"],
            audience=self.origin,
            options={"require": ["exp", "aud", "sub"]},
        )
        if int(claims["exp"]) > time.time() + MAX_VAPID_TTL_SECS + 60:
            raise ValueError("exp more than 24 h ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise ValueError("sub must be mailto: or https:")
        return claims

    async def _push(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        body = await request.read()
        with self._cond:
            planned = self.script.pop(0) if self.script else None
        if planned is not None and planned >= 300:
            return web.Response(status=planned, text=f"planned {planned}")
        if sid in self.gone or sid not in self._subs:
            return web.Response(status=410, text="subscription expired")
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "ttl" not in headers:
            return self._reject(400, "TTL header required")
        if len(body) > 4096:
            return self._reject(413, "payload too large")
        claims: dict[str, Any] | None = None
        payload: dict[str, Any] | None = None
        if self.verify:
            try:
                claims = self._check_vapid(headers.get("authorization", ""))
            except (ValueError, jwt.InvalidTokenError) as exc:
                return self._reject(401, f"bad VAPID: {exc}")
            if headers.get("content-encoding") != "aes128gcm":
                return self._reject(400, "Content-Encoding must be aes128gcm")
            sub = self._subs[sid]
            try:
                plain = http_ece.decrypt(
                    body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
                )
                payload = json.loads(plain)
            except Exception as exc:
                return self._reject(400, f"cannot decrypt: {exc}")
        with self._cond:
            self.received.append(PushReceived(sid, headers, payload, len(body), claims))
            self._cond.notify_all()
        if self.hold_response_secs:
            await asyncio.sleep(self.hold_response_secs)
        return web.Response(
            status=201, headers={"Location": f"{self.origin}/m/{secrets.token_hex(8)}"}
        )

    def _reject(self, status: int, why: str) -> web.Response:
        with self._cond:
            self.rejected.append((status, why))
        return web.Response(status=status, text=why)

    async def await_count(self, count: int, timeout_secs: float = 20.0) -> list[PushReceived]:
        """:meth:`wait_count` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_count, count, timeout_secs)

    def wait_count(self, count: int, timeout_secs: float = 20.0) -> list[PushReceived]:
        deadline = time.monotonic() + timeout_secs
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self.received)}/{count} pushes after {timeout_secs}s; "
                        f"rejected: {self.rejected[-3:]}"
                    )
                self._cond.wait(left)
            return list(self.received)

    def start(self) -> PushService:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/push/{sid}", self._push)
        self._server = ThreadedApp(app, self.port, "push-service")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> PushService:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
