"""A local stand-in of Twilio's Messages API, good enough for the real ``twilio`` client.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` checks the account in the path
against HTTP basic auth (account sid + auth token), requires ``To``, ``Body`` and ``From`` or
``MessagingServiceSid``, and answers 201 with a Twilio-shaped message resource (``SM...``
sid). Errors use Twilio's JSON shape (``code``, ``message``, ``more_info``, ``status``).

``GET`` on the same path lists the account's messages newest first, filtered by ``To`` and
``From``, paged with ``PageSize``/``Page`` and ``next_page_uri`` like Twilio (the client's
``messages.list_async`` reads it).

Test controls: ``script`` is a list of planned answers consumed one per request (``500``,
``(400, 21211)``, ``(429, None, 2)`` for a Retry-After of 2 s, ``201``); numbers in
``invalid_numbers`` always get 400/21211. ``send_status_callback`` posts a status report to
the message's StatusCallback, signed like Twilio's (``X-Twilio-Signature``, using the real
``RequestValidator`` algorithm), or with a wrong signature when ``forge=True``.
``list_script`` plans the answers of list requests the same way. ``hold_response_secs``
keeps every 201 that long after the message was accepted: a sender killed meanwhile has had
its message taken without learning it (the crash window).

Runs in a background thread with its own event loop (usable from sync and async tests).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from twilio.request_validator import RequestValidator

from avisos_testkit.aioserver import ThreadedApp
from avisos_testkit.infra import free_port

ScriptItem = int | tuple[int, int | None] | tuple[int, int | None, float]


@dataclass
class SentSms:
    sid: str
    to: str
    from_: str | None
    body: str
    status_callback: str | None
    form: dict[str, str] = field(default_factory=dict)
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def resource(self, account_sid: str) -> dict[str, Any]:
        """The message as Twilio's API shows it."""
        created = self.created.strftime("%a, %d %b %Y %H:%M:%S +0000")
        return {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": "queued",
            "subresource_uris": {},
            "to": self.to,
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{self.sid}.json",
        }


def _error(status: int, code: int | None, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class TwilioStandIn:
    def __init__(self, account_sid: str | None = None, auth_token: str | None = None) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.port = free_port()
        self.messages: list[SentSms] = []
        self.requests = 0
        self.script: list[ScriptItem] = []
        self.invalid_numbers: set[str] = set()
        self.hold_response_secs = 0.0
        self.list_requests = 0
        #: Planned HTTP statuses of the next list requests (e.g. ``[503]``), one per request.
        self.list_script: list[int] = []
        self._cond = threading.Condition()
        self._server: ThreadedApp | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _authorized(self, request: web.Request, sid: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and sid == self.account_sid
        )

    async def _messages(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        with self._cond:
            self.requests += 1
            planned = self.script.pop(0) if self.script else None
        if not self._authorized(request, sid):
            return _error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.post()).items()}
        to, body = form.get("To"), form.get("Body")
        if not to or body is None:
            return _error(400, 21604, "A 'To' phone number and 'Body' are required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' phone number is required.")
        if planned is not None:
            item = planned if isinstance(planned, tuple) else (planned, None)
            status = item[0]
            if status >= 300:
                resp = _error(status, item[1], f"planned failure {status}")
                if len(item) > 2:
                    resp.headers["Retry-After"] = str(item[2])  # type: ignore[misc]
                return resp
        if to in self.invalid_numbers:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        msid = "SM" + secrets.token_hex(16)
        sms = SentSms(msid, to, form.get("From"), body, form.get("StatusCallback"), form)
        with self._cond:
            self.messages.append(sms)
            self._cond.notify_all()
        if self.hold_response_secs:
            await asyncio.sleep(self.hold_response_secs)
        return web.json_response(sms.resource(self.account_sid), status=201)

    async def _list(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        with self._cond:
            self.list_requests += 1
            planned = self.list_script.pop(0) if self.list_script else None
        if not self._authorized(request, sid):
            return _error(401, 20003, "Authenticate")
        if planned is not None and planned >= 300:
            return _error(planned, None, f"planned failure {planned}")
        query = request.query
        try:
            size = min(int(query.get("PageSize", "50")), 1000)
            page = int(query.get("Page", "0"))
        except ValueError:
            return _error(400, 20001, "Invalid PageSize or Page")
        with self._cond:
            found = [
                m
                for m in reversed(self.messages)
                if query.get("To") in (None, m.to) and query.get("From") in (None, m.from_)
            ]
        chunk = found[page * size : (page + 1) * size]
        path = f"/2010-04-01/Accounts/{sid}/Messages.json"
        filters = {k: v for k, v in query.items() if k in ("To", "From")}

        def uri(n: int) -> str:
            return f"{path}?{urllib.parse.urlencode({**filters, 'PageSize': size, 'Page': n})}"

        more = (page + 1) * size < len(found)
        return web.json_response(
            {
                "messages": [m.resource(self.account_sid) for m in chunk],
                "page": page,
                "page_size": size,
                "start": page * size,
                "end": page * size + max(len(chunk) - 1, 0),
                "uri": uri(page),
                "first_page_uri": uri(0),
                "next_page_uri": uri(page + 1) if more else None,
                "previous_page_uri": uri(page - 1) if page else None,
            }
        )

    async def await_count(self, count: int, timeout_secs: float = 20.0) -> list[SentSms]:
        """:meth:`wait_count` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_count, count, timeout_secs)

    def wait_count(self, count: int, timeout_secs: float = 20.0) -> list[SentSms]:
        deadline = time.monotonic() + timeout_secs
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.messages)}/{count} SMS after {timeout_secs}s")
                self._cond.wait(left)
            return list(self.messages)

    def status_callback_request(
        self,
        sms: SentSms,
        status: str,
        url: str | None = None,
        *,
        forge: bool = False,
        error_code: str | None = None,
    ) -> tuple[str, dict[str, str], dict[str, str]]:
        """(url, form params, headers) of a status report like Twilio sends it."""
        target = url or sms.status_callback
        assert target, "the message had no StatusCallback"
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": sms.from_ or "",
            "MessageSid": sms.sid,
            "MessageStatus": status,
            "SmsSid": sms.sid,
            "SmsStatus": status,
            "To": sms.to,
        }
        if error_code:
            params["ErrorCode"] = error_code
        token = "forged-" + secrets.token_hex(8) if forge else self.auth_token
        signature = RequestValidator(token).compute_signature(target, params)
        return target, params, {"X-Twilio-Signature": signature}

    def send_status_callback(
        self, sms: SentSms, status: str, url: str | None = None, *, forge: bool = False
    ) -> int:
        """POST a status report to the callback URL; return the HTTP status it got."""
        target, params, headers = self.status_callback_request(sms, status, url, forge=forge)
        req = urllib.request.Request(
            target, data=urllib.parse.urlencode(params).encode(), headers=headers, method="POST"
        )
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> TwilioStandIn:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._messages)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list)
        self._server = ThreadedApp(app, self.port, "twilio-standin")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> TwilioStandIn:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
