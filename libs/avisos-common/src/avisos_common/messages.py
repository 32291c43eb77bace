"""Typed payloads for every message that crosses the bus.

Every message is a pydantic model deriving from :class:`Message`: it carries
``schema_version`` (consumers reject versions they do not know), a ``message_id`` that
consumers use to drop duplicates (RabbitMQ redelivers after any crash), and the time it
was produced. Messages are immutable and refuse unknown fields, so a producer that drifts
from the contract fails loudly in tests instead of silently in production.

Families, by exchange (see :mod:`avisos_common.topology`):

* ``avisos.realtime`` (fanout, to every gateway): :data:`RealtimeMessage`.
* ``avisos.dispatch`` (direct, one queue per channel and lane): :class:`EmailDelivery`,
  :class:`SmsDelivery`, :class:`PushDelivery`.
* ``inventory.events`` (topic, from inventory systems): :class:`InventoryEvent`.
* ``avisos.reports`` (direct): :class:`ReportJobRequested`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION: Literal[1] = 1

Priority = Literal["low", "normal", "high", "critical"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "critical")
Channel = Literal["in_app", "email", "sms", "push"]
CHANNELS: tuple[Channel, ...] = ("in_app", "email", "sms", "push")
#: Delivery lanes: urgent (high, critical) is consumed before normal (low, normal).
Lane = Literal["urgent", "normal"]


def lane_for(priority: Priority) -> Lane:
    return "urgent" if priority in ("high", "critical") else "normal"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Message(BaseModel):
    """Base of every bus message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    produced_at: dt.datetime = Field(default_factory=utcnow)


class UnreadCount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    total: int
    by_priority: dict[Priority, int]


class NotificationContent(BaseModel):
    """What every recipient of one notification shares: all of it but id, seq, recipient."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    category: str
    subject: str
    message: str
    priority: Priority
    data: dict[str, Any] = Field(default_factory=dict)
    action_url: str | None = None
    source_event_id: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime | None = None
    read_at: dt.datetime | None = None
    archived_at: dt.datetime | None = None


class NotificationPayload(NotificationContent):
    """A notification as the recipient sees it (REST, socket and bus share this shape)."""

    id: uuid.UUID
    seq: int = Field(description="Per-recipient cursor: increases with every change pushed")
    recipient_id: uuid.UUID

    def content(self) -> NotificationContent:
        """What every recipient of this notification shares (for NotificationsCreated)."""
        return NotificationContent.model_validate(
            self.model_dump(exclude={"id", "seq", "recipient_id"})
        )


# --- avisos.realtime -------------------------------------------------------------------


class NotificationCreated(Message):
    kind: Literal["notification.created"] = "notification.created"
    user_id: uuid.UUID
    notification: NotificationPayload
    unread: UnreadCount


#: Most recipients one :class:`NotificationsCreated` carries. A larger audience is split
#: into several messages (about 90 KB each at this size), so no outbox row or bus message
#: grows with the audience and each gateway starts pushing after the first chunk.
FANOUT_CHUNK_RECIPIENTS = 500


class Recipient(BaseModel):
    """One recipient of a :class:`NotificationsCreated`: what differs per user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: uuid.UUID
    notification_id: uuid.UUID
    seq: int
    unread: UnreadCount


class NotificationsCreated(Message):
    """One notification created for several users at once (a rule matching a role or a
    store, a message to a team): the shared content once, and per recipient only its id,
    seq and unread count. The API announces two or more recipients this way, in chunks of
    at most :data:`FANOUT_CHUNK_RECIPIENTS`; one recipient stays a
    :class:`NotificationCreated`. A gateway turns each recipient it holds into the same
    ``notification`` frame a :class:`NotificationCreated` would have given."""

    kind: Literal["notifications.created"] = "notifications.created"
    notification: NotificationContent
    recipients: list[Recipient] = Field(min_length=1, max_length=FANOUT_CHUNK_RECIPIENTS)

    def payload_for(self, recipient: Recipient) -> NotificationPayload:
        return NotificationPayload(
            **self.notification.model_dump(),
            id=recipient.notification_id,
            seq=recipient.seq,
            recipient_id=recipient.user_id,
        )


class NotificationUpdated(Message):
    """A notification changed in place (alert updated, resolved, claimed)."""

    kind: Literal["notification.updated"] = "notification.updated"
    user_id: uuid.UUID
    notification: NotificationPayload
    unread: UnreadCount


class ReadStateChanged(Message):
    """Some (or all) of a user's notifications were marked read or unread."""

    kind: Literal["notification.read_state"] = "notification.read_state"
    user_id: uuid.UUID
    notification_ids: list[uuid.UUID] = Field(default_factory=list)
    all: bool = False
    read: bool = True
    unread: UnreadCount


class SessionRevoked(Message):
    """Close a user's sockets: one session (logout) or all of them (deactivation)."""

    kind: Literal["session.revoked"] = "session.revoked"
    user_id: uuid.UUID
    session_id: str | None = None
    reason: str


class ReportStatusChanged(Message):
    kind: Literal["report.status"] = "report.status"
    user_id: uuid.UUID
    job_id: uuid.UUID
    status: Literal["queued", "running", "done", "failed"]
    progress: float = 0.0
    error: str | None = None


RealtimeMessage = Annotated[
    NotificationCreated
    | NotificationsCreated
    | NotificationUpdated
    | ReadStateChanged
    | SessionRevoked
    | ReportStatusChanged,
    Field(discriminator="kind"),
]
realtime_adapter: TypeAdapter[RealtimeMessage] = TypeAdapter(RealtimeMessage)


# --- avisos.dispatch -------------------------------------------------------------------


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: str
    content_type: str
    #: Path of the file relative to the shared reports storage directory.
    storage_key: str


class Delivery(Message):
    """One decided delivery of one notification on one channel.

    ``delivery_id`` is the idempotency key: a dispatcher sends a given delivery at most
    once, however often the message is redelivered.
    """

    delivery_id: uuid.UUID
    notification_id: uuid.UUID | None = None
    user_id: uuid.UUID
    priority: Priority = "normal"
    attempt: int = 1


class EmailDelivery(Delivery):
    kind: Literal["delivery.email"] = "delivery.email"
    to: str
    to_name: str = ""
    subject: str
    text: str
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)


class SmsDelivery(Delivery):
    kind: Literal["delivery.sms"] = "delivery.sms"
    to: str = Field(pattern=r"^\+[1-9]\d{6,14}$")
    body: str


class PushDelivery(Delivery):
    """Sent to every Web Push subscription the user has at send time."""

    kind: Literal["delivery.push"] = "delivery.push"
    title: str
    body: str
    url: str | None = None
    tag: str | None = None


DeliveryMessage = Annotated[EmailDelivery | SmsDelivery | PushDelivery, Field(discriminator="kind")]
delivery_adapter: TypeAdapter[DeliveryMessage] = TypeAdapter(DeliveryMessage)


# --- inventory.events ------------------------------------------------------------------


class InventoryEvent(BaseModel):
    """The CloudEvents-like envelope inventory systems publish (see docs/events.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    time: dt.datetime
    subject: str | None = Field(default=None, max_length=200)
    data: dict[str, Any]
    schema_version: Literal[1] = SCHEMA_VERSION


# --- avisos.reports --------------------------------------------------------------------


class ReportJobRequested(Message):
    kind: Literal["report.requested"] = "report.requested"
    job_id: uuid.UUID
    requested_by: uuid.UUID
