"""What every channel shares: parse, claim, send, record, then let the Worker ack.

A channel module subclasses :class:`ChannelHandler` and implements :meth:`send` (talk to the
provider, return the attempt records, raise :mod:`avisos_dispatcher.errors` on failure).
This base owns the idempotency claim, the delivery log and the mapping of failures to the
:class:`avisos_common.amqp.Worker` outcomes, which then own ack, retry through the delay
queues and dead-lettering:

===========================  =============================  ============================
outcome of ``send``          recorded (deliveries/attempts)  message
===========================  =============================  ============================
returns                      sent / sent                    acked
``reconcile`` finds it       sent / sent (not sent again)   acked
NotSent (policy)             failed / failed + reason       acked (no retry, no DLQ)
PermanentError               failed / failed + reason       dead-lettered (Reject)
TransientError, not last     retrying / failed + reason     RetryLater (backoff/jitter)
TransientError, last try     failed / failed + reason       dead-lettered by the Worker
unexpected exception         like TransientError             (logged with traceback)
===========================  =============================  ============================

The outcome is committed before the Worker acks, so a crash at any point loses nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Generic, TypeVar

import asyncpg  # type: ignore[import-untyped]
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from avisos_common import topology
from avisos_common.amqp import Reject, RetryLater, Worker
from avisos_common.messages import Channel, Delivery, Lane, utcnow
from avisos_dispatcher.errors import NotSent, PermanentError, TransientError
from avisos_dispatcher.lanes import PriorityGate
from avisos_dispatcher.store import AlreadyDone, AttemptRecord, Busy, Claimed, Store

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Delivery)


class SendResult:
    """What a successful :meth:`ChannelHandler.send` reports."""

    def __init__(
        self,
        attempts: list[AttemptRecord],
        provider: str | None,
        provider_message_id: str | None = None,
    ) -> None:
        self.attempts = attempts
        self.provider = provider
        self.provider_message_id = provider_message_id


class ChannelHandler(Generic[M]):
    """Delivery logic of one channel. Subclasses set ``channel``, ``model`` and implement
    :meth:`send`; ``send`` must raise a classified error from
    :mod:`avisos_dispatcher.errors` and may attach partial attempt records to it."""

    channel: Channel
    model: type[M]

    def __init__(self, store: Store, *, max_attempts: int, lease_secs: float) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.lease_secs = lease_secs
        self.sent = 0
        self.duplicates_skipped = 0
        #: Retaken claims that the provider had already accepted (not sent again).
        self.reconciled = 0

    async def send(self, msg: M, claim: Claimed) -> SendResult:
        raise NotImplementedError

    async def reconcile(self, msg: M, claim: Claimed) -> SendResult | None:
        """Ask the provider whether a dead dispatcher's send went through.

        Called before :meth:`send` when the claim was retaken from a dispatcher that died
        holding it (``claim.in_doubt_since``): it may have died after the provider accepted
        the message and before recording it. Return what the provider has (recorded as sent;
        nothing is sent again) or None to send. Raise a classified error, as :meth:`send`
        does, when the provider cannot be asked: sending blind could be the duplicate this
        look-up exists to prevent. The default returns None. Email answers from the
        hand-over record (``claim.handed_over``), SMS by listing Twilio's messages; push
        skips the handed-over subscriptions in its ``send`` (see docs/channels.md, the
        crash window).
        """
        return None

    def parse(self, body: bytes) -> M:
        try:
            return self.model.model_validate_json(body)
        except ValidationError as exc:
            raise Reject(f"invalid {self.channel} delivery: {exc.errors()[:3]}") from exc

    async def process(self, body: bytes, attempt: int) -> None:
        """Handle one message; return to ack, raise Reject/RetryLater for the Worker."""
        msg = self.parse(body)
        try:
            claim = await self.store.claim(
                msg.delivery_id, self.channel, msg.notification_id, msg.user_id, self.lease_secs
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise Reject(f"unknown user {msg.user_id}") from exc
        if isinstance(claim, AlreadyDone):
            self.duplicates_skipped += 1
            log.info(
                "already handled; not sending again",
                extra={"delivery_id": str(msg.delivery_id), "status": claim.status},
            )
            return
        if isinstance(claim, Busy):
            # Another dispatcher is sending it right now (or died doing so): look again when
            # its lease runs out; by then it is finished (we ack) or retakeable.
            raise RetryLater("claimed by another dispatcher", claim.retry_in_secs)
        if claim.retaken:
            log.warning(
                "in doubt: a dispatcher died holding this delivery and may have sent it",
                extra={"delivery_id": str(msg.delivery_id), "attempt": claim.attempt},
            )
        started = utcnow()
        try:
            result = await self._reconciled(msg, claim) or await self.send(msg, claim)
        except NotSent as exc:
            await self._record_failure(msg, claim, exc.reason, exc.provider, started, "failed")
            log.info("not sent", extra={"delivery_id": str(msg.delivery_id), "reason": exc.reason})
            return
        except PermanentError as exc:
            await self._record_failure(msg, claim, exc.reason, exc.provider, started, "failed")
            raise Reject(exc.reason) from exc
        except TransientError as exc:
            last = attempt >= self.max_attempts
            await self._record_failure(
                msg, claim, exc.reason, exc.provider, started, "failed" if last else "retrying"
            )
            raise RetryLater(exc.reason, exc.retry_after_secs) from exc
        except (Reject, RetryLater):
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            last = attempt >= self.max_attempts
            log.exception("send crashed", extra={"delivery_id": str(msg.delivery_id)})
            await self._record_failure(
                msg, claim, reason, None, started, "failed" if last else "retrying"
            )
            raise RetryLater(reason) from exc
        held = await self.store.finish(
            delivery_id=msg.delivery_id,
            claim=claim,
            channel=self.channel,
            notification_id=msg.notification_id,
            user_id=msg.user_id,
            status="sent",
            attempts=result.attempts,
            provider=result.provider,
            provider_message_id=result.provider_message_id,
        )
        if not held:
            log.warning(
                "claim was taken over while sending", extra={"delivery_id": str(msg.delivery_id)}
            )
        self.sent += 1
        # One line per send, carrying (through the Worker's log context) the request id
        # that came with the message: an operator can follow an event to the mailbox.
        log.info(
            "sent",
            extra={
                "channel": self.channel,
                "delivery_id": str(msg.delivery_id),
                "notification_id": str(msg.notification_id) if msg.notification_id else None,
                "provider": result.provider,
                "provider_message_id": result.provider_message_id,
            },
        )

    async def _reconciled(self, msg: M, claim: Claimed) -> SendResult | None:
        if claim.in_doubt_since is None:
            return None
        found = await self.reconcile(msg, claim)
        if found is not None:
            self.reconciled += 1
            log.warning(
                "the provider already has it: recorded, not sent again",
                extra={
                    "delivery_id": str(msg.delivery_id),
                    "provider_message_id": found.provider_message_id,
                },
            )
        return found

    async def _record_failure(
        self,
        msg: M,
        claim: Claimed,
        reason: str,
        provider: str | None,
        started: dt.datetime,
        status: str,
    ) -> None:
        record = AttemptRecord(
            provider=provider,
            status="failed",
            started_at=started,
            finished_at=utcnow(),
            error=reason,
        )
        await self.store.finish(
            delivery_id=msg.delivery_id,
            claim=claim,
            channel=self.channel,
            notification_id=msg.notification_id,
            user_id=msg.user_id,
            status="failed" if status == "failed" else "retrying",
            attempts=[record],
            provider=provider,
            error=reason,
        )


class LaneWorker(Worker):
    """Consumes one lane queue of a channel; every message first takes a gate slot."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        handler: ChannelHandler[Any],
        lane: Lane,
        gate: PriorityGate,
        *,
        prefetch: int,
        backoff_base_secs: float,
    ) -> None:
        super().__init__(connection)
        self.queue = topology.dispatch_queue(handler.channel, lane)
        self.handler = handler
        self.lane: Lane = lane
        self.gate = gate
        self.prefetch = prefetch
        self.max_attempts = handler.max_attempts
        self.backoff_base_secs = backoff_base_secs

    async def handle(self, body: bytes, message: AbstractIncomingMessage, attempt: int) -> None:
        async with self.gate.slot(self.lane):
            await self.handler.process(body, attempt)


class ChannelRunner:
    """The urgent and normal consumers of one channel around one handler and gate."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        handler: ChannelHandler[Any],
        *,
        concurrency: int,
        prefetch: int,
        backoff_base_secs: float,
    ) -> None:
        self.handler = handler
        self.gate = PriorityGate(concurrency)
        self.workers = [
            LaneWorker(
                connection,
                handler,
                lane,
                self.gate,
                prefetch=prefetch,
                backoff_base_secs=backoff_base_secs,
            )
            for lane in topology.LANES
        ]

    async def start(self) -> None:
        for worker in self.workers:
            await worker.start()

    @property
    def consuming(self) -> bool:
        return all(w.consuming for w in self.workers)

    async def stop(self, timeout_secs: float = 30.0) -> None:
        for worker in self.workers:
            await worker.stop(timeout_secs)
