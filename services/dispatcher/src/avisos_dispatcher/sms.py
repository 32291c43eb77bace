"""The SMS channel: Twilio's Messages API through the real ``twilio`` client (async).

``AVISOS_TWILIO_BASE_URL`` replaces ``https://api.twilio.com`` (tests point it at a local
stand-in). Every message carries ``StatusCallback`` = ``AVISOS_TWILIO_STATUS_CALLBACK_URL``
so that Twilio reports delivered/undelivered/failed to the API's webhook.

Classification: 429 and 5xx and network errors are transient (429's ``Retry-After`` is
honoured: the response headers are captured per task, since the twilio exception does not
carry them); other 4xx (21211 invalid 'To', 21614 not a mobile number, 21610 opted out...)
are permanent. A number that already got ``sms_per_recipient_per_hour`` messages in the last
hour is not sent to (recorded as failed, not retried).

A claim retaken from a dispatcher that died mid-send is first looked up at Twilio
(:meth:`SmsHandler.reconcile`): if that dispatcher's message was accepted, it is recorded,
not sent again.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from avisos_common.messages import SmsDelivery, utcnow
from avisos_dispatcher.base import ChannelHandler, SendResult
from avisos_dispatcher.errors import NotSent, PermanentError, TransientError, parse_retry_after
from avisos_dispatcher.ratelimit import RateLimited, RecipientCap, TokenBucket
from avisos_dispatcher.settings import DispatcherSettings
from avisos_dispatcher.store import AttemptRecord, Claimed, Store

log = logging.getLogger(__name__)

PROVIDER = "twilio"
#: Twilio refuses bodies longer than this (characters).
MAX_BODY_CHARS = 1600
#: How far before the dead dispatcher's claim a message it sent may be dated: Twilio's
#: clock against PostgreSQL's, and its ``date_created`` has whole seconds.
RECONCILE_CLOCK_SKEW_SECS = 120
#: Messages to one number read back when looking for a dead dispatcher's send (newest
#: first; the one we look for is minutes old at most).
RECONCILE_SCAN_LIMIT = 100
_last_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "twilio_last_headers", default=None
)


class _HeaderCapturingClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Keeps the last response's headers in a context variable (one per asyncio task)."""

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        response: Response = await super().request(method, url, *args, **kwargs)
        _last_headers.set({str(k).lower(): str(v) for k, v in (response.headers or {}).items()})
        return response


def make_client(settings: DispatcherSettings) -> Client:
    if not settings.twilio_account_sid or settings.twilio_auth_token is None:
        raise RuntimeError("AVISOS_TWILIO_ACCOUNT_SID and AVISOS_TWILIO_AUTH_TOKEN are required")
    http = _HeaderCapturingClient(timeout=settings.twilio_timeout_secs)
    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        http_client=http,
    )
    client.api.base_url = settings.twilio_base_url.rstrip("/")
    return client


