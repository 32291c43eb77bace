"""The consumer of this instance's exclusive queue on the ``avisos.realtime`` fanout.

Every gateway gets every realtime message and keeps those for users it holds. The queue
is exclusive and auto-deleted (it dies with the instance) and consumed without acks: the
live path is at-most-once by design, and PostgreSQL closes any gap (cursor replay on
reconnect, gap repair on the next message of the user, a catch-up of every connection
after the broker link comes back).

This is the hottest path of the gateway (every notification of every user crosses it), so
it talks to the broker with aiormq directly: aio-pika's wrappers cost two tasks and an
``IncomingMessage`` per delivery. Reconnection is handled here (a loop with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import aiormq
from aiormq.abc import DeliveredMessage

from avisos_common import topology
from avisos_common.logging import AMQP_REQUEST_ID_HEADER

log = logging.getLogger(__name__)

#: A gateway far behind drops its oldest messages rather than eating the broker's memory.
QUEUE_MAX_LENGTH = 200_000
RECONNECT_MAX_DELAY_SECS = 10.0


class RealtimeConsumer:
    """Call :meth:`start` (returns once consuming), :meth:`stop` at the end."""

    def __init__(
        self, amqp_url: str, instance_id: str, on_body: Callable[[bytes, str | None], None]
    ) -> None:
        self.amqp_url = amqp_url
        self.queue_name = topology.realtime_queue(instance_id)
        self._on_body = on_body
        self.consuming = False
        #: Called after the broker link comes back (messages may have been lost meanwhile).
        self.on_restored: Callable[[], None] | None = None
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        # The whole topology is declared once at start-up (idempotent, like every service).
        await topology.declare_on(self.amqp_url)
        self._task = asyncio.create_task(self._run())
        first = asyncio.create_task(self._first.wait())
        await asyncio.wait({first, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not self._first.is_set():
            first.cancel()
            self._task.result()  # the broker was unreachable: raise its error
        log.info("consuming", extra={"queue_name": self.queue_name})

    async def stop(self) -> None:
        self._stopping = True
        self.consuming = False
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _consume_once(self) -> aiormq.abc.AbstractConnection:
        connection = await aiormq.connect(self.amqp_url)
        self._connection = connection
        channel = await connection.channel()
        await channel.queue_declare(
            self.queue_name,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
        )
        await channel.queue_bind(self.queue_name, topology.EXCHANGE_REALTIME, routing_key="")
        await channel.basic_consume(self.queue_name, self._on_delivery, no_ack=True)
        return connection

    async def _run(self) -> None:
        attempt = 0
        restored = False
        while not self._stopping:
            try:
                connection = await self._consume_once()
            except Exception as exc:
                if not self._first.is_set() and attempt >= 5:
                    raise
                attempt += 1
                delay = min(RECONNECT_MAX_DELAY_SECS, 0.5 * 2**attempt) * random.uniform(0.5, 1)
                log.warning(
                    "broker connect failed", extra={"error": str(exc), "retry_in_secs": delay}
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.consuming = True
            self._first.set()
            if restored:
                log.info("broker connection restored")
                if self.on_restored is not None:
                    self.on_restored()
            with contextlib.suppress(Exception):
                await connection.closing
            self.consuming = False
            restored = True
            if not self._stopping:
                log.warning("broker connection lost")

    async def _on_delivery(self, message: DeliveredMessage) -> None:
        # Synchronous from here on: messages are handled in the order they arrive.
        headers = message.header.properties.headers or {}
        rid = headers.get(AMQP_REQUEST_ID_HEADER)
        try:
            self._on_body(message.body, rid if isinstance(rid, str) else None)
        except Exception:
            log.exception("realtime message failed")
