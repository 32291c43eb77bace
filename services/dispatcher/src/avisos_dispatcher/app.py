"""Wiring: settings -> store, Redis, broker -> one :class:`ChannelRunner` per channel."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import redis.asyncio as redis

from avisos_common import amqp, topology
from avisos_common.health import HealthServer
from avisos_dispatcher.base import ChannelHandler, ChannelRunner
from avisos_dispatcher.email import EmailHandler
from avisos_dispatcher.push import PushHandler
from avisos_dispatcher.ratelimit import RecipientCap, TokenBucket
from avisos_dispatcher.settings import DispatcherSettings
from avisos_dispatcher.sms import SmsHandler
from avisos_dispatcher.store import Store

log = logging.getLogger(__name__)


class Dispatcher:
    """All consumers of one dispatcher process. ``start`` then ``stop``."""

    def __init__(self, settings: DispatcherSettings) -> None:
        self.settings = settings
        self.runners: list[ChannelRunner] = []
        self.handlers: list[ChannelHandler[Any]] = []
        self.health: HealthServer | None = None

    async def start(self) -> None:
        s = self.settings
        self.store = await Store.open(s.asyncpg_dsn, s.db_pool_size)
        self.redis = redis.from_url(s.redis_url)
        self.connection = await amqp.connect(s.amqp_url)
        channel = await self.connection.channel()
        await topology.declare_topology(channel)
        await channel.close()
        prefix = s.redis_prefix
        lease = s.claim_lease_secs
        for name in s.channels:
            handler: ChannelHandler[Any]
            if name == "email":
                handler = EmailHandler(
                    self.store,
                    s,
                    TokenBucket(self.redis, f"{prefix}rl:smtp", s.rate_email_per_sec),
                    max_attempts=s.email_max_attempts,
                    lease_secs=lease,
                )
            elif name == "sms":
                handler = SmsHandler(
                    self.store,
                    s,
                    TokenBucket(self.redis, f"{prefix}rl:twilio", s.rate_sms_per_sec),
                    RecipientCap(self.redis, prefix, s.sms_per_recipient_per_hour),
                    max_attempts=s.sms_max_attempts,
                    lease_secs=lease,
                )
            else:
                handler = PushHandler(
                    self.store,
                    s,
                    TokenBucket(self.redis, f"{prefix}rl:webpush", s.rate_push_per_sec),
                    max_attempts=s.push_max_attempts,
                    lease_secs=lease,
                )
            runner = ChannelRunner(
                self.connection,
                handler,
                concurrency=s.concurrency,
                prefetch=s.prefetch,
                backoff_base_secs=s.retry_backoff_base_secs,
            )
            await runner.start()
            self.handlers.append(handler)
            self.runners.append(runner)
        if s.metrics_port:
            self.health = HealthServer(s.health_host, s.metrics_port, self.ready)
            await self.health.start()
        log.info("dispatcher started", extra={"channels": list(s.channels)})

    async def ready(self) -> bool:
        """Broker connected, every channel consuming, PostgreSQL and Redis answering."""
        if self.connection.is_closed or not self.runners:
            return False
        if not all(r.consuming for r in self.runners):
            return False
        await self.store.pool.fetchval("SELECT 1")
        await self.redis.ping()
        return True

    async def stop(self) -> None:
        if self.health is not None:
            await self.health.stop()
        for runner in self.runners:
            await runner.stop()
        for handler in self.handlers:
            close = getattr(handler, "close", None)
            if close is not None:
                await close()
        await self.connection.close()
        await self.redis.aclose()
        await self.store.close()
        log.info("dispatcher stopped")


async def run(settings: DispatcherSettings) -> None:
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await dispatcher.stop()
