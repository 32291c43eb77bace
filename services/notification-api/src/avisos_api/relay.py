"""The outbox relay: publishes committed outbox rows to RabbitMQ.

Several relays may run at once (in every API process and/or alone): each claims a batch
with ``FOR UPDATE SKIP LOCKED``, publishes every row with publisher confirms, and marks
the rows published in the same transaction that holds the lock, so no row is published
by two relays. A row whose publish fails stays pending (its error recorded) and is
retried on the next pass: delivery is at-least-once, and every message carries the
``message_id`` consumers use to drop duplicates.

Relays wake on PostgreSQL ``NOTIFY avisos_outbox`` (sent by the transaction that wrote
the rows), and poll every ``poll_secs`` as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import asyncpg

from avisos_api.outbox import NOTIFY_CHANNEL
from avisos_common.amqp import Publisher, PublishError, connect
from avisos_common.metrics import Counter

log = logging.getLogger(__name__)

PUBLISHED = Counter("avisos_outbox_published_total", "Outbox messages published")
PUBLISH_FAILED = Counter("avisos_outbox_publish_failed_total", "Outbox publish failures")

_CLAIM_SQL = """
SELECT id, message_id, exchange, routing_key, body, headers, mandatory
FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""


class OutboxRelay:
    """Run with :meth:`run` (until cancelled); :meth:`drain_once` for one pass."""

    def __init__(
        self, dsn: str, amqp_url: str, batch_size: int = 500, poll_secs: float = 1.0
    ) -> None:
        self.dsn = dsn
        self.amqp_url = amqp_url
        self.batch_size = batch_size
        self.poll_secs = poll_secs
        self._wake = asyncio.Event()
        self._publisher: Publisher | None = None
        self._connection: Any = None
        self.ready = False

    def wake(self) -> None:
        self._wake.set()

    async def _ensure_publisher(self) -> Publisher:
        if self._publisher is None or self._publisher.channel.is_closed:
            if self._connection is None:
                self._connection = await connect(self.amqp_url)
            self._publisher = await Publisher.open(self._connection)
        return self._publisher

    async def drain_once(self, conn: asyncpg.Connection) -> int:
        """Publish pending rows until none are left; return how many were published."""
        total = 0
        while True:
            publisher = await self._ensure_publisher()
            async with conn.transaction():
                rows = await conn.fetch(_CLAIM_SQL, self.batch_size)
                if not rows:
                    return total
                done: list[int] = []
                failed: list[tuple[int, str]] = []
                # Publish concurrently and wait for every confirm; aiormq keeps the
                # channel's order, so per-queue order follows outbox order.
                results = await asyncio.gather(
                    *(self._publish(publisher, row) for row in rows), return_exceptions=True
                )
                for row, result in zip(rows, results, strict=True):
                    if isinstance(result, BaseException):
                        failed.append((row["id"], str(result)[:1000]))
                    else:
                        done.append(row["id"])
                if done:
                    await conn.execute(
                        "UPDATE outbox SET published_at = now(), attempts = attempts + 1 "
                        "WHERE id = ANY($1::bigint[])",
                        done,
                    )
                for row_id, error in failed:
                    await conn.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                        row_id,
                        error,
                    )
            PUBLISHED.inc(len(done))
            total += len(done)
            if failed:
                PUBLISH_FAILED.inc(len(failed))
                log.warning(
                    "outbox publish failed", extra={"failed": len(failed), "error": failed[0][1]}
                )
                # Drop the publisher; the next pass reconnects. Stop this pass so a broken
                # broker is not hammered.
                await self._reset_publisher()
                return total

    async def _publish(self, publisher: Publisher, row: asyncpg.Record) -> None:
        headers = row["headers"]
        if isinstance(headers, str):
            headers = json.loads(headers)
        await publisher.publish(
            row["exchange"],
            row["routing_key"],
            bytes(row["body"]),
            message_id=row["message_id"] or str(row["id"]),
            headers=headers,
            mandatory=row["mandatory"],
        )

    async def _reset_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.channel.close()

    async def run(self) -> None:
        """Relay forever: wake on NOTIFY or every ``poll_secs``; survive broker outages."""
        backoff = 0.5
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("relay cannot reach PostgreSQL", extra={"error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            try:
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                self.ready = True
                while True:
                    self._wake.clear()
                    try:
                        await self.drain_once(conn)
                        backoff = 0.5
                    except (TimeoutError, PublishError, OSError, ConnectionError) as exc:
                        log.warning("relay cannot publish", extra={"error": str(exc)})
                        await self._reset_publisher()
                        if self._connection is not None:
                            with contextlib.suppress(Exception):
                                await self._connection.close()
                            self._connection = None
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 10)
                        continue
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancellation that lands as the wake-up does, and the relay would
                    # never stop.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_secs):
                            await self._wake.wait()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay lost PostgreSQL", extra={"error": str(exc)})
                await asyncio.sleep(backoff)
            finally:
                self.ready = False
                with contextlib.suppress(Exception):
                    await conn.close()

    async def close(self) -> None:
        await self._reset_publisher()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
