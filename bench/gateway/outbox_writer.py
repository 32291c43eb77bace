"""Commits notifications to PostgreSQL the way the notification API does, for the
commit -> socket latency phase of the gateway benchmark.

One transaction per tick holds, for each notification due in that tick (distinct users):
the user's next ``seq`` taken from ``users.notification_seq`` (the API's ``allocate_seqs``
statement, rows locked in id order), a ``notifications`` row, an ``outbox`` row carrying
the ``NotificationCreated`` JSON for ``avisos.realtime`` with ``mandatory = false`` (the
API's ``outbox.add_realtime``), and ``NOTIFY avisos_outbox`` (the API's
``outbox.notify_relays``). Publishing is left to the outbox relay of a real API process.

Plain SQL over asyncpg instead of the API's SQLAlchemy session, and up to
``WRITER_CONNECTIONS`` transactions at once, so that on a 2-core machine the writer is not
what limits the rate. Not done here, unlike the API: the unread
count query (a fixed count is announced) and the idempotency/request bookkeeping; neither
is between the commit and the socket.

The caller must sync ``users.notification_seq`` with any seqs it announced on the bus
itself (:meth:`CommitFeed.sync_seqs`), or the gateway would drop the committed
notifications as duplicates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from avisos_common.messages import (
    PRIORITIES,
    NotificationCreated,
    NotificationPayload,
    UnreadCount,
)
from avisos_common.topology import EXCHANGE_REALTIME

#: Writer tick: one transaction per tick for the notifications due in it.
TICK_SECS = 0.01
#: Transactions in flight at once. A tick's transaction is 6 round trips (BEGIN, seqs,
#: two inserts, NOTIFY, COMMIT), which on a loaded 2-core machine can take longer than a
#: tick; ticks overlap on separate connections, as concurrent API requests do.
WRITER_CONNECTIONS = 4
#: The API's NOTIFY channel (avisos_api.outbox.NOTIFY_CHANNEL).
NOTIFY_CHANNEL = "avisos_outbox"

# avisos_api.services.notifications.allocate_seqs, verbatim but for the parameter style
# (FOR NO KEY UPDATE since commit 8e5d444; the runs recorded before it used FOR UPDATE,
# which makes no difference here: the writer's transactions never share a user).
_ALLOCATE_SQL = """
UPDATE users SET notification_seq = notification_seq + 1
WHERE id IN (
    SELECT id FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
)
RETURNING id, notification_seq
"""
# Columns as in migrations/versions/0001_foundation.py; read/archived/updated stay NULL.
_INSERT_NOTIFICATIONS_SQL = """
INSERT INTO notifications
    (id, recipient_id, seq, type, category, subject, message, priority, data,
     action_url, source_event_id, created_at)
SELECT t.id, t.recipient_id, t.seq, $4, $5, $6, $7, $8, t.data::jsonb, NULL, NULL, $9
FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $10::text[])
    AS t(id, recipient_id, seq, data)
