"""The dispatcher's SQL: the idempotency record and claim, the delivery log, push
subscriptions. Plain asyncpg (the dispatcher never imports the API's models).

Claim protocol (one row per ``delivery_id`` in ``deliveries``):

1. :meth:`Store.claim` inserts the row as ``sending`` with a fresh ``claim_token`` or, if it
   exists, takes it over only when it is ``retrying`` or a ``sending`` claim older than the
   lease (its dispatcher died). A finished row (``sent``, ``failed``...) is never claimed
   again: a redelivered message is acked without sending.
2. The sender talks to the provider.
3. :meth:`Store.finish` writes the outcome and the attempt rows in one statement, only if
   the claim token still matches, and the caller acks after it returns.

The only duplicate window is between step 2 (provider accepted) and step 3 (commit): if
the process dies there, the claim expires and the message is sent again (at-least-once).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]

Status = Literal["sent", "failed", "retrying"]
AttemptStatus = Literal["queued", "sent", "delivered", "failed", "bounced"]


@dataclass(frozen=True)
class Claimed:
    token: uuid.UUID
    #: 1 for the first try; counts every claim including retakes after a crash.
    attempt: int
    #: The claim was taken over from a dispatcher that did not finish (crash window).
    retaken: bool


@dataclass(frozen=True)
class AlreadyDone:
    status: str


@dataclass(frozen=True)
class Busy:
    """Another dispatcher holds a live claim; look again after ``retry_in_secs``."""

    retry_in_secs: float


ClaimResult = Claimed | AlreadyDone | Busy


@dataclass
class AttemptRecord:
    """One row of the delivery log."""

    provider: str | None
    status: AttemptStatus
    started_at: dt.datetime
    finished_at: dt.datetime
    provider_message_id: str | None = None
    error: str | None = None
    #: What was addressed when a delivery fans out (push: the subscription id).
    target: str | None = None

    @property
    def latency_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True)
class PushTarget:
    id: uuid.UUID
    endpoint: str
    p256dh: str
    auth: str
    extra: dict[str, Any] = field(default_factory=dict)


_CLAIM_SQL = """
INSERT INTO deliveries AS d
    (delivery_id, channel, notification_id, user_id, status, attempts, claim_token,
     claimed_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, 'sending', 1, $5, now(), now(), now())
ON CONFLICT (delivery_id) DO UPDATE
    SET status = 'sending', attempts = d.attempts + 1, claim_token = EXCLUDED.claim_token,
        claimed_at = now(), updated_at = now()
    WHERE d.status = 'retrying'
       OR (d.status = 'sending' AND d.claimed_at < now() - make_interval(secs => $6))
RETURNING d.attempts,
    -- subqueries in RETURNING see the row as it was before this statement
    (SELECT o.status FROM deliveries o WHERE o.delivery_id = $1) AS previous_status
"""

_CLAIM_STATE_SQL = """
SELECT status,
       EXTRACT(EPOCH FROM (claimed_at + make_interval(secs => $2) - now()))::float8 AS left_secs
FROM deliveries WHERE delivery_id = $1
"""

# Updates the delivery only while our claim holds, and logs the attempts either way (a send
# that lost its claim still happened and belongs in the log). One statement: atomic.
_FINISH_SQL = """
WITH upd AS (
    UPDATE deliveries
       SET status = $2, provider = COALESCE($3, provider),
           provider_message_id = COALESCE($4, provider_message_id),
           last_error = $5, claim_token = NULL, updated_at = now()
     WHERE delivery_id = $1 AND claim_token = $6
    RETURNING delivery_id
), ins AS (
    INSERT INTO delivery_attempts
        (delivery_id, channel, notification_id, user_id, provider, provider_message_id,
         status, error, attempt, started_at, finished_at, latency_ms, target)
    SELECT $1, $7, $8, $9, a.provider, a.provider_message_id, a.status, a.error, $10,
           a.started_at, a.finished_at, a.latency_ms, a.target
      FROM unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::timestamptz[],
                  $16::timestamptz[], $17::int[], $18::text[])
           AS a(provider, provider_message_id, status, error, started_at, finished_at,
                latency_ms, target)
    RETURNING 1
)
SELECT (SELECT count(*) FROM upd) AS updated, (SELECT count(*) FROM ins) AS logged
"""


_LOG_SQL = """
INSERT INTO delivery_attempts
    (delivery_id, channel, notification_id, user_id, provider, provider_message_id,
     status, error, attempt, started_at, finished_at, latency_ms, target)
