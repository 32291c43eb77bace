"""The dispatcher's SQL: the idempotency record and claim, the delivery log, push
subscriptions. Plain asyncpg (the dispatcher never imports the API's models).

Claim protocol (one row per ``delivery_id`` in ``deliveries``):

1. :meth:`Store.claim` inserts the row as ``sending`` with a fresh ``claim_token`` or, if it
   exists, takes it over only when it is ``retrying`` or a ``sending`` claim older than the
   lease (its dispatcher died; the row is then *in doubt*, ``in_doubt_since``, until its
   outcome is known). A finished row (``sent``, ``failed``...) is never claimed again: a
   redelivered message is acked without sending.
2. The sender talks to the provider.
3. :meth:`Store.finish` writes the outcome and the attempt rows in one statement, only if
   the claim token still matches, and the caller acks after it returns.

A process that dies between step 2 (provider accepted) and step 3 (commit) leaves a claim
that is retaken *in doubt*: the next sender first looks at the hand-over record that email
and push write as their last bytes leave (:mod:`avisos_dispatcher.handover`), or asks
Twilio (SMS), and records instead of sending again what the provider already has.

Claims, records, subscription look-ups and ``last_success_at`` updates of concurrent
deliveries are coalesced into one statement each (:mod:`avisos_dispatcher.batching`):
the same rows and the same per-delivery conditions, fewer round trips and transactions.
Each caller's statement has committed when its call returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]

from avisos_dispatcher.batching import Coalescer
from avisos_dispatcher.handover import HandOver, open_pool

log = logging.getLogger(__name__)

#: Outcome statements running at once (see Store.__init__): enough that an outcome is
#: written in the event-loop iteration its send finished in, at any concurrency we run.
FINISH_IN_FLIGHT = 64

Status = Literal["sent", "failed", "retrying"]
AttemptStatus = Literal["queued", "sent", "delivered", "failed", "bounced"]


@dataclass(frozen=True)
class Claimed:
    token: uuid.UUID
    #: 1 for the first try; counts every claim including retakes after a crash.
    attempt: int
    #: Set once a claim of this delivery was taken over from a dispatcher that died
    #: holding it: when that dispatcher claimed it. It may have sent the message before it
    #: died (the crash window), so every later attempt first asks a provider that can be
    #: asked (ChannelHandler.reconcile). Kept through retries until the outcome is known.
    in_doubt_since: dt.datetime | None = None
    #: Where the dead dispatcher's last bytes went (:class:`HandOver`): the SMTP relay or
    #: the push subscriptions that have the message.
    handed_over: tuple[str, ...] = ()

    @property
    def retaken(self) -> bool:
        return self.in_doubt_since is not None


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
        claimed_at = now(), updated_at = now(),
        -- taking over an expired 'sending' claim: its holder died, maybe after the send
        in_doubt_since = CASE WHEN d.status = 'sending'
                              THEN COALESCE(d.in_doubt_since, d.claimed_at)
                              ELSE d.in_doubt_since END
    WHERE d.status = 'retrying'
       OR (d.status = 'sending' AND d.claimed_at < now() - make_interval(secs => $6))
RETURNING d.attempts, d.in_doubt_since, d.handed_over
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
           last_error = $5, claim_token = NULL, handed_over = NULL, updated_at = now()
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


# The batched forms: the same statements over arrays, one row per delivery. Where two
# batches could want the same rows (duplicate deliveries, one user's subscriptions), rows
# are locked in id order so that they cannot deadlock.
_CLAIM_BATCH_SQL = """
INSERT INTO deliveries AS d
    (delivery_id, channel, notification_id, user_id, status, attempts, claim_token,
     claimed_at, created_at, updated_at)
SELECT i.delivery_id, i.channel, i.notification_id, i.user_id, 'sending', 1, i.token,
       now(), now(), now()
  FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[])
       AS i(delivery_id, channel, notification_id, user_id, token)
 ORDER BY i.delivery_id
ON CONFLICT (delivery_id) DO UPDATE
    SET status = 'sending', attempts = d.attempts + 1, claim_token = EXCLUDED.claim_token,
        claimed_at = now(), updated_at = now(),
        in_doubt_since = CASE WHEN d.status = 'sending'
                              THEN COALESCE(d.in_doubt_since, d.claimed_at)
                              ELSE d.in_doubt_since END
    WHERE d.status = 'retrying'
       OR (d.status = 'sending' AND d.claimed_at < now() - make_interval(secs => $6))
