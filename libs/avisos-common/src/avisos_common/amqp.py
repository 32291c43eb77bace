"""Publishing with confirms, and a consumer base that owns ack, retry and dead-lettering.

Publishing (:class:`Publisher`): a publish is done only when the broker confirms it.
Messages are persistent, and published ``mandatory`` unless the caller says otherwise: an
unroutable message raises :class:`PublishError` instead of vanishing.

Consuming (:class:`Worker`): subclass it, set ``queue`` and implement :meth:`Worker.handle`.
The base acks only after ``handle`` returns, so the handler must commit its effect first
and be idempotent (a message can be redelivered after any crash). ``handle`` signals
outcomes with exceptions from :mod:`avisos_common.amqp`:

* return normally: done, acked.
* :class:`RetryLater`: transient failure. The message is republished through the delay
  queue that fits the backoff (or the given delay, e.g. a ``Retry-After``) with its attempt
  counter increased, then acked. After ``max_attempts`` it is dead-lettered.
* :class:`Reject`: permanent failure (bad payload, invalid address). Dead-lettered at once
  with the reason; nothing else on the queue is held up.
* any other exception: treated like :class:`RetryLater` with backoff, and logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import DeliveryError
from pydantic import BaseModel

from avisos_common import logging as avisos_logging
from avisos_common import topology
from avisos_common.metrics import Counter

log = logging.getLogger(__name__)

# Every consumer's outcomes, by queue, in the process's default registry (its /metrics).
MESSAGES_PROCESSED = Counter(
    "avisos_messages_processed_total", "Messages handled and acked, by queue", ["queue"]
)
MESSAGES_RETRIED = Counter(
    "avisos_messages_retried_total", "Messages sent to a retry delay queue, by queue", ["queue"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "avisos_messages_dead_lettered_total",
    "Messages dead-lettered (rejected, or out of attempts), by queue",
    ["queue"],
)


class PublishError(RuntimeError):
    """The broker did not confirm the message (nack, unroutable, or channel closed)."""


class HandlerError(Exception):
    """Base of the outcomes a handler may raise."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(HandlerError):
    """Transient failure; try again after ``delay_secs`` (None: exponential backoff)."""

    def __init__(self, reason: str, delay_secs: float | None = None) -> None:
        super().__init__(reason)
        self.delay_secs = delay_secs


class Reject(HandlerError):
    """Permanent failure: dead-letter the message with this reason, do not retry."""


async def connect(url: str) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(url)


