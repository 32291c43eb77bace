"""The AMQP door: consumes ``avisos.ingest.events`` (bound to ``inventory.events``, routing
key = event type). The Worker base acks only after :meth:`IngestWorker.handle` returns,
which is after the database commit; invalid events are dead-lettered with the reason
(``Reject``) and nothing behind them waits; database trouble is retried with backoff."""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from avisos_api.api.deps import AppState
from avisos_api.events.ingest import ingest
from avisos_api.events.schemas import InvalidEvent, parse_event
from avisos_common.amqp import Reject, Worker
from avisos_common.topology import QUEUE_INGEST


class IngestWorker(Worker):
    queue = QUEUE_INGEST
    prefetch = 16

    def __init__(self, connection: AbstractRobustConnection, state: AppState) -> None:
        super().__init__(connection)
        self.state = state

    async def handle(self, body: bytes, message: AbstractIncomingMessage, attempt: int) -> None:
        try:
            ev = parse_event(body)
        except InvalidEvent as exc:
            raise Reject(exc.reason) from None
        key = message.routing_key or ""
        if key and key != ev.envelope.type:
            raise Reject(f"routing key {key!r} does not match the event type {ev.envelope.type!r}")
        await ingest(self.state, ev, "amqp")