RETURNING d.delivery_id, d.attempts, d.in_doubt_since, d.handed_over
"""

_CLAIM_STATE_BATCH_SQL = """
SELECT delivery_id, status,
       EXTRACT(EPOCH FROM (claimed_at + make_interval(secs => $2) - now()))::float8 AS left_secs
FROM deliveries WHERE delivery_id = ANY($1::uuid[])
"""

_FINISH_BATCH_SQL = """
WITH i AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::uuid[])
           AS i(delivery_id, status, provider, provider_message_id, error, token)
), upd AS (
    -- Only rows whose claim token is ours match, and a token is held by one caller: two
    -- batches never wait for each other's rows here.
    UPDATE deliveries AS d
       SET status = i.status, provider = COALESCE(i.provider, d.provider),
           provider_message_id = COALESCE(i.provider_message_id, d.provider_message_id),
           last_error = i.error, claim_token = NULL, handed_over = NULL, updated_at = now()
      FROM i
     WHERE d.delivery_id = i.delivery_id AND d.claim_token = i.token
    RETURNING d.delivery_id
), ins AS (
    INSERT INTO delivery_attempts
        (delivery_id, channel, notification_id, user_id, attempt, provider,
         provider_message_id, status, error, started_at, finished_at, latency_ms, target)
    SELECT * FROM unnest($7::uuid[], $8::text[], $9::uuid[], $10::uuid[], $11::int[],
                         $12::text[], $13::text[], $14::text[], $15::text[],
                         $16::timestamptz[], $17::timestamptz[], $18::int[], $19::text[])
    RETURNING 1
)
SELECT delivery_id FROM upd
"""

_PUSH_TARGETS_BATCH_SQL = """
SELECT user_id, id, endpoint, p256dh, auth FROM push_subscriptions
 WHERE user_id = ANY($1::uuid[])
"""

_RECORDED_PROVIDER_IDS_SQL = """
SELECT provider_message_id FROM deliveries WHERE provider_message_id = ANY($1::text[])
"""

_PUSH_SUCCEEDED_SQL = """
UPDATE push_subscriptions SET last_success_at = now()
 WHERE id IN (SELECT id FROM push_subscriptions WHERE id = ANY($1::uuid[])
               ORDER BY id FOR UPDATE)
