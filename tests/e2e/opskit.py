"""What the operations end-to-end tests share (test_scale_out, test_shutdown,
test_compose_stack): an isolated backing per module, an operator who sets up a store with
managers over HTTP, publishers of inventory events, browsers holding gateway sockets, and
the broker/database checks that prove "exactly once".

The same :class:`Operator` and :class:`Browser` drive processes (URLs of
:class:`avisos_testkit.stack.Running`) and the compose stack (URLs through its proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg  # type: ignore[import-untyped]
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from avisos_common import topology
from avisos_common.messages import Channel
from avisos_testkit.infra import Backing, drop_backing, make_backing
from avisos_testkit.smtp import SmtpSink, _Controller, _Handler

ORIGIN = "http://ops.e2e.test"
PASSWORD = "ops-e2e-password-1"
TICKET_SECRET = "ops-e2e-ticket-secret-0123456789abcdef0123"
INTERNAL_TOKEN = "ops-e2e-internal-token-0123456789abcdef012"
#: Every queue whose messages end in an email (work queues and the retry delays).
EMAIL_QUEUES = [topology.dispatch_queue("email", lane) for lane in topology.LANES]
DELAY_QUEUES = [topology.delay_queue(s) for s in topology.RETRY_DELAYS_SECS]


def dispatch_queues(channels: Sequence[Channel]) -> list[str]:
    """The work queues (both lanes) a dispatcher consuming ``channels`` reads."""
    return [topology.dispatch_queue(ch, lane) for ch in channels for lane in topology.LANES]


@contextlib.asynccontextmanager
async def own_backing(label: str) -> AsyncIterator[Backing]:
    """A fresh migrated database, vhost and Redis prefix: no process of another test
    module can consume this module's queues."""
    backing = await make_backing(label)
    try:
        yield backing
    finally:
        await drop_backing(backing)


def service_env(backing: Backing) -> dict[str, str]:
    return {
        **backing.env(),
        "AVISOS_TICKET_SECRET": TICKET_SECRET,
        "AVISOS_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "AVISOS_ALLOWED_ORIGINS": ORIGIN,
        "AVISOS_LOG_LEVEL": "INFO",
        "AVISOS_RELAY_POLL_SECS": "0.2",
    }


def dispatcher_env(smtp_port: int, channels: Sequence[Channel] = ("email",)) -> dict[str, str]:
    """Environment of a dispatcher sending email to ``smtp_port``. For ``sms`` and ``push``
    in ``channels`` the caller adds the Twilio and VAPID settings."""
    return {
        "AVISOS_SMTP_HOST": "127.0.0.1",
        "AVISOS_SMTP_PORT": str(smtp_port),
        "AVISOS_CHANNELS": json.dumps(list(channels)),
        "AVISOS_RETRY_BACKOFF_BASE_SECS": "0.5",
        "AVISOS_CLAIM_LEASE_SECS": "10",
    }


def order_delayed(location: str, order_id: str) -> dict[str, Any]:
    """An inventory event the shipped rules send in-app and by email (priority high) to
    the managers and staff of ``location``. (Not a stock alert: those are updated in place,
    which would blur "exactly once".)"""
    return {
        "id": f"ev-{uuid.uuid4().hex[:16]}",
        "source": "erp-ops-e2e",
        "type": "order.delayed",
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "data": {
            "order_id": order_id,
            "supplier": "Lácteos del Norte",
            "location_code": location,
            "expected_at": "2026-11-28T10:00:00+01:00",
            "new_expected_at": "2026-11-30T10:00:00+01:00",
            "reason": "Huelga de transporte",
        },
    }


