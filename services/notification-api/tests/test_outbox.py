"""The transactional outbox and its relay, against real PostgreSQL and RabbitMQ.

This module runs on its own database and vhost, with no API (and so no in-process
relay) around, so that it controls exactly which relays run."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from avisos_api import outbox
from avisos_api.core.db import make_engine, make_sessionmaker
from avisos_api.models import OutboxMessage
from avisos_api.relay import OutboxRelay
from avisos_common.messages import ReportJobRequested
from avisos_common.topology import EXCHANGE_REPORTS, ROUTING_KEY_REPORTS
from avisos_testkit.bus import BusTap
from avisos_testkit.infra import Backing, drop_backing, make_backing
from avisos_testkit.tcpproxy import TcpProxy


@pytest.fixture(scope="module")
async def own() -> AsyncIterator[Backing]:
    b = await make_backing("outbox")
    yield b
    await drop_backing(b)


@pytest.fixture(scope="module")
async def sessions(own: Backing) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(own.database_url.replace("postgresql://", "postgresql+asyncpg://"))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _write(sm: async_sessionmaker[AsyncSession], n: int, commit: bool = True) -> list[str]:
    ids = []
    async with sm() as s:
        for _ in range(n):
            msg = ReportJobRequested(job_id=uuid.uuid4(), requested_by=uuid.uuid4())
            outbox.add(s, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS, msg)
            ids.append(str(msg.message_id))
        await outbox.notify_relays(s)
        if commit:
            await s.commit()
        else:
            await s.rollback()
    return ids


async def _pending(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s:
        n = await s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
        )
    return int(n or 0)


async def _drain(relay: OutboxRelay, dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await relay.drain_once(conn)
    finally:
        await conn.close()


async def test_rolled_back_transaction_publishes_nothing(
    own: Backing, sessions: async_sessionmaker[AsyncSession]
) -> None:
    relay = OutboxRelay(own.database_url, own.amqp_url)
    async with BusTap(own.amqp_url, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS) as tap:
        await _write(sessions, 3, commit=False)
        committed = await _write(sessions, 1)
        assert await _drain(relay, own.database_url) == 1
        await tap.wait_for(1)
        await asyncio.sleep(0.2)
    await relay.close()
    assert [m.message_id for m in tap.messages] == committed


async def test_two_relays_never_publish_the_same_row(
    own: Backing, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _write(sessions, 400)
    relays = [OutboxRelay(own.database_url, own.amqp_url, batch_size=25) for _ in range(2)]
    async with BusTap(own.amqp_url, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS) as tap:
        counts = await asyncio.gather(*(_drain(r, own.database_url) for r in relays))
        await tap.wait_for(400)
        await asyncio.sleep(0.3)
    for r in relays:
        await r.close()
    assert sum(counts) == 400 and all(c > 0 for c in counts), counts
    seen = Counter(m.message_id for m in tap.messages)
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1
    assert await _pending(sessions) == 0


async def test_messages_written_while_rabbitmq_is_down_are_published_when_it_is_back(
    own: Backing, sessions: async_sessionmaker[AsyncSession]
) -> None:
    proxy = TcpProxy("127.0.0.1", 5672)  # not started: RabbitMQ is unreachable for the relay
    await proxy.start()
    port = proxy.port
    await proxy.stop()
    proxied_url = own.amqp_url.replace("127.0.0.1:5672", f"127.0.0.1:{port}")
    relay = OutboxRelay(own.database_url, proxied_url, poll_secs=0.2)
    task = asyncio.create_task(relay.run())
    try:
        async with BusTap(own.amqp_url, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS) as tap:
            ids = await _write(sessions, 50)
            await asyncio.sleep(1.0)  # the relay is trying and failing meanwhile
            assert tap.messages == []
            assert await _pending(sessions) == 50
            proxy.port = port
            await proxy.start()  # RabbitMQ is back
            await tap.wait_for(50, timeout_secs=30)
            await asyncio.sleep(0.3)
        assert Counter(m.message_id for m in tap.messages) == Counter(ids)
        assert await _pending(sessions) == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.close()
        await proxy.stop()
