"""ORM classes for the dispatch tables (migration 0003).

``deliveries`` and ``delivery_attempts`` are written by the dispatcher with its own SQL;
the API reads them for the delivery log and updates them from Twilio status callbacks.
``dead_letters`` is written by the API's dead-letter recorder (workers/dead_letters.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ARRAY, BigInteger, ForeignKey, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from avisos_api.models import Base


class Delivery(Base):
    """One notification on one channel; ``delivery_id`` is the idempotency key."""

    __tablename__ = "deliveries"

    delivery_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    notification_id: Mapped[uuid.UUID | None]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claim_token: Mapped[uuid.UUID | None]
    claimed_at: Mapped[dt.datetime | None]
    #: Set when a claim was taken over from a dispatcher that died holding it (0005).
    in_doubt_since: Mapped[dt.datetime | None]
    #: Where the last bytes went before the provider answered (the SMTP relay, the push
    #: subscriptions), until the outcome is recorded (0005).
    handed_over: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class DeliveryAttempt(Base):
    """One try at a provider (or a provider's later status report), for the delivery log."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deliveries.delivery_id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(16))
    notification_id: Mapped[uuid.UUID | None]
    user_id: Mapped[uuid.UUID]
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    started_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[dt.datetime | None]
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    #: What a fanned-out delivery addressed (push: the subscription id).
    target: Mapped[str | None] = mapped_column(String(200))


class DeadLetter(Base):
    """A message that reached ``avisos.dead-letters``, kept for listing and replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(200))
    origin_queue: Mapped[str | None] = mapped_column(String(200))
    origin_exchange: Mapped[str | None] = mapped_column(String(200))
    origin_routing_key: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    replayed_at: Mapped[dt.datetime | None]
    replay_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    replayed_by: Mapped[uuid.UUID | None]
