"""The hand-over record: where a message's last bytes went before the provider answered.

SMTP relays and push services cannot be asked later whether a message arrived, so the one
moment that decides it, the last bytes of the request leaving, is recorded as it happens
(``deliveries.handed_over``). A dispatcher that takes over the claim of one that died finds
the record and does not send to those targets again. Two things make the record honest
(:meth:`HandOver.send_last`): it is written only once the bytes are in the kernel's send
buffer (:func:`in_kernel`), which delivers them even if the process is killed the next
instant; and the socket stays corked (:func:`corked`) until the record has committed, so
the provider never sees the last bytes of a message that has no record yet. What is left is
a kill between the two writes (microseconds of CPU): the message is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

#: How often a sender looks whether what it wrote has left for the kernel (only when it
#: did not all fit the socket buffer at once).
FLUSH_POLL_SECS = 0.002


def unsent_bytes(transport: asyncio.BaseTransport | None) -> int:
    """Bytes written to ``transport`` that are still in this process.

    Raise ConnectionError when the transport is gone."""
    if transport is None or transport.is_closing():
        raise ConnectionError("connection lost before the last bytes left")
    unsent = cast(asyncio.WriteTransport, transport).get_write_buffer_size()
    # Over TLS, asyncio's SSL transport counts only what it has not yet encrypted; the
    # socket transport beneath holds the rest.
    inner: Any = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    if inner is not None:
        unsent += inner.get_write_buffer_size()
    return int(unsent)


@contextlib.contextmanager
def corked(transport: asyncio.BaseTransport | None) -> Iterator[None]:
    """Hold back partial TCP segments of ``transport``'s socket inside the block (Linux
    ``TCP_CORK``; elsewhere, or without a TCP socket, a no-op). Uncorking sends them. Linux
    holds corked data for at most 200 ms."""
    cork = getattr(socket, "TCP_CORK", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if cork is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # the connection may be gone by now
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


async def in_kernel(transport: asyncio.BaseTransport | None) -> None:
    """Return once everything written to ``transport`` is in the kernel's send buffer,
    without awaiting anything when it already is (the usual case)."""
    # No event to wait for: a transport signals "drained" only after crossing its
    # high-water mark, and a few KiB never do.
    while unsent_bytes(transport):  # noqa: ASYNC110
        await asyncio.sleep(FLUSH_POLL_SECS)


MARK_SQL = (
    "UPDATE deliveries SET handed_over = array_append(handed_over, $3)"
    " WHERE delivery_id = $1 AND claim_token = $2"
)
UNDO_SQL = (
    "UPDATE deliveries SET handed_over = array_remove(handed_over, $3)"
    " WHERE delivery_id = $1 AND claim_token = $2"
)


async def open_pool(dsn: str, size: int) -> asyncpg.Pool:
    """The connections hand-over records are written on.

    The record must outlive the dispatcher, not PostgreSQL: these sessions commit without
    waiting for the WAL flush (``synchronous_commit = off``), so a record is visible at once
    to the dispatcher that takes over, and only a database crash in the next few hundred
    ms could lose one (then the message is sent again: at-least-once, never lost). Each
    connection prepares the two statements when it opens, so that a mark is written in the
    same synchronous step as the bytes it records (asyncpg writes a cached statement's
    Bind/Execute before it first suspends)."""

    async def prepare(conn: asyncpg.Connection) -> None:
        nobody = (uuid.UUID(int=0), uuid.UUID(int=0), "")
        await conn.execute(MARK_SQL, *nobody)
        await conn.execute(UNDO_SQL, *nobody)

    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        server_settings={"synchronous_commit": "off"},
        init=prepare,
        reset=_nothing_to_reset,
    )
    assert pool is not None
    return pool


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """These connections keep no session state beyond their prepared statements."""


class HandOver:
    """Records that a message's last bytes left for one target, on a connection of its own.

    For providers that cannot be asked later whether a message arrived (an SMTP relay, a
    push service; they act on nothing before the last bytes: the final ``.`` of DATA, the
    end of an HTTP body). The sender writes everything before the last bytes, enters this
    context (which may wait for a connection: nothing is delivered yet) and calls
    :meth:`send_last`. It must call :meth:`undo` when the provider refuses or does not
    answer.
    """

    def __init__(
        self, pool: asyncpg.Pool, delivery_id: uuid.UUID, claim_token: uuid.UUID, target: str
    ) -> None:
        self.pool = pool
        self._args = (delivery_id, claim_token, target)
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> HandOver:
        self._conn = await self.pool.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self.pool.release(self._conn)
            self._conn = None

    async def send_last(
        self, transport: asyncio.BaseTransport | None, write_last: Callable[[], Awaitable[None]]
    ) -> None:
        """Write the last bytes of the message (``write_last``) and record that they left.

        Call inside the context, after everything before the last bytes was written. Waits
        until that is in the kernel (a kill must not drop it while the record says "handed
        over"), corks the socket, writes the last bytes, waits until they are in the kernel,
        writes the record, and uncorks once it has committed: the provider sees the last
        bytes only after the record exists, so not even a kill that the provider's receipt
        sets off (tests do exactly that) can fall between the two. A kill between the last
        bytes and the record's statement still sends the corked bytes (the kernel flushes
        them on close): sent again later, at-least-once, within microseconds of CPU time.
        A failed record is logged and the message goes anyway (a retake sends it again).
        """
        await in_kernel(transport)
        with corked(transport):
            await write_last()
            await in_kernel(transport)
            try:
                await self.mark()
            except Exception:
                log.warning("could not record the hand-over", exc_info=True)

    async def mark(self) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None, "enter the HandOver first"
        try:
            await conn.execute(MARK_SQL, *self._args)
        finally:
            await self.pool.release(conn)  # not held while the provider answers

    async def undo(self) -> None:
        await self.pool.execute(UNDO_SQL, *self._args)


async def undo_quietly(hand_over: HandOver) -> None:
    """:meth:`HandOver.undo`, logging a failure: the outcome record that follows (which the
    caller writes next) clears the hand-over as well."""
    try:
        await hand_over.undo()
    except Exception:
        log.warning("could not clear the hand-over record", exc_info=True)