SELECT $1, $2, $3, $4, a.provider, a.provider_message_id, a.status, a.error, $5,
       a.started_at, a.finished_at, a.latency_ms, a.target
  FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[],
              $11::timestamptz[], $12::int[], $13::text[])
       AS a(provider, provider_message_id, status, error, started_at, finished_at,
            latency_ms, target)
"""


def _attempt_arrays(attempts: list[AttemptRecord]) -> list[list[Any]]:
    return [
        [a.provider for a in attempts],
        [a.provider_message_id for a in attempts],
        [a.status for a in attempts],
        [a.error[:2000] if a.error else None for a in attempts],
        [a.started_at for a in attempts],
        [a.finished_at for a in attempts],
        [a.latency_ms for a in attempts],
        [a.target for a in attempts],
    ]


async def _no_session_state_to_reset(conn: asyncpg.Connection) -> None:
    """Pool release hook. asyncpg's default sends ``RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()``, a round trip on every release (two per message). The store
    never sets session state, listens, keeps cursors or takes advisory locks, so there is
    nothing to reset; asyncpg still rolls back a transaction left open before calling this."""


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, size: int = 10) -> Store:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size, reset=_no_session_state_to_reset
        )
        assert pool is not None
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def claim(
        self,
        delivery_id: uuid.UUID,
        channel: str,
        notification_id: uuid.UUID | None,
        user_id: uuid.UUID,
        lease_secs: float,
    ) -> ClaimResult:
        """Take the right to send this delivery (see the module docstring)."""
        token = uuid.uuid4()
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                _CLAIM_SQL,
                delivery_id,
                channel,
                notification_id,
                user_id,
                token,
                float(lease_secs),
            )
            if row is not None:
                return Claimed(token, int(row["attempts"]), row["previous_status"] == "sending")
            state = await conn.fetchrow(_CLAIM_STATE_SQL, delivery_id, float(lease_secs))
        if state is None:  # deleted between the two statements (user removed)
            return AlreadyDone("gone")
        if state["status"] == "sending":
            return Busy(max(0.5, float(state["left_secs"] or 0.0)))
        return AlreadyDone(str(state["status"]))

    async def finish(
        self,
        *,
        delivery_id: uuid.UUID,
        claim: Claimed,
        channel: str,
        notification_id: uuid.UUID | None,
        user_id: uuid.UUID,
        status: Status,
        attempts: list[AttemptRecord],
        provider: str | None = None,
        provider_message_id: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the outcome; True if our claim still held (False: it was taken over)."""
        row = await self.pool.fetchrow(
            _FINISH_SQL,
            delivery_id,
            status,
            provider,
            provider_message_id,
            error[:2000] if error else None,
            claim.token,
            channel,
            notification_id,
            user_id,
            claim.attempt,
            *_attempt_arrays(attempts),
        )
        assert row is not None
        return bool(row["updated"])

    async def log_attempts(
        self,
        *,
        delivery_id: uuid.UUID,
        claim: Claimed,
        channel: str,
        notification_id: uuid.UUID | None,
        user_id: uuid.UUID,
        attempts: list[AttemptRecord],
    ) -> None:
        """Add attempt rows without changing the delivery (partial progress of a fan-out)."""
        await self.pool.execute(
            _LOG_SQL,
            delivery_id,
            channel,
            notification_id,
            user_id,
            claim.attempt,
            *_attempt_arrays(attempts),
        )

    async def sent_targets(self, delivery_id: uuid.UUID) -> set[str]:
        """Targets (push subscriptions) an earlier attempt of this delivery already reached."""
        rows = await self.pool.fetch(
            "SELECT target FROM delivery_attempts WHERE delivery_id = $1 AND status = 'sent'"
            " AND target IS NOT NULL",
            delivery_id,
        )
        return {str(r["target"]) for r in rows}

    async def push_targets(self, user_id: uuid.UUID) -> list[PushTarget]:
        rows = await self.pool.fetch(
            "SELECT id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = $1",
            user_id,
        )
        return [PushTarget(r["id"], r["endpoint"], r["p256dh"], r["auth"]) for r in rows]

    async def remove_push_subscription(self, subscription_id: uuid.UUID) -> None:
        await self.pool.execute("DELETE FROM push_subscriptions WHERE id = $1", subscription_id)

    async def push_succeeded(self, subscription_ids: list[uuid.UUID]) -> None:
        if subscription_ids:
            await self.pool.execute(
                "UPDATE push_subscriptions SET last_success_at = now() WHERE id = ANY($1)",
                subscription_ids,
            )
