"""Taking users' seqs never waits for rows that merely reference those users.

A dispatcher records deliveries for several users in one statement, which takes a KEY
SHARE lock on each user row until it commits. The API's seq locks used to be FOR UPDATE,
which conflicts with KEY SHARE: with two users locked in opposite orders by an event's
transaction and a dispatcher's batch, PostgreSQL detected a deadlock and the event got a
500 (seen in the scale-out test). FOR NO KEY UPDATE is what the seq UPDATE needs, and it
does not conflict with KEY SHARE.
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text

from avisos_api.api.deps import AppState
from avisos_api.events.context import lock_users
from avisos_api.services.notifications import allocate_seqs
from avisos_testkit.infra import Backing

from .conftest import People


def _dsn(backing: Backing) -> str:
    return backing.database_url.replace("postgresql+asyncpg://", "postgresql://")


async def test_seq_locks_do_not_wait_for_key_share(
    people: People, state: AppState, backing: Backing
) -> None:
    users = [await people.create() for _ in range(2)]
    ids = [u.id for u in users]
    other = await asyncpg.connect(_dsn(backing))
    try:
        async with other.transaction():
            # What a foreign-key check of a row inserted for these users holds until commit.
            await other.execute("SELECT 1 FROM users WHERE id = ANY($1) FOR KEY SHARE", ids)
            async with state.sessionmaker() as s, s.begin():
                # Fail at once instead of waiting, if the locks conflicted.
                await s.execute(text("SET LOCAL lock_timeout = '2s'"))
                await lock_users(s, ids)
                seqs = await allocate_seqs(s, ids)
            assert set(seqs) == set(ids)
    finally:
        await other.close()