def _body(message: BaseModel | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.model_dump_json().encode()


class Publisher:
    """Publishes on one confirming channel. Create with :meth:`open`."""

    def __init__(self, channel: AbstractChannel, exchanges: dict[str, AbstractExchange]):
        self.channel = channel
        self.exchanges = exchanges

    @classmethod
    async def open(cls, connection: aio_pika.abc.AbstractConnection) -> Publisher:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges = await topology.declare_topology(channel)
        return cls(channel, exchanges)

    async def exchange(self, name: str) -> AbstractExchange:
        if name == "":
            return self.channel.default_exchange
        if name not in self.exchanges:
            self.exchanges[name] = await self.channel.get_exchange(name, ensure=False)
        return self.exchanges[name]

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: BaseModel | bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        mandatory: bool = True,
        request_id: str | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm; raise :class:`PublishError` if not."""
        if message_id is None:
            mid = getattr(message, "message_id", None)
            message_id = str(mid) if mid is not None else uuid.uuid4().hex
        all_headers: dict[str, Any] = dict(headers or {})
        rid = request_id or avisos_logging.current_request_id()
        if rid:
            all_headers.setdefault(avisos_logging.AMQP_REQUEST_ID_HEADER, rid)
        msg = aio_pika.Message(
            _body(message),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers=all_headers,
        )
        target = await self.exchange(exchange)
        try:
            confirmation = await target.publish(msg, routing_key=routing_key, mandatory=mandatory)
        except DeliveryError as exc:
            raise PublishError(f"unroutable or refused: {exchange}/{routing_key}: {exc}") from exc
        except Exception as exc:
            raise PublishError(f"publish to {exchange}/{routing_key} failed: {exc}") from exc
        # aiormq returns Basic.Ack on success; Basic.Nack/Return otherwise.
        if confirmation is not None and type(confirmation).__name__ not in ("Ack", "ConfirmOk"):
            raise PublishError(f"broker did not confirm {exchange}/{routing_key}: {confirmation}")


def backoff_secs(attempt: int, base: float = 1.0, cap: float = 900.0) -> float:
    """Exponential backoff with full jitter for the given (1-based) attempt."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)


class Worker:
    """A consumer of one queue. Subclasses set ``queue`` and implement :meth:`handle`."""

    queue: str = ""
    prefetch: int = 32
    max_attempts: int = 8
    backoff_base_secs: float = 1.0

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self.connection = connection
        self._inflight: set[asyncio.Task[None]] = set()
        self._consumer_tag: str | None = None
        self._channel: AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self.publisher: Publisher | None = None
        self.processed = 0
        self.failed = 0

    async def handle(self, body: bytes, message: AbstractIncomingMessage, attempt: int) -> None:
        raise NotImplementedError

    @property
    def consuming(self) -> bool:
        """True between :meth:`start` and :meth:`stop`, while the channel is open."""
        return (
            self._consumer_tag is not None
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self) -> None:
        self.publisher = await Publisher.open(self.connection)
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=self.prefetch)
        self._queue = await self._channel.get_queue(self.queue, ensure=True)
        for counter in (MESSAGES_PROCESSED, MESSAGES_RETRIED, MESSAGES_DEAD_LETTERED):
            counter.labels(self.queue)  # the series exist (at 0) before the first message
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info("consuming", extra={"queue_name": self.queue})

    async def stop(self, timeout_secs: float = 30.0) -> None:
        """Stop taking messages, let in-flight ones finish (and be acked), then close.

        What does not finish in time is left unacked and will be redelivered."""
        if self._queue is not None and self._consumer_tag is not None:
            await self._queue.cancel(self._consumer_tag)
            self._consumer_tag = None
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=timeout_secs)
        if self._channel is not None:
            await self._channel.close()
        if self.publisher is not None:
            await self.publisher.channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)  # type: ignore[arg-type]
        try:
            await self._process(message)
        finally:
            if task is not None:
                self._inflight.discard(task)  # type: ignore[arg-type]

    async def _process(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        raw_attempt = headers.get(topology.HEADER_ATTEMPT, 1)
        attempt = raw_attempt if isinstance(raw_attempt, int) and raw_attempt > 0 else 1
        rid = headers.get(avisos_logging.AMQP_REQUEST_ID_HEADER)
        with avisos_logging.bind(
            request_id=str(rid) if rid else None,
            queue=self.queue,
            message_id=message.message_id,
        ):
            try:
                await self.handle(message.body, message, attempt)
            except Reject as exc:
                self.failed += 1
                log.warning("rejected", extra={"reason": exc.reason, "attempt": attempt})
                await self.dead_letter(message, exc.reason)
            except RetryLater as exc:
                await self._retry_or_dead_letter(message, attempt, exc.reason, exc.delay_secs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("handler failed", extra={"attempt": attempt})
                await self._retry_or_dead_letter(message, attempt, f"{type(exc).__name__}: {exc}")
            else:
                self.processed += 1
                MESSAGES_PROCESSED.labels(self.queue).inc()
                await message.ack()

    async def _retry_or_dead_letter(
        self,
        message: AbstractIncomingMessage,
        attempt: int,
        reason: str,
        delay_secs: float | None = None,
    ) -> None:
        if attempt >= self.max_attempts:
            self.failed += 1
            await self.dead_letter(message, f"gave up after {attempt} attempts: {reason}")
            return
        wanted = (
            delay_secs if delay_secs is not None else backoff_secs(attempt, self.backoff_base_secs)
        )
        bucket = topology.delay_bucket(wanted)
        MESSAGES_RETRIED.labels(self.queue).inc()
        log.info("retrying", extra={"attempt": attempt, "delay_secs": bucket, "reason": reason})
        await self.republish(
            message,
            exchange=topology.EXCHANGE_DELAY,
            routing_key=self.queue,
            extra_headers={
                topology.HEADER_DELAY: f"{bucket}s",
                topology.HEADER_ATTEMPT: attempt + 1,
                topology.HEADER_REASON: reason[:500],
            },
        )
        await message.ack()

    async def dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        MESSAGES_DEAD_LETTERED.labels(self.queue).inc()
        await self.republish(
            message,
            exchange=topology.EXCHANGE_DEAD,
            routing_key="",
            extra_headers={
                topology.HEADER_REASON: reason[:2000],
                topology.HEADER_ORIGIN_QUEUE: self.queue,
                topology.HEADER_ORIGIN_EXCHANGE: message.exchange or "",
                topology.HEADER_ORIGIN_ROUTING_KEY: message.routing_key or "",
            },
        )
        await message.ack()

    async def republish(
        self,
        message: AbstractIncomingMessage,
        *,
        exchange: str,
        routing_key: str,
        extra_headers: Mapping[str, Any],
    ) -> None:
        assert self.publisher is not None, "start() first"
        headers = dict(message.headers or {})
        headers.update(extra_headers)
        await self.publisher.publish(
            exchange,
            routing_key,
            message.body,
            message_id=message.message_id,
            headers=headers,
        )
