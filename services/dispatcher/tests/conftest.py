"""Fixtures for the dispatcher tests: real PostgreSQL/Redis/RabbitMQ (``backing``), a real
SMTP server, the Twilio stand-in and a local push service, and an in-process dispatcher."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg  # type: ignore[import-untyped]
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dispatch_kit import DeadLetters, make_settings

from avisos_common import topology
from avisos_common.amqp import Publisher
from avisos_dispatcher.app import Dispatcher
from avisos_dispatcher.vapid import VapidKeys, generate_vapid_keys
from avisos_testkit.infra import Backing
from avisos_testkit.push_service import PushService
from avisos_testkit.smtp import SmtpSink
from avisos_testkit.twilio_standin import TwilioStandIn


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as standin:
        yield standin


@pytest.fixture(scope="session")
def push_service() -> Iterator[PushService]:
    with PushService() as service:
        yield service


@pytest.fixture(scope="session")
def vapid_keys() -> VapidKeys:
    return generate_vapid_keys()


@pytest.fixture(scope="session")
def reports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="session")
def base_settings(
    backing: Backing,
    smtp_sink: SmtpSink,
    twilio: TwilioStandIn,
    vapid_keys: VapidKeys,
    reports_dir: Path,
) -> dict[str, Any]:
    return {
        "env": "test",
        "database_url": backing.database_url,
        "amqp_url": backing.amqp_url,
        "redis_url": backing.redis_url,
        "redis_prefix": backing.redis_prefix,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_sink.port,
        "email_from": "avisos@example.test",
        "reports_dir": reports_dir,
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_from": "+15005550006",
        "twilio_base_url": twilio.base_url,
        "twilio_status_callback_url": "http://127.0.0.1:9/v1/webhooks/twilio/status",
        "vapid_private_key": vapid_keys.private_key,
        "vapid_subject": "mailto:ops@example.test",
        "retry_backoff_base_secs": 0.5,
        "claim_lease_secs": 3.0,
        "concurrency": 16,
    }


@pytest.fixture
async def run_dispatcher(
    base_settings: dict[str, Any],
) -> AsyncIterator[Callable[..., Awaitable[Dispatcher]]]:
    """Start an in-process dispatcher with setting overrides; stopped after the test."""
    started: list[Dispatcher] = []

    async def start(**overrides: Any) -> Dispatcher:
        d = Dispatcher(make_settings(base_settings, **overrides))
        await d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        await d.stop()


@pytest.fixture(scope="session")
async def db(backing: Backing) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(backing.database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def publisher(backing: Backing) -> AsyncIterator[Publisher]:
    conn = await aio_pika.connect_robust(backing.amqp_url)
    pub = await Publisher.open(conn)
    yield pub
    await conn.close()


@pytest.fixture(scope="session")
async def dead_letters(backing: Backing) -> AsyncIterator[DeadLetters]:
    conn = await aio_pika.connect_robust(backing.amqp_url)
    ch = await conn.channel()
    await topology.declare_topology(ch)
    q = await ch.declare_queue(exclusive=True, auto_delete=True)
    await q.bind(topology.EXCHANGE_DEAD, routing_key="")
    collector = DeadLetters()

    async def on_message(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        collector.messages.append(m)
        await m.ack()

    await q.consume(on_message)
    yield collector
    await conn.close()


@pytest.fixture
async def user(db: asyncpg.Pool) -> uuid.UUID:
    uid = uuid.uuid4()
    await db.execute(
        "INSERT INTO users (id, email, display_name, password_hash, roles, locale, timezone,"
        " is_active) VALUES ($1, $2, 'Test User', 'x', '{staff}', 'es', 'Europe/Madrid', true)",
        uid,
        f"{uid.hex}@example.test",
    )
    return uid
