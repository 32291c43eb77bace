"""Read-only PostgreSQL access: replay, unread counts, user state.

The gateway never writes the database (writes go through the API's internal endpoints);
in production it can use a role with SELECT on ``notifications`` and ``users`` only.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from avisos_common.messages import PRIORITIES, NotificationPayload, UnreadCount

_REPLAY_SQL = """
SELECT id, seq, recipient_id, type, category, subject, message, priority, data,
       action_url, source_event_id, created_at, updated_at, read_at, archived_at
FROM notifications
WHERE recipient_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3
"""
_MAX_SEQ_SQL = "SELECT coalesce(max(seq), 0) FROM notifications WHERE recipient_id = $1"
_UNREAD_SQL = """
SELECT priority, count(*) FROM notifications
WHERE recipient_id = $1 AND read_at IS NULL AND archived_at IS NULL
GROUP BY priority
"""
_ACTIVE_SQL = "SELECT is_active FROM users WHERE id = $1"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Store:
    """Queries on a small asyncpg pool. Create with :meth:`open`, end with :meth:`close`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, *, max_size: int = 10) -> Store:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            init=_init_connection,
            # Read-only by construction, not by convention.
            server_settings={
                "default_transaction_read_only": "on",
                "application_name": "avisos-gateway",
            },
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def user_is_active(self, user_id: uuid.UUID) -> bool:
        value = await self.pool.fetchval(_ACTIVE_SQL, user_id)
        return bool(value)

    async def max_seq(self, user_id: uuid.UUID) -> int:
        return int(await self.pool.fetchval(_MAX_SEQ_SQL, user_id))

    async def replay(self, user_id: uuid.UUID, after: int, limit: int) -> list[NotificationPayload]:
        """Up to ``limit`` notifications with ``seq > after``, in ``seq`` order."""
        rows = await self.pool.fetch(_REPLAY_SQL, user_id, after, limit)
        return [NotificationPayload.model_validate(_row_dict(r)) for r in rows]

    async def unread(self, user_id: uuid.UUID) -> UnreadCount:
        rows = await self.pool.fetch(_UNREAD_SQL, user_id)
        by_priority: dict[Any, int] = dict.fromkeys(PRIORITIES, 0)
        for priority, count in rows:
            if priority in by_priority:
                by_priority[priority] = int(count)
        return UnreadCount(total=sum(by_priority.values()), by_priority=by_priority)


def _row_dict(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    if out.get("data") is None:
        out["data"] = {}
    return out
