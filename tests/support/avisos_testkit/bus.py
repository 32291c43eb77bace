"""Watch what Avisos publishes: a temporary queue bound to an exchange of the test vhost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection


class BusTap:
    """Collects every message routed to ``exchange`` (with ``routing_key``) from now on."""

    def __init__(self, amqp_url: str, exchange: str, routing_key: str = "#") -> None:
        self.amqp_url = amqp_url
        self.exchange = exchange
        self.routing_key = routing_key
        self.messages: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Condition()
        self._conn: AbstractRobustConnection | None = None

    async def __aenter__(self) -> BusTap:
        from avisos_common.topology import declare_topology

        self._conn = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._conn.channel()
        await declare_topology(channel)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.exchange, routing_key=self.routing_key)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in self.messages]

    async def wait_for(self, count: int, timeout_secs: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages arrived; return all bodies so far."""

        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.messages) >= count)

        try:
            await asyncio.wait_for(enough(), timeout_secs)
        except TimeoutError:
            raise AssertionError(
                f"expected {count} messages on {self.exchange}, got {len(self.messages)}"
            ) from None
        return self.bodies()
