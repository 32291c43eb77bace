"""Helpers of the dispatcher tests (imported by conftest and the test modules)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg  # type: ignore[import-untyped]

from avisos_common import topology
from avisos_common.amqp import Publisher
from avisos_common.messages import Delivery, lane_for
from avisos_dispatcher.app import Dispatcher
from avisos_dispatcher.settings import DispatcherSettings
from avisos_testkit.polling import eventually


def make_settings(base: dict[str, Any], **overrides: Any) -> DispatcherSettings:
    return DispatcherSettings(_env_file=None, **{**base, **overrides})  # type: ignore[call-arg]


async def publish(pub: Publisher, msg: Delivery, channel: str) -> None:
    key = topology.dispatch_routing_key(channel, lane_for(msg.priority))  # type: ignore[arg-type]
    await pub.publish(topology.EXCHANGE_DISPATCH, key, msg)


class DeadLetters:
    """A private queue bound to the dead-letter fanout: sees every dead letter of the run."""

    def __init__(self) -> None:
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    def reasons_for(self, message_id: str) -> list[str]:
        return [
            str((m.headers or {}).get(topology.HEADER_REASON, ""))
            for m in self.messages
            if m.message_id == message_id
        ]


async def subscribe(db: asyncpg.Pool, user: uuid.UUID, sub: dict[str, Any]) -> uuid.UUID:
    """Store a browser's push subscription for ``user``; return its id."""
    sid = uuid.uuid4()
    await db.execute(
        "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
        " VALUES ($1, $2, $3, $4, $5)",
        sid,
        user,
        sub["endpoint"],
        sub["keys"]["p256dh"],
        sub["keys"]["auth"],
    )
    return sid


async def delivery_row(db: asyncpg.Pool, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1", delivery_id)


async def attempts(db: asyncpg.Pool, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id", delivery_id
        )
    )


async def final_status(
    db: asyncpg.Pool, delivery_id: uuid.UUID, timeout_secs: float = 20.0
) -> asyncpg.Record:
    async def probe() -> asyncpg.Record | None:
        row = await delivery_row(db, delivery_id)
        return row if row is not None and row["status"] in ("sent", "failed") else None

    return await eventually(probe, timeout_secs=timeout_secs, what=f"final status of {delivery_id}")


#: The ``run_dispatcher`` fixture: start an in-process dispatcher with setting overrides.
RunDispatcher = Callable[..., Awaitable[Dispatcher]]
