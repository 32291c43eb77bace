"""Per-connection state and the non-blocking write path.

State lives on the websockets connection object itself (a :class:`ServerConnection`
subclass passed as ``create_connection``), so a connection costs one object graph and one
handler task, nothing more: keep-alive and idle checks are done by one sweeper for all.

Writes never wait for a client: a frame is appended to the transport's buffer at once
(like :func:`websockets.asyncio.server.broadcast`), and a client whose unsent bytes exceed
``send_buffer_limit_bytes`` is disconnected as slow instead of stalling the others.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from avisos_gateway import protocol

#: A frame waiting while its connection catches up: (seq or None, encoded frame).
Pending = tuple[int | None, bytes]

# Close tasks must be referenced until done (the loop keeps only weak references).
_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Any) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, keeping a reference until it ends."""
    task: asyncio.Task[Any] = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


class GatewayConnection(ServerConnection):
    """A browser connection with what the gateway needs to know about it."""

    # Our state lives in slots, not in the instance dict websockets' attributes already
    # fill: the dict would grow past its shared-keys size (~1.5 KiB per connection).
    __slots__ = (
        "kicked",
        "last_rx",
        "last_seq",
        "pending",
        "requested_cursor",
        "send_buffer_limit",
        "session_id",
        "tokens",
        "tokens_at",
        "user_id",
    )

    # Set by the handshake (process_request) before the handler runs.
    user_id: uuid.UUID
    session_id: str
    requested_cursor: int | None
    #: Highest ``seq`` written to this client; live frames at or below it are duplicates.
    last_seq: int
    #: Not None while the connection catches up from PostgreSQL: live frames wait here.
    pending: list[Pending] | None
    send_buffer_limit: int
    tokens: float
    tokens_at: float
    last_rx: float
    kicked: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets keeps drain waiters in a deque (~700 bytes even when empty); it only
        # appends, removes and iterates, which a list does for 56 bytes.
        if not self.drain_waiters:
            self.drain_waiters = []  # type: ignore[assignment]
        self.requested_cursor = None
        self.last_seq = 0
        self.pending = []  # buffer from registration until the initial catch-up is done
        self.send_buffer_limit = 1024 * 1024
        self.tokens = 0.0
        self.tokens_at = 0.0
        self.last_rx = time.monotonic()
        self.kicked = False

    @property
    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN and not self.kicked

    def write(self, data: bytes) -> bool:
        """Queue one text frame without waiting; False if the client is gone or was kicked."""
        if not self.is_open:
            return False
        transport = self.transport
        if transport.get_write_buffer_size() + len(data) > self.send_buffer_limit:
            self.kick(protocol.CLOSE_SLOW_CONSUMER, "slow consumer")
            return False
        try:
            self.protocol.send_text(data)
            self.send_data()
        except Exception:
            transport.abort()
            return False
        return True

    def kick(self, code: int, reason: str) -> None:
        """Close with ``code`` in the background (once); further writes are dropped."""
        if self.kicked:
            return
        self.kicked = True
        spawn(self.close(code, reason))

    def take_token(self, rate_per_sec: float, burst: int, now: float) -> bool:
        """Token bucket for client messages: False when the client sends too fast."""
        self.tokens = min(float(burst), self.tokens + (now - self.tokens_at) * rate_per_sec)
        self.tokens_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
