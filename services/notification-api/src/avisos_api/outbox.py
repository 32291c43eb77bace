"""The transactional outbox: write messages in the same transaction as the change.

Call :func:`add` inside the unit of work that makes the change; the message is published
by :class:`avisos_api.relay.OutboxRelay` after commit, and only marked published after
the broker confirms it. A rolled-back transaction therefore publishes nothing, and a
crash between commit and publish loses nothing (the relay picks the row up later).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.models import OutboxMessage
from avisos_common import logging as avisos_logging
from avisos_common.messages import DeliveryMessage, Message, lane_for
from avisos_common.topology import EXCHANGE_DISPATCH, EXCHANGE_REALTIME, dispatch_routing_key

#: Channel a NOTIFY is sent on after outbox inserts, so relays wake at once.
NOTIFY_CHANNEL = "avisos_outbox"


def add(
    session: AsyncSession,
    exchange: str,
    routing_key: str,
    message: Message | BaseModel,
    *,
    mandatory: bool = True,
    headers: dict[str, Any] | None = None,
) -> None:
    """Queue ``message`` for publishing when the session's transaction commits."""
    hdrs = dict(headers or {})
    rid = avisos_logging.current_request_id()
    if rid:
        hdrs.setdefault(avisos_logging.AMQP_REQUEST_ID_HEADER, rid)
    message_id = str(getattr(message, "message_id", "")) or None
    row = OutboxMessage(
        message_id=message_id or "",
        exchange=exchange,
        routing_key=routing_key,
        body=message.model_dump_json().encode(),
        headers=hdrs,
        mandatory=mandatory,
        attempts=0,
    )
    session.add(row)
    session.info["outbox_dirty"] = True


def add_realtime(session: AsyncSession, message: Message) -> None:
    """Announce a change to every gateway. Not mandatory: with no gateway running the
    message is dropped by the broker, and clients catch up from PostgreSQL on connect."""
    add(session, EXCHANGE_REALTIME, "", message, mandatory=False)


def add_delivery(session: AsyncSession, delivery: DeliveryMessage) -> None:
    channel = delivery.kind.removeprefix("delivery.")
    rk = dispatch_routing_key(channel, lane_for(delivery.priority))  # type: ignore[arg-type]
    add(session, EXCHANGE_DISPATCH, rk, delivery)


async def notify_relays(session: AsyncSession) -> None:
    """Send a NOTIFY (delivered at commit) if this transaction added outbox rows."""
    if session.info.pop("outbox_dirty", False):
        await session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
