"""Which connections this instance holds, by user, and delivery of frames to them.

Delivery is synchronous: a bus message becomes one encoded frame written to each of the
user's connections without awaiting anything, so one slow client never holds up the rest.

Cursor rule (no silent gaps): a live notification is written only if its ``seq`` is the
next one the connection expects. A duplicate (``seq <= last_seq``) is dropped; a jump
(``seq > last_seq + 1``: a message was lost or arrived out of order) switches the
connection to catching up: live frames wait in ``pending`` while PostgreSQL is read, then
both are merged by ``seq`` (see :meth:`Hub.finish_catch_up`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator

from avisos_gateway.connection import GatewayConnection

#: How long a revocation is remembered to catch handshakes that raced with it.
REVOCATION_MEMORY_SECS = 120.0


class Hub:
    def __init__(self, on_gap: Callable[[GatewayConnection], None]) -> None:
        self.by_user: dict[uuid.UUID, set[GatewayConnection]] = {}
        self.connections = 0
        self._on_gap = on_gap
        self.pushed = 0
        self.duplicates = 0
        # Revocations seen recently: session id / user id -> monotonic time.
        self._revoked_sessions: dict[str, float] = {}
        self._revoked_users: dict[uuid.UUID, float] = {}

    def count_for(self, user_id: uuid.UUID) -> int:
        return len(self.by_user.get(user_id, ()))

    def add(self, conn: GatewayConnection) -> None:
        self.by_user.setdefault(conn.user_id, set()).add(conn)
        self.connections += 1

    def remove(self, conn: GatewayConnection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        self.connections -= 1
        if not conns:
            del self.by_user[conn.user_id]

    def all(self) -> Iterator[GatewayConnection]:
        for conns in self.by_user.values():
            yield from conns

    def users(self) -> int:
        return len(self.by_user)

    # --- delivery ----------------------------------------------------------------------

    def deliver(self, user_id: uuid.UUID, seq: int | None, frame: bytes) -> int:
        """Write ``frame`` to every connection of ``user_id``; return how many got it now."""
        conns = self.by_user.get(user_id)
        if not conns:
            return 0
        return self.deliver_to(conns, seq, frame)

    def deliver_to(self, conns: Iterable[GatewayConnection], seq: int | None, frame: bytes) -> int:
        """:meth:`deliver` to connections already looked up (one user's)."""
        written = 0
        for conn in tuple(conns):
            if self.deliver_one(conn, seq, frame):
                written += 1
        return written

    def deliver_one(self, conn: GatewayConnection, seq: int | None, frame: bytes) -> bool:
        if conn.pending is not None:
            conn.pending.append((seq, frame))
            return False
        if seq is not None:
            if seq <= conn.last_seq:
                self.duplicates += 1
                return False
            if seq > conn.last_seq + 1:
                conn.pending = [(seq, frame)]
                self._on_gap(conn)
                return False
            conn.last_seq = seq
        if conn.write(frame):
            self.pushed += 1
            return True
        return False

    def finish_catch_up(self, conn: GatewayConnection) -> int:
        """Write what waited in ``pending``, in ``seq`` order, dropping what was already
        written; leave catching-up mode. Synchronous: nothing can arrive meanwhile."""
        waiting = conn.pending or []
        conn.pending = None
        with_seq = sorted((p for p in waiting if p[0] is not None), key=lambda p: p[0] or 0)
        without = [p for p in waiting if p[0] is None]
        written = 0
        for seq, frame in with_seq:
            assert seq is not None
            if seq <= conn.last_seq:
                self.duplicates += 1
                continue
            # After a catch-up, anything later than the database read is newer: write it.
            conn.last_seq = seq
            if conn.write(frame):
                written += 1
        for _, frame in without:
            if conn.write(frame):
                written += 1
        self.pushed += written
        return written

    # --- revocation --------------------------------------------------------------------

    def revoke(self, user_id: uuid.UUID, session_id: str | None) -> list[GatewayConnection]:
        """Remember the revocation and return the connections it ends."""
        now = time.monotonic()
        self._forget_old(now)
        if session_id is None:
            self._revoked_users[user_id] = now
        else:
            self._revoked_sessions[session_id] = now
        return [
            c
            for c in self.by_user.get(user_id, ())
            if session_id is None or c.session_id == session_id
        ]

    def was_revoked(self, user_id: uuid.UUID, session_id: str) -> bool:
        self._forget_old(time.monotonic())
        return session_id in self._revoked_sessions or user_id in self._revoked_users

    def _forget_old(self, now: float) -> None:
        cutoff = now - REVOCATION_MEMORY_SECS
        for sid in [k for k, t in self._revoked_sessions.items() if t < cutoff]:
            del self._revoked_sessions[sid]
        for uid in [k for k, t in self._revoked_users.items() if t < cutoff]:
            del self._revoked_users[uid]
