"""Redis access with the configured key prefix.

Keys (``{p}`` is ``AVISOS_REDIS_PREFIX``):

* ``{p}session:{sid}``: JSON ``{user_id, csrf, expires_at}`` for a live session (TTL =
  remaining lifetime). The gateway checks it on connect.
* ``{p}unread:{user_id}``: hash ``low/normal/high/critical`` of unread counts.
* ``{p}login:{email}``: failed logins in the current window (rate limit).
* ``{p}ticket:{jti}``: consumed gateway tickets (written by the gateway).
"""

from __future__ import annotations

import redis.asyncio as redis


class Cache:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str) -> Cache:
        return cls(redis.from_url(url, decode_responses=True), prefix)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def session_key(self, sid: str) -> str:
        return self.key("session", sid)

    def unread_key(self, user_id: str) -> str:
        return self.key("unread", user_id)

    def login_key(self, email: str) -> str:
        return self.key("login", email)

    async def close(self) -> None:
        await self.client.aclose()
