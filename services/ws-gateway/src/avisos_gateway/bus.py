"""The consumer of this instance's exclusive queue on the ``avisos.realtime`` fanout.

Every gateway gets every realtime message and keeps those for users it holds. The queue
is exclusive and auto-deleted (it dies with the instance) and consumed without acks: the
live path is at-most-once by design, and PostgreSQL closes any gap (cursor replay on
reconnect, gap repair on the next message of the user).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from avisos_common import topology

log = logging.getLogger(__name__)

#: A gateway far behind drops its oldest messages rather than eating the broker's memory.
QUEUE_MAX_LENGTH = 200_000


class RealtimeConsumer:
    def __init__(self, amqp_url: str, instance_id: str, on_body: Callable[[bytes], None]) -> None:
        self.amqp_url = amqp_url
        self.queue_name = topology.realtime_queue(instance_id)
        self._on_body = on_body
        self._connection: AbstractRobustConnection | None = None
        self.consuming = False
        #: Called after the broker link comes back (messages may have been lost meanwhile).
        self.on_restored: Callable[[], None] | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        self._connection.close_callbacks.add(self._on_close)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        channel = await self._connection.channel()
        await topology.declare_topology(channel)
        exchange = await channel.get_exchange(topology.EXCHANGE_REALTIME)
        queue = await channel.declare_queue(
            self.queue_name,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
        )
        await queue.bind(exchange)
        await queue.consume(self._on_message, no_ack=True)
        self.consuming = True
        log.info("consuming", extra={"queue_name": self.queue_name})

    async def stop(self) -> None:
        self.consuming = False
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Synchronous from here on: messages are handled in the order they arrive.
        try:
            self._on_body(message.body)
        except Exception:
            log.exception("realtime message failed", extra={"message_id": message.message_id})

    def _on_close(self, *_: object) -> None:
        self.consuming = False
        log.warning("broker connection lost")

    def _on_reconnect(self, *_: object) -> None:
        self.consuming = True
        log.info("broker connection restored")
        if self.on_restored is not None:
            self.on_restored()
