"""Provider rate limits and the per-recipient SMS cap, shared by every dispatcher through
Redis (so N instances together stay under a provider's limit).

* :class:`TokenBucket`: ``rate`` tokens per second, bursts up to ``burst``. A Lua script
  refills and takes atomically and returns how long to wait when empty. Tokens are taken in
  small batches (``batch``, by default what the rate allows in 50 ms, 1 to 100) and spent
  locally, so a busy dispatcher does one Redis call per batch instead of one per message.
* :class:`RecipientCap`: at most ``limit`` SMS per phone number in any rolling hour. A
  sorted set per number holds the delivery ids sent in the last hour; adding is idempotent
  per delivery id, so a retried delivery is not counted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import redis.asyncio as redis

_BUCKET_LUA = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
if granted > 0 then return {granted, '0'} end
return {0, tostring((1 - tokens) / rate)}
"""

_CAP_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local member = ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZSCORE', key, member) then return 1 end
if redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now, member)
redis.call('EXPIRE', key, window + 60)
return 1
"""

SMS_CAP_WINDOW_SECS = 3600
#: A bucket takes at once the tokens its rate gives in this time (bounds, 1 and 100): few
#: Redis calls at high rates, and little held back from other instances at low ones.
TOKEN_BATCH_WINDOW_SECS = 0.05
MAX_TOKEN_BATCH = 100


class RateLimited(Exception):
    def __init__(self, wait_secs: float) -> None:
        super().__init__(f"rate limited for {wait_secs:.2f}s")
        self.wait_secs = wait_secs


class TokenBucket:
    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate_per_sec: float,
        burst: float | None = None,
        batch: int | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.rate = rate_per_sec
        self.burst = burst if burst is not None else max(1.0, rate_per_sec)
        if batch is None:
            batch = min(MAX_TOKEN_BATCH, int(rate_per_sec * TOKEN_BATCH_WINDOW_SECS))
        self.batch = max(1, min(batch, int(self.burst)))
        self._local = 0
        self._lock = asyncio.Lock()
        self._script = client.register_script(_BUCKET_LUA)

    async def acquire(self, max_wait_secs: float = 10.0) -> None:
        """Take one token, waiting for the bucket to refill; raise :class:`RateLimited`
        if that would take longer than ``max_wait_secs`` (the caller retries later)."""
        deadline = time.monotonic() + max_wait_secs
        async with self._lock:
            while self._local <= 0:
                granted, wait = await self._script(
                    keys=[self.key],
                    args=[self.rate, self.burst, self.batch, time.time()],
                )
                self._local += int(granted)
                if self._local > 0:
                    break
                wait_secs = float(wait)
                if time.monotonic() + wait_secs > deadline:
                    raise RateLimited(wait_secs)
                await asyncio.sleep(wait_secs)
            self._local -= 1


class RecipientCap:
    def __init__(self, client: redis.Redis, prefix: str, limit: int) -> None:
        self.client = client
        self.prefix = prefix
        self.limit = limit
        self._script = client.register_script(_CAP_LUA)

    def _key(self, recipient: str) -> str:
        # Hash the number: Redis keys end up in monitoring tools; phone numbers are PII.
        digest = hashlib.sha256(recipient.encode()).hexdigest()[:32]
        return f"{self.prefix}smscap:{digest}"

    async def allow(self, recipient: str, delivery_id: str) -> bool:
        """Count this delivery against the recipient's hour; False when over the cap."""
        ok = await self._script(
            keys=[self._key(recipient)],
            args=[time.time(), SMS_CAP_WINDOW_SECS, self.limit, delivery_id],
        )
        return bool(int(ok))
