"""Helpers for the gateway's integration tests: gateway processes, users, sessions,
tickets, notifications written to the migrated database and announced on the bus the way
the API does it (until the API exists, this is how the gateway is driven)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import jwt
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from avisos_common.amqp import Publisher
from avisos_common.amqp import connect as amqp_connect
from avisos_common.messages import (
    PRIORITIES,
    NotificationCreated,
    NotificationPayload,
    NotificationsCreated,
    Priority,
    Recipient,
    UnreadCount,
)
from avisos_common.topology import EXCHANGE_REALTIME
from avisos_testkit.infra import Backing, free_port

ORIGIN = "http://app.avisos.test"
TICKET_SECRET = "test-ticket-secret-" + "x" * 24
INTERNAL_TOKEN = "test-internal-token-" + "y" * 24


def gateway_env(backing: Backing, port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(backing.env())
    env.update(
        {
            "AVISOS_GATEWAY_PORT": str(port),
            "AVISOS_GATEWAY_HOST": "127.0.0.1",
            "AVISOS_TICKET_SECRET": TICKET_SECRET,
            "AVISOS_INTERNAL_TOKEN": INTERNAL_TOKEN,
            "AVISOS_ALLOWED_ORIGINS": ORIGIN,
            "AVISOS_LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


class GatewayProcess:
    """``python -m avisos_gateway`` as a child process."""

    def __init__(self, backing: Backing, **extra_env: str) -> None:
        self.port = free_port()
        self.env = gateway_env(backing, self.port, **extra_env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> GatewayProcess:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            [sys.executable, "-m", "avisos_gateway"], env=self.env, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {self.proc.returncode}")
                try:
                    if (await client.get(f"{self.http}/readyz")).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError("gateway not ready")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def stop(self) -> None:
        if self.proc is None:
            return
        self.terminate()
        for _ in range(200):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        self.kill()


@dataclass
class World:
    """Database, Redis and bus access for one test session."""

    backing: Backing
    pool: asyncpg.Pool
    redis: aioredis.Redis
    publisher: Publisher
    amqp: Any

    @classmethod
    async def open(cls, backing: Backing) -> World:
        pool = await asyncpg.create_pool(backing.database_url, min_size=1, max_size=8)
        red = aioredis.from_url(backing.redis_url)
        amqp = await amqp_connect(backing.amqp_url)
        publisher = await Publisher.open(amqp)
        return cls(backing, pool, red, publisher, amqp)

    async def close(self) -> None:
        await self.amqp.close()
        await self.redis.aclose()
        await self.pool.close()

    async def user(self, *, active: bool = True) -> uuid.UUID:
        uid = uuid.uuid4()
        await self.pool.execute(
            "INSERT INTO users (id, email, display_name, password_hash, roles, locale,"
            " timezone, is_active) VALUES ($1, $2, 'Test', 'x', '{staff}', 'es',"
            " 'Europe/Madrid', $3)",
            uid,
            f"{uid.hex}@avisos.test",
            active,
        )
        return uid

    async def session(self, user_id: uuid.UUID) -> str:
        sid = secrets.token_hex(32)
        await self.redis.set(
            f"{self.backing.redis_prefix}session:{sid}",
            json.dumps({"user_id": str(user_id)}),
            ex=3600,
        )
        return sid

    async def ticket(self, user_id: uuid.UUID, sid: str | None = None, **claims: Any) -> str:
        if sid is None:
            sid = await self.session(user_id)
        return mint_ticket(user_id, sid, **claims)

    async def add_notification(
        self, user_id: uuid.UUID, *, priority: Priority = "normal", subject: str = "s"
    ) -> NotificationPayload:
        """Insert a notification taking the next per-user seq, as the API does."""
        async with self.pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(
                "UPDATE users SET notification_seq = notification_seq + 1 WHERE id = $1"
                " RETURNING notification_seq",
                user_id,
            )
            row = await conn.fetchrow(
                "INSERT INTO notifications (id, recipient_id, seq, type, category, subject,"
                " message, priority, data, created_at) VALUES ($1, $2, $3, 'stock.low',"
                " 'inventory', $4, 'msg', $5, '{}'::jsonb, now()) RETURNING created_at",
                uuid.uuid4(),
                user_id,
                seq,
                subject,
                priority,
            )
            nid = await conn.fetchval(
                "SELECT id FROM notifications WHERE recipient_id=$1 AND seq=$2", user_id, seq
            )
        return NotificationPayload(
            id=nid,
            seq=seq,
            recipient_id=user_id,
            type="stock.low",
            category="inventory",
            subject=subject,
            message="msg",
            priority=priority,
            created_at=row["created_at"],
        )

    async def unread(self, user_id: uuid.UUID) -> UnreadCount:
        rows = await self.pool.fetch(
            "SELECT priority, count(*) FROM notifications WHERE recipient_id=$1 AND read_at"
            " IS NULL AND archived_at IS NULL GROUP BY priority",
            user_id,
        )
        by = dict.fromkeys(PRIORITIES, 0)
        for p, c in rows:
            by[p] = int(c)
        return UnreadCount(total=sum(by.values()), by_priority=by)  # type: ignore[arg-type]

    async def publish(self, message: Any) -> None:
        await self.publisher.publish(EXCHANGE_REALTIME, "", message, mandatory=False)

    async def notify(self, user_id: uuid.UUID, **kw: Any) -> NotificationPayload:
        """Commit a notification and announce it on avisos.realtime."""
        payload = await self.add_notification(user_id, **kw)
        unread = UnreadCount(total=1, by_priority=dict.fromkeys(PRIORITIES, 0))
        await self.publish(
            NotificationCreated(user_id=user_id, notification=payload, unread=unread)
        )
        return payload

    async def notify_many(
        self, user_ids: list[uuid.UUID], *, subject: str = "s"
    ) -> NotificationsCreated:
        """Commit one notification per user and announce them as one NotificationsCreated,
        as the API does for a notification to several people."""
        payloads = [await self.add_notification(u, subject=subject) for u in user_ids]
        message = NotificationsCreated(
            notification=payloads[0].content(),
            recipients=[
                Recipient(
                    user_id=p.recipient_id,
                    notification_id=p.id,
                    seq=p.seq,
                    unread=await self.unread(p.recipient_id),
                )
                for p in payloads
            ],
        )
        await self.publish(message)
        return message


def mint_ticket(user_id: uuid.UUID, sid: str, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": str(user_id),
        "sid": sid,
        "jti": secrets.token_hex(16),
        "iat": now,
        "exp": now + 30,
        "aud": "avisos-gateway",
        "iss": "avisos-api",
    }
    body.update(claims)
    secret = claims.pop("_secret", TICKET_SECRET)
    body.pop("_secret", None)
    return jwt.encode(body, secret, algorithm="HS256")


@dataclass
class Client:
    """A test client: a socket and the frames it received, by type."""

    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    close_code: int | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        ticket: str,
        *,
        cursor: int | None = None,
        origin: str = ORIGIN,
        **kw: Any,
    ) -> Client:
        q = f"{url}?ticket={ticket}" + (f"&cursor={cursor}" if cursor is not None else "")
        ws = await connect(q, origin=origin, compression=None, **kw)  # type: ignore[arg-type]
        client = cls(ws)
        client._task = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
        self.close_code = self.ws.close_code

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def notifications(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] in ("notification", "notification_updated")]

    async def wait_for(
        self, predicate: Any, timeout: float = 10.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; got {self.frames[-5:]}")
            await asyncio.sleep(0.01)

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.close_code

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            await self._task


def utc(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
