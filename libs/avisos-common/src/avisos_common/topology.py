"""The RabbitMQ topology of Avisos, declared in one place.

::

    inventory.events (topic) --#--> avisos.ingest.events (quorum) ........ notification-api
    avisos.dispatch (direct) --email.urgent--> avisos.dispatch.email.urgent  \
                             --email.normal--> avisos.dispatch.email.normal   |
                             --sms.*-------->  avisos.dispatch.sms.{urgent,normal}  dispatcher
                             --push.*------->  avisos.dispatch.push.{urgent,normal} /
    avisos.reports (direct) --jobs--> avisos.reports.jobs (quorum) .......... reports
    avisos.realtime (fanout) --> avisos.realtime.<instance> (exclusive, one per gateway)
    avisos.delay (headers, x-avisos-delay=<n>s) --> avisos.delay.<n>s (TTL n s)
          --(expired: dead-lettered to the default exchange, routing key = target queue)-->
          back to the work queue it came from
    avisos.dead (fanout) --> avisos.dead-letters (quorum; every message carries its reason)

Work queues are quorum queues with an explicit ``x-delivery-limit`` (poison messages that
crash a consumer repeatedly are dead-lettered instead of looping) and a dead-letter
exchange (a missing one drops messages silently). Retries use one delay queue per delay,
each with a fixed TTL: mixed per-message TTLs on one queue would stall behind the head.

Declaring is idempotent: every service declares the whole topology at start-up, so it does
not matter which starts first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, ExchangeType

from avisos_common.messages import Channel, Lane

EXCHANGE_EVENTS = "inventory.events"
EXCHANGE_DISPATCH = "avisos.dispatch"
EXCHANGE_REPORTS = "avisos.reports"
EXCHANGE_REALTIME = "avisos.realtime"
EXCHANGE_DELAY = "avisos.delay"
EXCHANGE_DEAD = "avisos.dead"

QUEUE_INGEST = "avisos.ingest.events"
QUEUE_REPORTS = "avisos.reports.jobs"
QUEUE_DEAD_LETTERS = "avisos.dead-letters"
ROUTING_KEY_REPORTS = "jobs"

#: Delays a retry can wait, in seconds. A retry picks the smallest one >= its backoff.
RETRY_DELAYS_SECS: tuple[int, ...] = (1, 5, 15, 60, 300, 900)
#: Deliveries of one message before a quorum queue dead-letters it as poison.
DELIVERY_LIMIT = 10

DISPATCH_CHANNELS: tuple[Channel, ...] = ("email", "sms", "push")
LANES: tuple[Lane, ...] = ("urgent", "normal")

HEADER_DELAY = "x-avisos-delay"
HEADER_ATTEMPT = "x-avisos-attempt"
HEADER_REASON = "x-avisos-reason"
HEADER_ORIGIN_QUEUE = "x-avisos-origin-queue"
HEADER_ORIGIN_EXCHANGE = "x-avisos-origin-exchange"
HEADER_ORIGIN_ROUTING_KEY = "x-avisos-origin-routing-key"


def dispatch_routing_key(channel: Channel, lane: Lane) -> str:
    return f"{channel}.{lane}"


def dispatch_queue(channel: Channel, lane: Lane) -> str:
    return f"avisos.dispatch.{channel}.{lane}"


def delay_queue(delay_secs: int) -> str:
    return f"avisos.delay.{delay_secs}s"


def delay_bucket(wanted_secs: float) -> int:
    """The smallest configured delay that is at least ``wanted_secs`` (or the largest)."""
    for secs in RETRY_DELAYS_SECS:
        if secs >= wanted_secs:
            return secs
    return RETRY_DELAYS_SECS[-1]


def realtime_queue(instance_id: str) -> str:
    return f"avisos.realtime.{instance_id}"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    exchange: str
    routing_key: str
    arguments: dict[str, Any] = field(default_factory=dict)


def _work_queue_args() -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": EXCHANGE_DEAD,
    }


def work_queues() -> list[QueueSpec]:
    """Every durable work queue with the exchange and key it is bound by."""
    specs = [
        QueueSpec(QUEUE_INGEST, EXCHANGE_EVENTS, "#", _work_queue_args()),
        QueueSpec(QUEUE_REPORTS, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS, _work_queue_args()),
    ]
    for channel in DISPATCH_CHANNELS:
        for lane in LANES:
            specs.append(
                QueueSpec(
                    dispatch_queue(channel, lane),
                    EXCHANGE_DISPATCH,
                    dispatch_routing_key(channel, lane),
                    _work_queue_args(),
                )
            )
    return specs


async def declare_topology(channel: AbstractChannel) -> dict[str, AbstractExchange]:
    """Declare every exchange and durable queue. Safe to call from every service."""
    exchanges: dict[str, AbstractExchange] = {}
    for name, kind in (
        (EXCHANGE_EVENTS, ExchangeType.TOPIC),
        (EXCHANGE_DISPATCH, ExchangeType.DIRECT),
        (EXCHANGE_REPORTS, ExchangeType.DIRECT),
        (EXCHANGE_REALTIME, ExchangeType.FANOUT),
        (EXCHANGE_DELAY, ExchangeType.HEADERS),
        (EXCHANGE_DEAD, ExchangeType.FANOUT),
    ):
        exchanges[name] = await channel.declare_exchange(name, kind, durable=True)

    dead = await channel.declare_queue(
        QUEUE_DEAD_LETTERS, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(exchanges[EXCHANGE_DEAD], routing_key="")

    for spec in work_queues():
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        await queue.bind(exchanges[spec.exchange], routing_key=spec.routing_key)

    for secs in RETRY_DELAYS_SECS:
        queue = await channel.declare_queue(
            delay_queue(secs),
            durable=True,
            arguments={
                "x-message-ttl": secs * 1000,
                # The default exchange routes by queue name: a retried message is
                # published with routing key = its work queue, which dead-lettering keeps.
                "x-dead-letter-exchange": "",
            },
        )
        await queue.bind(
            exchanges[EXCHANGE_DELAY],
            routing_key="",
            arguments={"x-match": "all", HEADER_DELAY: f"{secs}s"},
        )
    return exchanges


async def declare_on(url: str) -> None:
    """Connect, declare the topology, disconnect (used by operators' tools and tests)."""
    connection = await aio_pika.connect(url)
    async with connection:
        await declare_topology(await connection.channel())
