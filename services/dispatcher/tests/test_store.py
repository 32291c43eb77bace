"""The claim protocol on real PostgreSQL, batched (concurrent calls share a statement) and
one statement per call: both must give every caller the same answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from avisos_common.messages import utcnow
from avisos_dispatcher.store import AlreadyDone, AttemptRecord, Busy, Claimed, Store
from avisos_testkit.infra import Backing

LEASE_SECS = 60.0


@pytest.fixture(params=[True, False], ids=["batched", "single"])
async def store(request: pytest.FixtureRequest, backing: Backing) -> AsyncIterator[Store]:
    s = await Store.open(backing.database_url, 4, batch=request.param)
    yield s
    await s.close()


def _sent() -> AttemptRecord:
    now = utcnow()
    return AttemptRecord(provider="smtp:primary", status="sent", started_at=now, finished_at=now)


async def _finish(store: Store, d: uuid.UUID, claim: Claimed, user: uuid.UUID) -> bool:
    return await store.finish(
        delivery_id=d,
        claim=claim,
        channel="email",
        notification_id=None,
        user_id=user,
        status="sent",
        attempts=[_sent()],
        provider="smtp:primary",
        provider_message_id=f"<{d}@x>",
    )


async def test_concurrent_claims_and_records(
    store: Store, db: asyncpg.Pool, user: uuid.UUID
) -> None:
    ids = [uuid.uuid4() for _ in range(40)]
    claims = await asyncio.gather(*(store.claim(d, "email", None, user, LEASE_SECS) for d in ids))
    assert all(isinstance(c, Claimed) and c.attempt == 1 and not c.retaken for c in claims)
    if store.batch:  # the calls did share statements
        coalescer = store._claims[LEASE_SECS]
        assert coalescer.batches < coalescer.requests
    assert len({c.token for c in claims if isinstance(c, Claimed)}) == len(ids)
    # A second claim of a live claim: busy for about the rest of the lease.
    again = await asyncio.gather(*(store.claim(d, "email", None, user, LEASE_SECS) for d in ids))
    assert all(isinstance(c, Busy) and 50 < c.retry_in_secs <= LEASE_SECS for c in again)
    held = await asyncio.gather(
        *(_finish(store, d, c, user) for d, c in zip(ids, claims, strict=True))  # type: ignore[arg-type]
    )
    assert held == [True] * len(ids)
    rows = await db.fetch(
        "SELECT d.status, d.claim_token, d.provider_message_id, count(a.id) AS logged"
        " FROM deliveries d JOIN delivery_attempts a USING (delivery_id)"
        " WHERE d.delivery_id = ANY($1) GROUP BY d.delivery_id",
        ids,
    )
    assert len(rows) == len(ids)
    assert all(r["status"] == "sent" and r["claim_token"] is None for r in rows)
    assert all(r["logged"] == 1 and r["provider_message_id"] for r in rows)
    # Finished: never claimed again.
    done = await asyncio.gather(*(store.claim(d, "email", None, user, LEASE_SECS) for d in ids))
    assert all(c == AlreadyDone("sent") for c in done)


async def test_expired_claim_is_retaken_and_the_old_holder_loses(
    store: Store, db: asyncpg.Pool, user: uuid.UUID
) -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    first = await asyncio.gather(*(store.claim(d, "email", None, user, LEASE_SECS) for d in ids))
    await db.execute(
        "UPDATE deliveries SET claimed_at = now() - interval '1 hour' WHERE delivery_id = ANY($1)",
        ids,
    )
    second = await asyncio.gather(*(store.claim(d, "email", None, user, LEASE_SECS) for d in ids))
    assert all(isinstance(c, Claimed) and c.retaken and c.attempt == 2 for c in second)
    # In doubt since the dead holder's claim, an hour ago.
    now = await db.fetchval("SELECT now()")
    for c in second:
        assert isinstance(c, Claimed) and c.in_doubt_since is not None
        assert abs((now - c.in_doubt_since) - dt.timedelta(hours=1)) < dt.timedelta(minutes=1)
    # The crashed holder comes back: its record no longer holds, but its attempt is logged.
    lost = await asyncio.gather(
        *(_finish(store, d, c, user) for d, c in zip(ids, first, strict=True))  # type: ignore[arg-type]
    )
    held = await asyncio.gather(
        *(_finish(store, d, c, user) for d, c in zip(ids, second, strict=True))  # type: ignore[arg-type]
    )
    assert lost == [False] * 5 and held == [True] * 5
    logged = await db.fetchval(
        "SELECT count(*) FROM delivery_attempts WHERE delivery_id = ANY($1)", ids
    )
    assert logged == 10


async def _retry_later(store: Store, d: uuid.UUID, claim: Claimed, user: uuid.UUID) -> bool:
    failed = AttemptRecord("twilio", "failed", utcnow(), utcnow(), error="503")
    return await store.finish(
        delivery_id=d,
        claim=claim,
        channel="sms",
        notification_id=None,
        user_id=user,
        status="retrying",
        attempts=[failed],
        error="503",
    )


async def test_in_doubt_lasts_until_the_outcome_is_known(
    store: Store, db: asyncpg.Pool, user: uuid.UUID
) -> None:
    """A retry after a plain transient failure is not in doubt; a retry after a retaken
    claim's failure still is (it has not learnt whether the dead holder's send happened)."""
    plain, crashed = uuid.uuid4(), uuid.uuid4()
    for d in (plain, crashed):
        claim = await store.claim(d, "sms", None, user, LEASE_SECS)
        assert isinstance(claim, Claimed) and claim.in_doubt_since is None
    first = await store.claim(plain, "sms", None, user, LEASE_SECS)
    assert isinstance(first, Busy)
    await db.execute(
        "UPDATE deliveries SET claimed_at = now() - interval '1 hour' WHERE delivery_id = $1",
        crashed,
    )
    retaken = await store.claim(crashed, "sms", None, user, LEASE_SECS)
    assert isinstance(retaken, Claimed) and retaken.in_doubt_since is not None
    assert await _retry_later(store, crashed, retaken, user)
    again = await store.claim(crashed, "sms", None, user, LEASE_SECS)
    assert isinstance(again, Claimed) and again.in_doubt_since == retaken.in_doubt_since
    # The plain one: its holder (alive) reports a transient failure; the retry is clean.
    token = await db.fetchval("SELECT claim_token FROM deliveries WHERE delivery_id = $1", plain)
    assert await _retry_later(store, plain, Claimed(token, 1), user)
    clean = await store.claim(plain, "sms", None, user, LEASE_SECS)
    assert isinstance(clean, Claimed) and clean.in_doubt_since is None and clean.attempt == 2


async def test_a_bad_request_fails_alone(store: Store, user: uuid.UUID) -> None:
    """An unknown user (foreign key) and a delivery claimed twice in one batch: the other
    requests of the batch are served as if they had been alone."""
    good = [uuid.uuid4() for _ in range(6)]
    twice = uuid.uuid4()
    results = await asyncio.gather(
        *(store.claim(d, "email", None, user, LEASE_SECS) for d in good),
        store.claim(uuid.uuid4(), "email", None, uuid.uuid4(), LEASE_SECS),
        store.claim(twice, "email", None, user, LEASE_SECS),
        store.claim(twice, "email", None, user, LEASE_SECS),
        return_exceptions=True,
    )
    assert all(isinstance(r, Claimed) for r in results[:6])
    assert isinstance(results[6], asyncpg.ForeignKeyViolationError)
    assert sorted(type(r).__name__ for r in results[7:]) == ["Busy", "Claimed"]


async def test_push_targets_and_success(store: Store, db: asyncpg.Pool, user: uuid.UUID) -> None:
    subs = [uuid.uuid4() for _ in range(3)]
    for sid in subs:
        await db.execute(
            "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
            " VALUES ($1, $2, $3, 'k', 'a')",
            sid,
            user,
            f"http://push.test/{sid}",
        )
    nobody = uuid.uuid4()
    a, b, none = await asyncio.gather(
        store.push_targets(user), store.push_targets(user), store.push_targets(nobody)
    )
    assert sorted(t.id for t in a) == sorted(subs) and a == b and a is not b and none == []
    await asyncio.gather(store.push_succeeded(subs[:2]), store.push_succeeded(subs[1:2]))
    rows = await db.fetch(
        "SELECT id, last_success_at FROM push_subscriptions WHERE id = ANY($1)", subs
    )
    touched = {r["id"] for r in rows if r["last_success_at"] is not None}
    assert touched == set(subs[:2])


async def test_hand_over_records_targets_until_the_outcome(
    store: Store, db: asyncpg.Pool, user: uuid.UUID
) -> None:
    """What a dead dispatcher's last bytes reached is what the next claim sees; a holder
    whose claim was taken over cannot write it; the outcome clears it."""
    d = uuid.uuid4()
    first = await store.claim(d, "push", None, user, LEASE_SECS)
    assert isinstance(first, Claimed) and first.handed_over == ()
    for target in ("sub-a", "sub-b", "it's quoted"):
        async with store.hand_over(d, first, target) as hand_over:
            await hand_over.mark()
    await store.hand_over(d, first, "sub-a").undo()  # sub-a refused it

    async def handed_over() -> list[str] | None:
        row = await db.fetchval("SELECT handed_over FROM deliveries WHERE delivery_id = $1", d)
        return None if row is None else list(row)

    assert await handed_over() == ["sub-b", "it's quoted"]
    await db.execute(
        "UPDATE deliveries SET claimed_at = now() - interval '1 hour' WHERE delivery_id = $1", d
    )
    second = await store.claim(d, "push", None, user, LEASE_SECS)
    assert isinstance(second, Claimed) and second.handed_over == ("sub-b", "it's quoted")
    async with store.hand_over(d, first, "late") as hand_over:  # the dead holder's token
        await hand_over.mark()
    assert await handed_over() == ["sub-b", "it's quoted"]
    assert await _finish(store, d, second, user)
    assert await handed_over() is None