class SmsHandler(ChannelHandler[SmsDelivery]):
    channel = "sms"
    model = SmsDelivery

    def __init__(
        self,
        store: Store,
        settings: DispatcherSettings,
        bucket: TokenBucket | None,
        cap: RecipientCap | None,
        *,
        max_attempts: int,
        lease_secs: float,
    ) -> None:
        super().__init__(store, max_attempts=max_attempts, lease_secs=lease_secs)
        self.settings = settings
        self.bucket = bucket
        self.cap = cap
        self.client = make_client(settings)

    async def reconcile(self, msg: SmsDelivery, claim: Claimed) -> SendResult | None:
        """Find the message a dead dispatcher got Twilio to accept, if it did.

        Twilio's Messages API has no idempotency key, but it can be read back: the newest
        messages to this number (and from our sender) are listed, and one created since the
        dead claim, with our exact body, and not recorded by any other delivery is ours. It
        is recorded with its SID (so its status callbacks land on this delivery), and the
        paid SMS is not sent twice.
        """
        assert claim.in_doubt_since is not None
        started = utcnow()
        since = claim.in_doubt_since - dt.timedelta(seconds=RECONCILE_CLOCK_SKEW_SECS)
        body = msg.body[:MAX_BODY_CHARS]
        filters: dict[str, Any] = {"to": msg.to}
        if not self.settings.twilio_messaging_service_sid:
            filters["from_"] = self.settings.twilio_from
        _last_headers.set(None)
        try:
            listed = await self.client.messages.list_async(**filters, limit=RECONCILE_SCAN_LIMIT)
        except TwilioException as exc:
            # A page that cannot be fetched is a TwilioException carrying the response.
            response = exc.args[1] if len(exc.args) > 1 else None
            status = int(getattr(exc, "status", 0) or getattr(response, "status_code", 0) or 0)
            if status == 0 or status == 429 or status >= 500:
                retry = parse_retry_after((_last_headers.get() or {}).get("retry-after"), None)
                raise TransientError(
                    f"twilio could not be asked for an earlier send: {status or exc}",
                    provider=PROVIDER,
                    retry_after_secs=retry,
                ) from exc
            # Not allowed to read messages (e.g. an API key that may only send): we cannot
            # know, and not sending could lose the alert: send, as SMTP and push do.
            log.warning(
                "cannot look up earlier sends at twilio; sending again",
                extra={"delivery_id": str(msg.delivery_id), "status": status},
            )
            return None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(
                f"twilio unreachable (looking for an earlier send): {type(exc).__name__}: {exc}",
                provider=PROVIDER,
            ) from exc
        candidates = [
            m
            for m in listed
            if m.body == body
            and m.date_created is not None
            and m.date_created >= since
            and str(m.direction or "").startswith("outbound")
            and (
                not self.settings.twilio_messaging_service_sid
                or m.messaging_service_sid == self.settings.twilio_messaging_service_sid
            )
        ]
        taken = await self.store.recorded_provider_ids([str(m.sid) for m in candidates])
        mine = sorted(
            (m for m in candidates if str(m.sid) not in taken), key=lambda m: m.date_created
        )
        if not mine:
            return None
        return _sent(
            str(mine[0].sid),
            started,
            note="found at Twilio after a dispatcher crash; not sent again",
        )

    async def send(self, msg: SmsDelivery, claim: Claimed) -> SendResult:
        started = utcnow()
        if self.cap is not None and not await self.cap.allow(msg.to, str(msg.delivery_id)):
            raise NotSent(
                f"recipient cap of {self.cap.limit} SMS per hour reached", provider=PROVIDER
            )
        if self.bucket is not None:
            try:
                await self.bucket.acquire()
            except RateLimited as exc:
                raise TransientError(
                    str(exc), provider=PROVIDER, retry_after_secs=exc.wait_secs
                ) from exc
        kwargs: dict[str, Any] = {"to": msg.to, "body": msg.body[:MAX_BODY_CHARS]}
        if self.settings.twilio_messaging_service_sid:
            kwargs["messaging_service_sid"] = self.settings.twilio_messaging_service_sid
        else:
            kwargs["from_"] = self.settings.twilio_from
        if self.settings.twilio_status_callback_url:
            kwargs["status_callback"] = self.settings.twilio_status_callback_url
        _last_headers.set(None)
        try:
            created = await self.client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            raise classify(exc, _last_headers.get()) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(
                f"twilio unreachable: {type(exc).__name__}: {exc}", provider=PROVIDER
            ) from exc
        return _sent(str(created.sid), started)

    async def close(self) -> None:
        http = self.client.http_client
        if isinstance(http, AsyncTwilioHttpClient):
            await http.close()


def _sent(sid: str, started: dt.datetime, note: str | None = None) -> SendResult:
    record = AttemptRecord(
        provider=PROVIDER,
        status="sent",
        started_at=started,
        finished_at=utcnow(),
        provider_message_id=sid,
        error=note,
    )
    return SendResult([record], PROVIDER, sid)


def classify(exc: TwilioRestException, headers: dict[str, str] | None) -> Exception:
    status = int(exc.status or 0)
    detail = f"twilio {status} code {exc.code}: {exc.msg}"
    if status == 429:
        retry = parse_retry_after((headers or {}).get("retry-after"), None)
        return TransientError(detail, provider=PROVIDER, retry_after_secs=retry)
    if status >= 500 or status == 0:
        return TransientError(detail, provider=PROVIDER)
    return PermanentError(detail, provider=PROVIDER)
