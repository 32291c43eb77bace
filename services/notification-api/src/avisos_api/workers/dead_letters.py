"""The dead-letter recorder: copies every message of ``avisos.dead-letters`` into the
``dead_letters`` table, where admins list and replay them (api/routes/dead_letters.py).

The insert is idempotent (``dedupe_key``: message id, reason, replay count, attempt,
origin), so a redelivery after a crash does not create a second row; the message is acked
only after the row is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from avisos_api.models_delivery import DeadLetter
from avisos_common import topology
from avisos_common.amqp import Worker
from avisos_common.settings import ServiceSettings

log = logging.getLogger(__name__)

HEADER_REPLAY = "x-avisos-replay"
AMQP_WAIT_SECS = 0.5


class DeadLetterSettings(ServiceSettings):
    #: Run the recorder inside the API process (AVISOS_RUN_DEAD_LETTER_RECORDER).
    run_dead_letter_recorder: bool = True


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def dedupe_key(message_id: str | None, headers: dict[str, Any], body: bytes) -> str:
    parts = [
        message_id or hashlib.sha256(body).hexdigest(),
        str(headers.get(topology.HEADER_REASON, "")),
        str(headers.get(HEADER_REPLAY, 0)),
        str(headers.get(topology.HEADER_ATTEMPT, "")),
        str(headers.get(topology.HEADER_ORIGIN_QUEUE, "")),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def origin_queue(headers: dict[str, Any]) -> str | None:
    """Where the message came from: our header, or RabbitMQ's x-death (delivery limit)."""
    queue = headers.get(topology.HEADER_ORIGIN_QUEUE)
    if queue:
        return str(queue)
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        q = deaths[0].get("queue")
        return str(q) if q else None
    return None


class DeadLetterRecorder(Worker):
    queue = topology.QUEUE_DEAD_LETTERS
    prefetch = 50
    max_attempts = 1000  # recording must not give up: it is the last stop

    def __init__(
        self, connection: AbstractRobustConnection, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        super().__init__(connection)
        self.sessionmaker = sessionmaker

    async def handle(self, body: bytes, message: AbstractIncomingMessage, attempt: int) -> None:
        headers = _jsonable(dict(message.headers or {}))
        reason = headers.get(topology.HEADER_REASON)
        if not reason and isinstance(headers.get("x-death"), list):
            reason = f"broker dead-lettered: {headers['x-death'][0].get('reason', '?')}"
        row = {
            "dedupe_key": dedupe_key(message.message_id, headers, body),
            "message_id": message.message_id,
            "origin_queue": origin_queue(headers),
            "origin_exchange": headers.get(topology.HEADER_ORIGIN_EXCHANGE),
            "origin_routing_key": headers.get(topology.HEADER_ORIGIN_ROUTING_KEY),
            "reason": str(reason) if reason else None,
            "headers": json.loads(json.dumps(headers, default=str)),
            "body": body,
            "content_type": message.content_type,
        }
        async with self.sessionmaker() as session:
            await session.execute(
                insert(DeadLetter)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
            )
            await session.commit()


async def run_recorder(state: Any) -> None:
    """Run the recorder for the API's lifetime (``state`` is the API's AppState); waits
    for the broker connection the API keeps in ``state.extras['amqp']``."""
    if not DeadLetterSettings().run_dead_letter_recorder:
        return
    # main.py's connector task sets state.extras["amqp"] without signalling; poll for it.
    while state.extras.get("amqp") is None:  # noqa: ASYNC110
        await asyncio.sleep(AMQP_WAIT_SECS)
    recorder = DeadLetterRecorder(state.extras["amqp"], state.sessionmaker)
    await recorder.start()
    state.extras["dead_letter_recorder"] = recorder
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await recorder.stop(timeout_secs=5)
