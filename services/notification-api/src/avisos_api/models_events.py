"""ORM classes for the tables of migration 0002: events, rules, templates, preferences,
alerts and scheduled deliveries.

Column names are a contract: the reports service reads ``alerts`` (and the ``data.alert``
object of notifications) with its own SQL; see docs/rules-and-templates.md.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from avisos_api.models import Base


class ProcessedEvent(Base):
    """An inventory event that has been applied. The primary key (source, id) is what
    makes ingestion exactly-once in effect: it is inserted in the same transaction as the
    notifications the event produced."""

    __tablename__ = "events"

    source: Mapped[str] = mapped_column(String(200), primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    time: Mapped[dt.datetime]
    subject: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: ``amqp`` or ``http``: the door the event came in by (first time).
    received_via: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    notification_count: Mapped[int] = mapped_column(Integer, default=0)
    alert_id: Mapped[uuid.UUID | None]
    #: Team claim of a non-alert event ("handled by Ana"); alerts keep theirs in ``alerts``.
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    acknowledged_at: Mapped[dt.datetime | None]


class Rule(Base):
    """Which events notify whom, how urgently, on which channels."""

    __tablename__ = "rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    #: Set on the rules Avisos ships (seeded by migration 0002); null for admins' rules.
    builtin_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String))
    #: ``[{field, op, value}]``, all must hold (see avisos_api.rules.conditions).
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    roles: Mapped[list[str]] = mapped_column(ARRAY(String), default=list)
    #: ``event`` (data.location_code), ``fixed`` (location_codes) or ``any``.
    location_scope: Mapped[str] = mapped_column(String(8), default="event")
    location_codes: Mapped[list[str]] = mapped_column(ARRAY(String), default=list)
    user_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)), default=list)
    priority: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64))
    channels: Mapped[list[str]] = mapped_column(ARRAY(String))
    #: Minutes a critical alert may stay unacknowledged before the first escalation step.
    ack_timeout_minutes: Mapped[int | None] = mapped_column(Integer)
    #: ``[{after_minutes, roles, scope: location|region, channels}]``
    escalation: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    #: Send the email only if the in-app notification is still unread after N minutes.
    email_delay_minutes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Template(Base):
    """An admin's override of a built-in template (one event type, channel, locale)."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("event_type", "channel", "locale"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(8))
    #: Parts by channel: in_app {subject, message}, email {subject, html, text},
    #: sms {text}, push {title, body}.
    parts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None]
    updated_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Preference(Base):
    """One opt-in/out of a user for a category on a channel (absent: the role default)."""

    __tablename__ = "preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class NotificationSettings(Base):
    """Quiet hours (local times in the user's time zone) and the email digest choice."""

    __tablename__ = "notification_settings"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    quiet_start: Mapped[dt.time | None] = mapped_column(Time)
    quiet_end: Mapped[dt.time | None] = mapped_column(Time)
    #: ``off`` | ``hourly`` | ``daily``: low-priority email collected into one mail.
    digest: Mapped[str] = mapped_column(String(8), default="off")
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Alert(Base):
    """A stateful stock alert: at most one open per (sku, location_code, condition)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open",
            "sku",
            "location_code",
            "condition",
            unique=True,
            postgresql_where=text("state = 'open'"),
        ),
        Index(
            "ix_alerts_escalation_due",
            "next_escalation_at",
            postgresql_where=text("state = 'open' AND acknowledged_by IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    sku: Mapped[str] = mapped_column(String(100))
    location_code: Mapped[str] = mapped_column(String(32))
    condition: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # open | resolved
    priority: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[float | None]
    opened_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    acknowledged_at: Mapped[dt.datetime | None]
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[dt.datetime | None]
    rule_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("rules.id", ondelete="SET NULL"))
    #: The event (source, id) that opened the alert and the last one that changed it.
    opened_by_event: Mapped[str | None] = mapped_column(String(401))
    last_event: Mapped[str | None] = mapped_column(String(401))
    event_count: Mapped[int] = mapped_column(Integer, default=1)


class ScheduledDelivery(Base):
    """A delivery decided now but sent later: after quiet hours (``deferred``), only if
    still unread (``unread_check``), or batched into a digest mail (``digest``)."""

    __tablename__ = "scheduled_deliveries"
    __table_args__ = (
        Index("ix_scheduled_due", "due_at", postgresql_where=text("released_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # deferred | unread_check | digest
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    notification_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime]
    #: The delivery message as JSON (deferred, unread_check) or the digest item.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: For digests: the window (``hourly``/``daily`` + its end) all items of one mail share.
    digest_window: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    released_at: Mapped[dt.datetime | None]
    #: ``sent``, or why it was dropped: ``read`` (unread check), ``opted_out``
    #: (preference changed while waiting), ``inactive`` (user deactivated).
    outcome: Mapped[str | None] = mapped_column(String(32))
