"""The Web Push channel: VAPID-signed (py_vapid), aes128gcm-encrypted (pywebpush) pushes
sent over aiohttp.

One :class:`PushDelivery` goes to every subscription the user has at send time. A retry
skips the subscriptions an earlier attempt already reached (``delivery_attempts.target``).

* Encryption (ephemeral ECDH + HKDF + AES-GCM, pywebpush's ``WebPusher.encode``) takes
  ~0.25 ms of CPU. It runs in a thread pool of
  ``push_crypto_threads`` threads so the event loop keeps consuming and sending; 0 runs it
  on the event loop (the bench measured no difference either way at 500-700 pushes/s).
* The VAPID token is cached per push-service origin (``exp`` at most 24 h).
* ``TTL`` and ``Urgency`` follow the priority (:data:`PUSH_POLICY`); ``Topic`` is derived
  from the delivery id, so a copy sent again in the crash window replaces the first one at
  the push service instead of showing twice.
* 201/202: sent. 404/410: the subscription is gone and is deleted. 429 and 5xx: transient
  (``Retry-After`` honoured). 413 and other 4xx: permanent for that subscription.
* The payload stays within 4096 bytes encrypted: the body is shortened on a UTF-8
  character boundary (with an ellipsis) until the JSON fits.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from pywebpush import WebPusher, WebPushException

from avisos_common.messages import Priority, PushDelivery, utcnow
from avisos_dispatcher.base import ChannelHandler, SendResult
from avisos_dispatcher.errors import NotSent, PermanentError, TransientError, parse_retry_after
from avisos_dispatcher.handover import HandOver, undo_quietly
from avisos_dispatcher.ratelimit import RateLimited, TokenBucket
from avisos_dispatcher.settings import DispatcherSettings
from avisos_dispatcher.store import AttemptRecord, Claimed, PushTarget, Store
from avisos_dispatcher.vapid import VapidSigner

log = logging.getLogger(__name__)
PROVIDER = "webpush"
#: RFC 8291: push services must accept 4096 bytes of encrypted payload.
MAX_RECORD_BYTES = 4096
#: aes128gcm overhead in one record: header (16 salt + 4 rs + 1 idlen + 65 key),
#: 16-byte tag, 1 padding delimiter.
ECE_OVERHEAD_BYTES = 16 + 4 + 1 + 65 + 16 + 1
MAX_PLAINTEXT_BYTES = MAX_RECORD_BYTES - ECE_OVERHEAD_BYTES
ELLIPSIS = "\u2026"

#: priority -> (TTL seconds the push service keeps it for an offline device, Urgency)
PUSH_POLICY: dict[Priority, tuple[int, str]] = {
    "low": (24 * 3600, "low"),
    "normal": (12 * 3600, "normal"),
    "high": (4 * 3600, "high"),
    "critical": (24 * 3600, "high"),
}


def build_payload(msg: PushDelivery) -> bytes:
    """The JSON the service worker shows, shortened to fit one encrypted record."""
    doc: dict[str, Any] = {
        "title": msg.title[:200],
        "body": msg.body,
        "url": msg.url,
        "tag": msg.tag,
        "priority": msg.priority,
        "notification_id": str(msg.notification_id) if msg.notification_id else None,
        "delivery_id": str(msg.delivery_id),
    }
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) <= MAX_PLAINTEXT_BYTES:
        return data
    body = msg.body
    while True:
        excess = len(data) - MAX_PLAINTEXT_BYTES
        raw = body.encode()
        # Cut bytes, then drop a partial trailing character; JSON escaping can make the
        # encoded size differ from the raw one, hence the loop.
        cut = raw[: max(0, len(raw) - excess - len(ELLIPSIS.encode()))]
        body = cut.decode("utf-8", errors="ignore")
        doc["body"] = body + ELLIPSIS
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) <= MAX_PLAINTEXT_BYTES or not body:
            if len(data) > MAX_PLAINTEXT_BYTES:  # the rest alone is too large
                doc["url"] = None
                doc["title"] = doc["title"][:50]
                data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
            return data


def encrypt(target: PushTarget, data: bytes) -> bytes:
    """The aes128gcm body for one subscription (a fresh ECDH key and salt every call).
    Thread-safe: runs in the crypto pool."""
    pusher = WebPusher(
        {"endpoint": target.endpoint, "keys": {"p256dh": target.p256dh, "auth": target.auth}}
    )
    encoded = pusher.encode(data, "aes128gcm")
    return bytes(encoded["body"])


class _HandedOverBody(aiohttp.BytesPayload):
    """A push request body written as the "last bytes" of a hand-over
    (:mod:`avisos_dispatcher.handover`): the push service acts on nothing before the last
    byte of the announced Content-Length. The body (at most 4 KiB) is not split the way
    SMTP's final dot is: the headers before it are still in aiohttp's buffer and go with it."""

    def __init__(self, value: bytes, hand_over: HandOver) -> None:
        super().__init__(value, content_type="application/octet-stream")
        self.hand_over = hand_over

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        data = bytes(self._value)[:content_length]
        transport = getattr(writer, "transport", None)
        async with self.hand_over:  # may wait for a database connection: nothing sent yet
            await self.hand_over.send_last(transport, functools.partial(writer.write, data))


def _handed_over(target: PushTarget) -> AttemptRecord:
    now = utcnow()
    return AttemptRecord(
        provider=PROVIDER,
        status="sent",
        started_at=now,
        finished_at=now,
        target=str(target.id),
        error="handed to the push service before a dispatcher crash; not sent again",
    )


def topic_for(msg: PushDelivery) -> str:
    return base64.urlsafe_b64encode(msg.delivery_id.bytes).rstrip(b"=").decode()


class PushHandler(ChannelHandler[PushDelivery]):
    channel = "push"
    model = PushDelivery

    def __init__(
        self,
        store: Store,
        settings: DispatcherSettings,
        bucket: TokenBucket | None,
        *,
        max_attempts: int,
        lease_secs: float,
    ) -> None:
        super().__init__(store, max_attempts=max_attempts, lease_secs=lease_secs)
        if settings.vapid_private_key is None:
            raise RuntimeError("AVISOS_VAPID_PRIVATE_KEY is required for the push channel")
        self.settings = settings
        self.bucket = bucket
        self.signer = VapidSigner(
            settings.vapid_private_key.get_secret_value(),
            settings.vapid_subject,
            settings.vapid_token_ttl_secs,
        )
        self.pool = (
            ThreadPoolExecutor(settings.push_crypto_threads, thread_name_prefix="push-crypto")
            if settings.push_crypto_threads > 0
            else None
        )
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.push_timeout_secs),
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=100),
                # Push services set no cookies we need; skip the jar's work per response.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def send(self, msg: PushDelivery, claim: Claimed) -> SendResult:
        targets = await self.store.push_targets(msg.user_id)
        if claim.attempt > 1:
            done = await self.store.sent_targets(msg.delivery_id)
            if done:
                targets = [t for t in targets if str(t.id) not in done]
                if not targets:
                    return SendResult([], PROVIDER)
        if not targets:
            raise NotSent("user has no push subscription", provider=PROVIDER)
        # In doubt (a dispatcher died sending this): the subscriptions its pushes had
        # reached (the hand-over record) have the message; they are not sent to again.
        handed = [_handed_over(t) for t in targets if str(t.id) in claim.handed_over]
        targets = [t for t in targets if str(t.id) not in claim.handed_over]
        if not targets:
            return SendResult(handed, PROVIDER)
        payload = build_payload(msg)
        ttl, urgency = PUSH_POLICY[msg.priority]
        results = await asyncio.gather(
            *(
                self._send_one(
                    t,
                    payload,
                    ttl,
                    urgency,
                    topic_for(msg),
                    self.store.hand_over(msg.delivery_id, claim, str(t.id)),
                )
                for t in targets
            )
        )
        await self.store.push_succeeded(
            [t.id for t, (r, _) in zip(targets, results, strict=True) if r.status == "sent"]
        )
        records = handed + [r for r, _ in results]
        errors = [e for _, e in results if e is not None]
        sent = [r for r in records if r.status == "sent"]
        transient = [e for e in errors if isinstance(e, TransientError)]
        if transient:
            if sent:
                # Log the reached subscriptions now: the retry skips them.
                await self.store.log_attempts(
                    delivery_id=msg.delivery_id,
                    claim=claim,
                    channel=self.channel,
                    notification_id=msg.notification_id,
                    user_id=msg.user_id,
                    attempts=sent,
                )
            raise transient[0]
        if sent:
            # Gone or refused subscriptions appear as failed rows next to the sent ones.
            return SendResult(records, PROVIDER, sent[0].provider_message_id)
        permanent = [e for e in errors if isinstance(e, PermanentError)]
        if permanent:
            raise permanent[0]
        raise NotSent("every push subscription is gone", provider=PROVIDER)

    async def _send_one(
        self,
        target: PushTarget,
        payload: bytes,
        ttl: int,
        urgency: str,
        topic: str,
        hand_over: HandOver,
    ) -> tuple[AttemptRecord, TransientError | PermanentError | NotSent | None]:
        started = utcnow()
        record = AttemptRecord(
            provider=PROVIDER,
            status="failed",
            started_at=started,
            finished_at=started,
            target=str(target.id),
        )
        error: TransientError | PermanentError | NotSent | None = None
        try:
            if self.bucket is not None:
                await self.bucket.acquire()
            if self.pool is None:
                body = encrypt(target, payload)
            else:
                body = await asyncio.get_running_loop().run_in_executor(
                    self.pool, encrypt, target, payload
                )
            headers = {
                "Authorization": self.signer.authorization(target.endpoint),
                "Content-Encoding": "aes128gcm",
                "Content-Type": "application/octet-stream",
                "TTL": str(ttl),
                "Urgency": urgency,
                "Topic": topic,
            }
            request = self.session().post(
                target.endpoint, data=_HandedOverBody(body, hand_over), headers=headers
            )
            async with request as resp:
                if resp.status not in (200, 201, 202):
                    await undo_quietly(hand_over)  # refused: the retry may send it
                # Read (so the connection is reused), decode only for an error message.
                raw = await resp.read()
                text = raw[:300].decode("utf-8", "replace") if resp.status >= 300 else ""
                if resp.status in (200, 201, 202):
                    record.status = "sent"
                    record.provider_message_id = resp.headers.get("Location")
                elif resp.status in (404, 410):
                    await self.store.remove_push_subscription(target.id)
                    error = NotSent(
                        f"subscription gone ({resp.status}); removed", provider=PROVIDER
                    )
                elif resp.status == 429 or resp.status >= 500:
                    error = TransientError(
                        f"push service {resp.status}: {text}",
                        provider=PROVIDER,
                        retry_after_secs=parse_retry_after(resp.headers.get("Retry-After")),
                    )
                else:
                    error = PermanentError(f"push service {resp.status}: {text}", provider=PROVIDER)
        except RateLimited as exc:
            error = TransientError(str(exc), provider=PROVIDER, retry_after_secs=exc.wait_secs)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await undo_quietly(hand_over)  # no answer: the retry may send it again
            error = TransientError(
                f"push service unreachable: {type(exc).__name__}: {exc}", provider=PROVIDER
            )
        except (ValueError, WebPushException) as exc:  # malformed subscription keys
            error = PermanentError(f"invalid subscription: {exc}", provider=PROVIDER)
        record.finished_at = utcnow()
        if error is not None:
            record.error = error.reason
        return record, error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False)
