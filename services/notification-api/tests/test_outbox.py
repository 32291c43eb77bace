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


async def test_a_relay_stopped_mid_pass_hands_its_rows_back_at_once(
    own: Backing, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _write(sessions, 4)
    stuck = OutboxRelay(own.database_url, own.amqp_url, poll_secs=0.1)
    publishing = asyncio.Event()

    async def never_confirmed(*_: object) -> None:  # a broker that stopped answering
        publishing.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(stuck, "_publish", never_confirmed)
    task = asyncio.create_task(stuck.run())
    await asyncio.wait_for(publishing.wait(), 10)
    task.cancel()  # SIGTERM
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await stuck.close()
    # Its transaction ended with it: another relay takes the rows at once.
    relay = OutboxRelay(own.database_url, own.amqp_url)
    try:
        async with BusTap(own.amqp_url, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS) as tap:
            assert await _drain(relay, own.database_url) == 4
            await tap.wait_for(4)
    finally:
        await relay.close()
    assert [m.message_id for m in tap.messages] == ids


async def test_a_relay_stopped_at_any_moment_leaves_nothing_behind(
    own: Backing, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Stopped wherever it is (claiming, publishing, waiting for confirms, between passes),
    a relay stops, and what it had not marked published is published by the next one."""
    ids: list[str] = []
    async with BusTap(own.amqp_url, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS) as tap:
        for delay_secs in (0.0, 0.002, 0.01, 0.05, 0.3):
            relay = OutboxRelay(own.database_url, own.amqp_url, poll_secs=0.1)
            task = asyncio.create_task(relay.run())
            await asyncio.sleep(0.2)  # listening
            ids += await _write(sessions, 20)
            await asyncio.sleep(delay_secs)
            task.cancel()
            # It does stop (its wait for a wake-up once swallowed the cancellation at
            # times, and the relay ran on). asyncio.wait, unlike wait_for, does not wait
            # for a task that refuses to end.
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done, f"a relay cancelled after {delay_secs}s did not stop"
            await relay.close()
        relay = OutboxRelay(own.database_url, own.amqp_url)
        await _drain(relay, own.database_url)
        await relay.close()
        await tap.wait_for(len(ids))
    assert await _pending(sessions) == 0
    assert set(m.message_id for m in tap.messages) == set(ids)  # at least once each