"""


@dataclass(frozen=True)
class _ClaimRequest:
    delivery_id: uuid.UUID
    channel: str
    notification_id: uuid.UUID | None
    user_id: uuid.UUID


@dataclass(frozen=True)
class _FinishRequest:
    delivery_id: uuid.UUID
    claim: Claimed
    channel: str
    notification_id: uuid.UUID | None
    user_id: uuid.UUID
    status: Status
    attempts: list[AttemptRecord]
    provider: str | None
    provider_message_id: str | None
    error: str | None


class _DuplicateInBatch(Exception):
    """One delivery twice in a batch: one statement cannot claim a row twice; the batch's
    requests then run one by one (in order, like separate statements would)."""


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


def _claimed(token: uuid.UUID, row: asyncpg.Record) -> Claimed:
    handed_over = tuple(row["handed_over"] or ()) if row["in_doubt_since"] is not None else ()
    return Claimed(token, int(row["attempts"]), row["in_doubt_since"], handed_over)


async def _no_session_state_to_reset(conn: asyncpg.Connection) -> None:
    """Pool release hook. asyncpg's default sends ``RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()``, a round trip on every release (two per message). The store
    never sets session state, listens, keeps cursors or takes advisory locks, so there is
    nothing to reset; asyncpg still rolls back a transaction left open before calling this."""


class Store:
    """The dispatcher's statements. ``batch=False`` runs every call as its own statement
    (the batched and the single forms must behave the same; tests run both)."""

    def __init__(
        self, pool: asyncpg.Pool, *, batch: bool = True, handover_pool: asyncpg.Pool
    ) -> None:
        self.pool = pool
        self.handover_pool = handover_pool
        self.batch = batch
        self._claims: dict[float, Coalescer[_ClaimRequest, ClaimResult]] = {}
        # Outcomes do not queue behind a statement in flight: between the provider's
        # acceptance and this commit a crash sends again, so that wait is the duplicate
        # window (one in flight at a time measured 4-14 duplicates per SIGKILL mid-batch of
        # 200, against 0-3 with each outcome written at once).
        self._finishes = Coalescer(
            "finish", self._finish_batch, self._finish_one, max_in_flight=FINISH_IN_FLIGHT
        )
        self._targets = Coalescer("push_targets", self._push_targets_batch, self._push_targets)
        self._succeeded = Coalescer(
            "push_succeeded", self._push_succeeded_batch, self._push_succeeded
        )

    @classmethod
    async def open(cls, dsn: str, size: int = 10, *, batch: bool = True) -> Store:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size, reset=_no_session_state_to_reset
        )
        assert pool is not None
        return cls(pool, batch=batch, handover_pool=await open_pool(dsn, size))

    async def close(self) -> None:
        coalescers: list[Coalescer[Any, Any]] = [
            *self._claims.values(),
            self._finishes,
            self._targets,
            self._succeeded,
        ]
        log.info(
            "store statements",
            extra={c.name: f"{c.requests} requests in {c.batches} statements" for c in coalescers},
        )
        await self.pool.close()
        await self.handover_pool.close()

    async def claim(
        self,
        delivery_id: uuid.UUID,
        channel: str,
        notification_id: uuid.UUID | None,
        user_id: uuid.UUID,
        lease_secs: float,
    ) -> ClaimResult:
        """Take the right to send this delivery (see the module docstring)."""
        request = _ClaimRequest(delivery_id, channel, notification_id, user_id)
        lease = float(lease_secs)
        if not self.batch:
            return await self._claim_one(request, lease)
        coalescer = self._claims.get(lease)
        if coalescer is None:

            async def batch(requests: list[_ClaimRequest]) -> list[ClaimResult]:
                return await self._claim_batch(requests, lease)

            async def one(request: _ClaimRequest) -> ClaimResult:
                return await self._claim_one(request, lease)

            coalescer = self._claims[lease] = Coalescer("claim", batch, one)
        return await coalescer(request)

    async def _claim_one(self, r: _ClaimRequest, lease_secs: float) -> ClaimResult:
        token = uuid.uuid4()
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                _CLAIM_SQL,
                r.delivery_id,
                r.channel,
                r.notification_id,
                r.user_id,
                token,
                lease_secs,
            )
            if row is not None:
                return _claimed(token, row)
            state = await conn.fetchrow(_CLAIM_STATE_SQL, r.delivery_id, lease_secs)
        return _not_claimed(state)

    async def _claim_batch(
        self, requests: list[_ClaimRequest], lease_secs: float
    ) -> list[ClaimResult]:
        ids = [r.delivery_id for r in requests]
        if len(set(ids)) != len(ids):
            raise _DuplicateInBatch
        tokens = [uuid.uuid4() for _ in requests]
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _CLAIM_BATCH_SQL,
                ids,
                [r.channel for r in requests],
                [r.notification_id for r in requests],
                [r.user_id for r in requests],
                tokens,
                lease_secs,
            )
            claimed = {row["delivery_id"]: row for row in rows}
            missing = [i for i in ids if i not in claimed]
            states = (
                {
                    row["delivery_id"]: row
                    for row in await conn.fetch(_CLAIM_STATE_BATCH_SQL, missing, lease_secs)
                }
                if missing
                else {}
            )
        results: list[ClaimResult] = []
        for delivery_id, token in zip(ids, tokens, strict=True):
            row = claimed.get(delivery_id)
            if row is None:
                results.append(_not_claimed(states.get(delivery_id)))
            else:
                results.append(_claimed(token, row))
        return results

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
        request = _FinishRequest(
            delivery_id,
            claim,
            channel,
            notification_id,
            user_id,
            status,
            attempts,
            provider,
            provider_message_id,
            error[:2000] if error else None,
        )
        if not self.batch:
            return await self._finish_one(request)
        return await self._finishes(request)

    async def _finish_one(self, r: _FinishRequest) -> bool:
        row = await self.pool.fetchrow(
            _FINISH_SQL,
            r.delivery_id,
            r.status,
            r.provider,
            r.provider_message_id,
            r.error,
            r.claim.token,
            r.channel,
            r.notification_id,
            r.user_id,
            r.claim.attempt,
            *_attempt_arrays(r.attempts),
        )
        assert row is not None
        return bool(row["updated"])

    async def _finish_batch(self, requests: list[_FinishRequest]) -> list[bool]:
        if len({r.delivery_id for r in requests}) != len(requests):
            raise _DuplicateInBatch
        # The attempt rows of all requests, flattened, each with its delivery's columns.
        owners = [r for r in requests for _ in r.attempts]
        attempts = [a for r in requests for a in r.attempts]
        rows = await self.pool.fetch(
            _FINISH_BATCH_SQL,
            [r.delivery_id for r in requests],
            [r.status for r in requests],
            [r.provider for r in requests],
            [r.provider_message_id for r in requests],
            [r.error for r in requests],
            [r.claim.token for r in requests],
            [r.delivery_id for r in owners],
            [r.channel for r in owners],
            [r.notification_id for r in owners],
            [r.user_id for r in owners],
            [r.claim.attempt for r in owners],
            *_attempt_arrays(attempts),
        )
        updated = {row["delivery_id"] for row in rows}
        return [r.delivery_id in updated for r in requests]

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

    def hand_over(self, delivery_id: uuid.UUID, claim: Claimed, target: str) -> HandOver:
        """See :class:`HandOver`."""
        return HandOver(self.handover_pool, delivery_id, claim.token, target)

    async def recorded_provider_ids(self, ids: list[str]) -> set[str]:
        """The provider message ids among ``ids`` that some delivery already recorded (a
        message found at the provider belongs to at most one delivery)."""
        if not ids:
            return set()
        rows = await self.pool.fetch(_RECORDED_PROVIDER_IDS_SQL, ids)
        return {str(r["provider_message_id"]) for r in rows}

    async def push_targets(self, user_id: uuid.UUID) -> list[PushTarget]:
        """The user's push subscriptions now."""
        if not self.batch:
            return await self._push_targets(user_id)
        return await self._targets(user_id)

    async def _push_targets(self, user_id: uuid.UUID) -> list[PushTarget]:
        rows = await self.pool.fetch(
            "SELECT id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = $1",
            user_id,
        )
        return [PushTarget(r["id"], r["endpoint"], r["p256dh"], r["auth"]) for r in rows]

    async def _push_targets_batch(self, user_ids: list[uuid.UUID]) -> list[list[PushTarget]]:
        by_user: dict[uuid.UUID, list[PushTarget]] = {u: [] for u in user_ids}
        for r in await self.pool.fetch(_PUSH_TARGETS_BATCH_SQL, list(by_user)):
            by_user[r["user_id"]].append(PushTarget(r["id"], r["endpoint"], r["p256dh"], r["auth"]))
        # Each caller gets its own list (a user can have two deliveries in one batch).
        return [list(by_user[u]) for u in user_ids]

    async def remove_push_subscription(self, subscription_id: uuid.UUID) -> None:
        await self.pool.execute("DELETE FROM push_subscriptions WHERE id = $1", subscription_id)

    async def push_succeeded(self, subscription_ids: list[uuid.UUID]) -> None:
        """Note that these subscriptions took a push (``last_success_at``)."""
        if not subscription_ids:
            return
        if not self.batch:
            await self._push_succeeded(subscription_ids)
        else:
            await self._succeeded(subscription_ids)

    async def _push_succeeded(self, subscription_ids: list[uuid.UUID]) -> None:
        await self.pool.execute(_PUSH_SUCCEEDED_SQL, sorted(set(subscription_ids)))

    async def _push_succeeded_batch(self, requests: list[list[uuid.UUID]]) -> list[None]:
        await self._push_succeeded([i for ids in requests for i in ids])
        return [None for _ in requests]


def _not_claimed(state: asyncpg.Record | None) -> ClaimResult:
    """What a claim that took no row means, from the row's state (None: no row)."""
    if state is None:  # deleted between the two statements (user removed)
        return AlreadyDone("gone")
    if state["status"] == "sending":
        return Busy(max(0.5, float(state["left_secs"] or 0.0)))
    return AlreadyDone(str(state["status"]))