"""
# What outbox.add() stores for add_realtime(): routing key "", no request-id header here
# (no request), mandatory false, attempts 0; created_at is the column default now().
_INSERT_OUTBOX_SQL = """
INSERT INTO outbox (message_id, exchange, routing_key, body, headers, mandatory, attempts)
SELECT t.message_id, $3, '', t.body, '{}'::jsonb, false, 0
FROM unnest($1::text[], $2::bytea[]) AS t(message_id, body)
"""
_SYNC_SEQS_SQL = """
UPDATE users SET notification_seq = t.seq
FROM unnest($1::uuid[], $2::bigint[]) AS t(id, seq)
WHERE users.id = t.id
"""

TYPE = "stock.low"
CATEGORY = "inventory"
SUBJECT = "Stock bajo: SKU-123 en Tienda 7"
MESSAGE = "Quedan 3 unidades (mínimo 10)."
PRIORITY = "normal"


async def open_pool(dsn: str) -> asyncpg.Pool:
    """The writer's connections; the caller closes the pool."""
    return await asyncpg.create_pool(
        dsn,
        min_size=WRITER_CONNECTIONS,
        max_size=WRITER_CONNECTIONS,
        # asyncpg's default release resets session state in an extra round trip; the
        # writer leaves none.
        reset=_nothing_to_reset,
    )


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    return None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class CommitFeed:
    """Writes notifications round-robin over ``users`` at a fixed rate; ``seqs`` is the
    caller's per-user cursor map, kept up to date with the seqs the database handed out."""

    def __init__(
        self, pool: asyncpg.Pool, users: list[uuid.UUID], seqs: dict[uuid.UUID, int]
    ) -> None:
        self.pool = pool
        self.users = users
        self.seqs = seqs
        self.next = 0
        self.unread = UnreadCount(total=1, by_priority=dict.fromkeys(PRIORITIES, 0))
        #: Wall time of each tick's transaction (first statement -> commit returned).
        self.tx_secs: list[float] = []
        #: Stamp -> commit returned: the part of the measured latency spent before commit.
        self.stamp_to_commit_secs: list[float] = []
        #: t0 stamped in a tick's notifications -> when its commit returned (time.time()).
        self.committed_at: dict[float, float] = {}

    async def sync_seqs(self) -> None:
        """Make ``users.notification_seq`` what the caller's cursors say (after seqs were
        announced on the bus without a database row)."""
        ids = list(self.seqs)
        await self.pool.execute(_SYNC_SEQS_SQL, ids, [self.seqs[u] for u in ids])

    async def max_outbox_id(self) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))

    async def pending(self, after_id: int) -> int:
        """Outbox rows after ``after_id`` the relay has not published yet."""
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM outbox WHERE id > $1 AND published_at IS NULL", after_id
            )
        )

    async def commit_tick(self, users: list[uuid.UUID]) -> None:
        """One transaction announcing one notification to each of ``users`` (distinct)."""
        async with self.pool.acquire() as conn:
            await self._commit_tick(conn, users)

    async def _commit_tick(self, conn: asyncpg.Connection, users: list[uuid.UUID]) -> None:
        started = time.perf_counter()
        async with conn.transaction():
            rows = await conn.fetch(_ALLOCATE_SQL, users)
            # Stamped after the seq allocation, right before the rows that carry it are
            # written: the latency measured is this transaction's commit -> the socket.
            t0 = time.time()
            now = dt.datetime.now(dt.UTC)
            ids, recipients, seqs, datas, message_ids, bodies = [], [], [], [], [], []
            for r in rows:
                # asyncpg's own UUID type would be a second key beside the caller's.
                user, seq = uuid.UUID(str(r["id"])), int(r["notification_seq"])
                self.seqs[user] = seq
                data: dict[str, Any] = {"t0": t0, "sku": "SKU-123", "store": "T7"}
                payload = NotificationPayload(
                    id=uuid.uuid4(),
                    seq=seq,
                    recipient_id=user,
                    type=TYPE,
                    category=CATEGORY,
                    subject=SUBJECT,
                    message=MESSAGE,
                    priority=PRIORITY,
                    data=data,
                    created_at=now,
                )
                message = NotificationCreated(
                    user_id=user, notification=payload, unread=self.unread
                )
                ids.append(payload.id)
                recipients.append(user)
                seqs.append(seq)
                datas.append(json.dumps(data))
                message_ids.append(str(message.message_id))
                bodies.append(message.model_dump_json().encode())
            await conn.execute(
                _INSERT_NOTIFICATIONS_SQL,
                ids,
                recipients,
                seqs,
                TYPE,
                CATEGORY,
                SUBJECT,
                MESSAGE,
                PRIORITY,
                now,
                datas,
            )
            await conn.execute(_INSERT_OUTBOX_SQL, message_ids, bodies, EXCHANGE_REALTIME)
            await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        done = time.perf_counter()
        committed = time.time()
        self.committed_at[t0] = committed
        self.tx_secs.append(done - started)
        self.stamp_to_commit_secs.append(committed - t0)

    async def rate(self, per_sec: int, secs: float) -> tuple[int, float]:
        """Commit ``per_sec`` notifications a second for ``secs``; return how many were
        committed and the seconds it took (longer than ``secs`` if the writer fell behind)."""
        per_tick = max(1, round(per_sec * TICK_SECS))
        sent = 0
        start = time.monotonic()
        in_flight: set[asyncio.Task[None]] = set()
        for k in range(int(secs / TICK_SECS)):
            batch = []
            for _ in range(per_tick):
                batch.append(self.users[self.next % len(self.users)])
                self.next += 1
            if len(in_flight) >= WRITER_CONNECTIONS:
                # Every connection is busy: wait for one (the rate achieved drops).
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(self.commit_tick(batch))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += len(batch)
            delay = start + (k + 1) * TICK_SECS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*in_flight)
        return sent, time.monotonic() - start

    async def probe(self, user: uuid.UUID, timeout: float = 30.0) -> float:
        """Commit one notification to ``user`` and wait until the relay has published it:
        proves the relay is listening. Returns the seconds it took."""
        after = await self.max_outbox_id()
        started = time.monotonic()
        await self.commit_tick([user])
        while time.monotonic() - started < timeout:
            if await self.pending(after) == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.05)
        raise TimeoutError("the outbox relay did not publish the probe notification")

    async def relay_stats(self, after_id: int) -> dict[str, Any]:
        """What the relay did with the outbox rows after ``after_id``: how long rows waited
        (row's created_at = the writer's transaction start -> published_at = the start of
        the relay's claiming transaction), in how many passes, and what is still pending."""
        row = await self.pool.fetchrow(
            """
            SELECT count(*) AS rows,
                   count(*) FILTER (WHERE published_at IS NULL) AS pending,
                   count(DISTINCT published_at) AS passes,
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY extract(epoch FROM published_at - created_at)) AS wait_p50,
                   percentile_cont(0.99) WITHIN GROUP (
                       ORDER BY extract(epoch FROM published_at - created_at)) AS wait_p99,
                   max(extract(epoch FROM published_at - created_at)) AS wait_max
            FROM outbox WHERE id > $1
            """,
            after_id,
        )
        return {
            "rows": int(row["rows"]),
            "pending": int(row["pending"]),
            "relay_passes": int(row["passes"]),
            "rows_per_pass": int(row["rows"]) / max(1, int(row["passes"])),
            "outbox_wait_p50_ms": float(row["wait_p50"] or 0) * 1000,
            "outbox_wait_p99_ms": float(row["wait_p99"] or 0) * 1000,
            "outbox_wait_max_ms": float(row["wait_max"] or 0) * 1000,
        }

    def writer_stats(self) -> dict[str, float]:
        tx, stamp = self.tx_secs, self.stamp_to_commit_secs
        self.tx_secs, self.stamp_to_commit_secs = [], []
        return {
            "writer_tx_p50_ms": percentile(tx, 0.5) * 1000,
            "writer_tx_p99_ms": percentile(tx, 0.99) * 1000,
            "stamp_to_commit_p50_ms": percentile(stamp, 0.5) * 1000,
            "stamp_to_commit_p99_ms": percentile(stamp, 0.99) * 1000,
        }
