"""Unread counts: computed in PostgreSQL, served from Redis.

PostgreSQL is the truth. After every change that can move a user's count, the caller
commits and then calls :func:`refresh`, which recomputes the count from the database and
stores it, so the cached value is always the post-commit one. Reads hit Redis and fall
back to the database (and re-cache) on a miss; the TTL bounds the damage of a refresh
lost to a crash between commit and cache write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.core.cache import Cache
from avisos_common.messages import PRIORITIES, UnreadCount

_COUNT_SQL = text(
    """
    SELECT recipient_id, priority, count(*) AS n
    FROM notifications
    WHERE recipient_id = ANY(:ids) AND read_at IS NULL AND archived_at IS NULL
    GROUP BY recipient_id, priority
    """
)


def _empty() -> dict[str, int]:
    return {p: 0 for p in PRIORITIES}


def to_unread(counts: dict[str, int]) -> UnreadCount:
    by = {p: int(counts.get(p, 0)) for p in PRIORITIES}
    return UnreadCount(total=sum(by.values()), by_priority=by)  # type: ignore[arg-type]


async def compute(
    session: AsyncSession, user_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, UnreadCount]:
    ids = list(user_ids)
    raw: dict[uuid.UUID, dict[str, int]] = {uid: _empty() for uid in ids}
    if ids:
        for row in await session.execute(_COUNT_SQL, {"ids": ids}):
            raw[row.recipient_id][row.priority] = int(row.n)
    return {uid: to_unread(c) for uid, c in raw.items()}


async def store(cache: Cache, counts: dict[uuid.UUID, UnreadCount], ttl_secs: int) -> None:
    async with cache.client.pipeline(transaction=False) as pipe:
        for uid, count in counts.items():
            key = cache.unread_key(str(uid))
            pipe.hset(key, mapping={p: n for p, n in count.by_priority.items()})
            pipe.expire(key, ttl_secs)
        await pipe.execute()


async def refresh(
    session: AsyncSession, cache: Cache, user_ids: Iterable[uuid.UUID], ttl_secs: int
) -> dict[uuid.UUID, UnreadCount]:
    counts = await compute(session, user_ids)
    await store(cache, counts, ttl_secs)
    return counts


async def get(
    session: AsyncSession, cache: Cache, user_id: uuid.UUID, ttl_secs: int
) -> UnreadCount:
    cached = await cache.client.hgetall(cache.unread_key(str(user_id)))
    if cached and set(cached) >= set(PRIORITIES):
        return to_unread({str(k): int(v) for k, v in cached.items()})
    return (await refresh(session, cache, [user_id], ttl_secs))[user_id]