def start_create_admin(env: dict[str, str], email: str) -> subprocess.Popen[bytes]:
    """``avisos-admin create-admin`` in the background (it only needs the database)."""
    return subprocess.Popen(
        [sys.executable, "-m", "avisos_api.cli", "create-admin", email],
        env={**env, "AVISOS_ADMIN_PASSWORD": PASSWORD},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish_create_admin(proc: subprocess.Popen[bytes]) -> None:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")


#: Fields of a rule as read that a PUT does not take.
_RULE_READ_ONLY = frozenset({"id", "builtin_key", "created_at", "updated_at"})


@dataclass
class Operator:
    """An admin session on one API (``base_url`` ends where ``/v1`` starts)."""

    http: httpx.AsyncClient
    #: email -> id of each user this operator created
    user_ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def login(cls, base_url: str, email: str) -> Operator:
        http = httpx.AsyncClient(base_url=base_url, timeout=15)
        r = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        http.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return cls(http)

    async def location(self) -> str:
        code = f"OPS-{uuid.uuid4().hex[:6].upper()}"
        r = await self.http.post("/v1/admin/locations", json={"code": code, "name": code})
        assert r.status_code == 201, r.text
        return code

    async def manager(self, location: str) -> str:
        email = f"mgr-{uuid.uuid4().hex[:8]}@ops.e2e.avisos"
        r = await self.http.post(
            "/v1/admin/users",
            json={
                "email": email,
                "display_name": email.split("@")[0],
                "password": PASSWORD,
                "roles": ["manager"],
                "location_codes": [location],
                "locale": "es",
            },
        )
        assert r.status_code == 201, r.text
        self.user_ids[email] = r.json()["id"]
        return email

    async def set_phone(self, email: str, phone: str) -> None:
        """Give a user this operator created an E.164 phone (their SMS contact point)."""
        r = await self.http.patch(f"/v1/admin/users/{self.user_ids[email]}", json={"phone": phone})
        assert r.status_code == 200, r.text
        assert r.json()["phone"] == phone, r.text

    async def add_rule_channel(self, builtin_key: str, channel: Channel) -> list[str]:
        """Add ``channel`` to a shipped rule (PUT of the whole rule); its new channels."""
        r = await self.http.get("/v1/admin/rules")
        assert r.status_code == 200, r.text
        (rule,) = [x for x in r.json() if x["builtin_key"] == builtin_key]
        body = {k: v for k, v in rule.items() if k not in _RULE_READ_ONLY}
        body["channels"] = list(dict.fromkeys([*rule["channels"], channel]))
        r = await self.http.put(f"/v1/admin/rules/{rule['id']}", json=body)
        assert r.status_code == 200, r.text
        channels: list[str] = r.json()["channels"]
        return channels

    async def events_key(self) -> str:
        r = await self.http.post(
            "/v1/admin/api-keys", json={"name": "erp-ops", "scopes": ["events:publish"]}
        )
        assert r.status_code == 201, r.text
        key: str = r.json()["key"]
        return key

    async def close(self) -> None:
        await self.http.aclose()


async def publish(base_url: str, key: str, event: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        r = await http.post(
            "/v1/events",
            json=event,
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": f"ops-{event['id']}"},
        )
        assert r.status_code == 201, r.text  # 200 would mean "duplicate"


@dataclass
class Browser:
    """A logged-in user with one socket on one gateway, recording every frame."""

    email: str
    http: httpx.AsyncClient
    ws: ClientConnection | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def login(cls, api_url: str, email: str) -> Browser:
        http = httpx.AsyncClient(base_url=api_url, timeout=15)
        r = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        http.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return cls(email, http)

    async def open(self, ws_url: str, origin: str = ORIGIN, cursor: int | None = None) -> None:
        """Open a socket (``cursor``: resume after it, as the browser client does)."""
        r = await self.http.post("/v1/realtime/ticket")
        assert r.status_code == 200, r.text
        url = f"{ws_url}?ticket={r.json()['ticket']}"
        if cursor is not None:
            url += f"&cursor={cursor}"
        self.ws = await connect(url, origin=origin, compression=None)  # type: ignore[arg-type]
        self._reader = asyncio.create_task(self._read(self.ws))
        await self.wait_for(lambda: bool(self.of("connection_established")), "hello")

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self.frames.append(json.loads(raw))
        self.close_codes.append(ws.close_code)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    def last_cursor(self) -> int:
        return max((int(f["cursor"]) for f in self.of("notification")), default=0)

    async def reconnect(self, ws_url: str, origin: str = ORIGIN) -> None:
        """After the server closed the socket: open a new one resuming from the cursor."""
        if self._reader is not None:
            await self._reader
        hellos = len(self.of("connection_established"))
        cursor = self.last_cursor()
        r = await self.http.post("/v1/realtime/ticket")
        assert r.status_code == 200, r.text
        url = f"{ws_url}?ticket={r.json()['ticket']}&cursor={cursor}"
        self.ws = await connect(url, origin=origin, compression=None)  # type: ignore[arg-type]
        self._reader = asyncio.create_task(self._read(self.ws))
        await self.wait_for(lambda: len(self.of("connection_established")) > hellos, "hello")

    def notification_ids(self) -> list[str]:
        return [f["notification"]["id"] for f in self.of("notification")]

    async def wait_for(self, predicate: Callable[[], bool], what: str, secs: float = 30) -> None:
        deadline = time.monotonic() + secs
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.email}: no {what}; last frames {self.frames[-3:]}")
            await asyncio.sleep(0.02)

    def source_event_ids(self) -> list[str | None]:
        return [f["notification"].get("source_event_id") for f in self.of("notification")]

    async def wait_for_event(self, event_id: str, secs: float = 30) -> None:
        """Until a notification made from inventory event ``event_id`` was pushed."""
        await self.wait_for(lambda: event_id in self.source_event_ids(), event_id, secs)

    async def wait_for_notifications(self, count: int, secs: float = 30) -> None:
        await self.wait_for(lambda: len(self.of("notification")) >= count, "notifications", secs)

    async def listed_ids(self) -> list[str]:
        r = await self.http.get("/v1/notifications", params={"limit": 100})
        assert r.status_code == 200, r.text
        return [n["id"] for n in r.json()["items"]]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
        await self.http.aclose()


async def queue_counts(amqp_url: str, names: list[str]) -> dict[str, tuple[int, int]]:
    """(ready messages, consumers) of each queue, by passive declare."""
    connection = await aio_pika.connect(amqp_url)
    try:
        out = {}
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                out[name] = (0, 0)  # not declared yet (no service has started)
                continue
            result = queue.declaration_result
            out[name] = (result.message_count or 0, result.consumer_count or 0)
            await channel.close()
        return out
    finally:
        await connection.close()


async def wait_consumers(
    amqp_url: str, queues: list[str], consumers: int, secs: float = 40
) -> None:
    """Until every queue has at least ``consumers`` consumers (dispatchers are ready)."""
    deadline = time.monotonic() + secs
    while True:
        counts = await queue_counts(amqp_url, queues)
        if all(c >= consumers for _, c in counts.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumers: {counts}")
        await asyncio.sleep(0.1)


async def wait_settled(
    backing: Backing, expected_deliveries: int | Mapping[Channel, int], secs: float = 60
) -> None:
    """Until the outbox is published, every delivery of each channel is recorded 'sent'
    (``expected_deliveries``: per channel; an int is for email alone) and no message of
    those channels waits in a work or retry queue: after that nothing more is sent."""
    expected: dict[Channel, int] = (
        {"email": expected_deliveries}
        if isinstance(expected_deliveries, int)
        else dict(expected_deliveries)
    )
    deadline = time.monotonic() + secs
    conn = await asyncpg.connect(backing.database_url)
    try:
        while True:
            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            rows = await conn.fetch(
                "SELECT channel, status, count(*) FROM deliveries"
                " WHERE channel = ANY($1::text[]) GROUP BY channel, status",
                list(expected),
            )
            by_status: dict[str, dict[str, int]] = {ch: {} for ch in expected}
            for r in rows:
                by_status[r["channel"]][r["status"]] = r["count"]
            queues = await queue_counts(
                backing.amqp_url, dispatch_queues(list(expected)) + DELAY_QUEUES
            )
            waiting = sum(m for m, _ in queues.values())
            all_sent = all(
                by_status[ch] == ({"sent": n} if n else {}) for ch, n in expected.items()
            )
            if pending == 0 and all_sent and waiting == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox {pending}, deliveries {by_status}, queued {waiting}")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def duplicates(items: list[str]) -> dict[str, int]:
    return {k: n for k, n in Counter(items).items() if n > 1}


def round_robin(items: list[Any]) -> Iterator[Any]:
    while True:
        yield from items


class SlowSmtpSink(SmtpSink):
    """An SMTP sink that takes ``delay_secs`` to accept each message, so that a dispatcher
    always has sends in flight (what a graceful shutdown must finish)."""

    def __init__(self, delay_secs: float) -> None:
        super().__init__()
        self.delay_secs = delay_secs

    def up(self) -> None:
        if self._controller is None:
            handler = _SlowHandler(self, self.delay_secs)
            self._controller = _Controller(handler, hostname=self.host, port=self.port)
            self._controller.start()

    def in_flight(self, sender: str) -> int:
        """Messages from ``sender`` whose DATA arrived and are not accepted yet."""
        handler = self._controller.handler if self._controller is not None else None
        return handler.in_flight[sender] if isinstance(handler, _SlowHandler) else 0


class _SlowHandler(_Handler):
    def __init__(self, sink: SmtpSink, delay_secs: float) -> None:
        super().__init__(sink)
        self.delay_secs = delay_secs
        self.in_flight: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sender = str(envelope.mail_from)
        self.in_flight[sender] += 1
        try:
            await asyncio.sleep(self.delay_secs)
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.in_flight[sender] -= 1
