"""Notifications: create, list, read state, archive. Every query is scoped to a recipient.

Each function that changes something writes the realtime announcement to the outbox in
the same transaction and commits; the caller gets back what it needs for the response.
Other users' notifications are indistinguishable from missing ones (NotFound).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api import outbox
from avisos_api.core.cache import Cache
from avisos_api.exceptions import InvalidInput, NotFound
from avisos_api.models import Location, Notification, User, UserLocation
from avisos_api.services import unread
from avisos_common.messages import (
    FANOUT_CHUNK_RECIPIENTS,
    NotificationCreated,
    NotificationPayload,
    NotificationsCreated,
    NotificationUpdated,
    Priority,
    ReadStateChanged,
    Recipient,
    UnreadCount,
)

MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class NotificationSpec:
    """What to say; who to say it to is resolved separately."""

    type: str
    category: str
    subject: str
    message: str
    priority: Priority = "normal"
    data: dict[str, Any] = field(default_factory=dict)
    action_url: str | None = None
    source_event_id: str | None = None


def to_payload(n: Notification) -> NotificationPayload:
    return NotificationPayload(
        id=n.id,
        seq=n.seq,
        recipient_id=n.recipient_id,
        type=n.type,
        category=n.category,
        subject=n.subject,
        message=n.message,
        priority=n.priority,  # type: ignore[arg-type]
        data=n.data or {},
        action_url=n.action_url,
        source_event_id=n.source_event_id,
        created_at=n.created_at,
        updated_at=n.updated_at,
        read_at=n.read_at,
        archived_at=n.archived_at,
    )


async def resolve_recipients(
    session: AsyncSession,
    user_ids: Sequence[uuid.UUID] = (),
    roles: Sequence[str] = (),
    location_codes: Sequence[str] = (),
) -> list[uuid.UUID]:
    """Active users named explicitly, plus those with any of ``roles`` (restricted to
    ``location_codes`` when given) or, with no roles, everyone at ``location_codes``."""
    found: set[uuid.UUID] = set()
    if user_ids:
        rows = await session.scalars(
            select(User.id).where(User.id.in_(list(user_ids)), User.is_active.is_(True))
        )
        found.update(rows)
        missing = set(user_ids) - found
        if missing:
            raise InvalidInput(f"unknown or inactive users: {sorted(map(str, missing))}")
    if location_codes:
        known = set(
            await session.scalars(select(Location.code).where(Location.code.in_(location_codes)))
        )
        unknown = set(location_codes) - known
        if unknown:
            raise InvalidInput(f"unknown locations: {sorted(unknown)}")
    if roles or location_codes:
        q = select(User.id).where(User.is_active.is_(True))
        if roles:
            q = q.where(User.roles.overlap(list(roles)))
        if location_codes:
            q = q.where(
                User.id.in_(
                    select(UserLocation.user_id)
                    .join(Location, Location.id == UserLocation.location_id)
                    .where(Location.code.in_(location_codes))
                )
            )
        found.update(await session.scalars(q))
    return sorted(found)


async def allocate_seqs(
    session: AsyncSession, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Take the next cursor value of each user. Rows are locked in id order, so two
    transactions touching overlapping users never deadlock; the counter is a row, not a
    sequence, so a rolled-back transaction leaves no hole: per-user seqs are contiguous.
    ``FOR NO KEY UPDATE`` leaves foreign-key checks of rows referencing these users (KEY
    SHARE) unblocked: see ``events.context.lock_users``."""
    if not user_ids:
        return {}
    rows = await session.execute(
        text(
            """
            UPDATE users SET notification_seq = notification_seq + 1
            WHERE id IN (
                SELECT id FROM users WHERE id = ANY(:ids) ORDER BY id FOR NO KEY UPDATE
            )
            RETURNING id, notification_seq
            """
        ),
        {"ids": list(user_ids)},
    )
    return {r.id: int(r.notification_seq) for r in rows}


async def create(
    session: AsyncSession, spec: NotificationSpec, recipient_ids: Sequence[uuid.UUID]
) -> list[Notification]:
    """Insert one notification per recipient and announce each; does not commit."""
    if not recipient_ids:
        return []
    seqs = await allocate_seqs(session, recipient_ids)
    now = dt.datetime.now(dt.UTC)
    values = [
        {
            "id": uuid.uuid4(),
            "recipient_id": uid,
            "seq": seqs[uid],
            "type": spec.type,
            "category": spec.category,
            "subject": spec.subject,
            "message": spec.message,
            "priority": spec.priority,
            "data": spec.data,
            "action_url": spec.action_url,
            "source_event_id": spec.source_event_id,
            "created_at": now,
        }
        for uid in recipient_ids
    ]
    result = await session.scalars(insert(Notification).values(values).returning(Notification))
    rows = list(result)
    counts = await unread.compute(session, recipient_ids)
    announce_created(session, rows, counts)
    session.info.setdefault("unread_dirty", {}).update(counts)
    return rows


def announce_created(
    session: AsyncSession, rows: Sequence[Notification], counts: dict[uuid.UUID, UnreadCount]
) -> None:
    """Put the realtime announcement of new notifications in the outbox: one
    NotificationCreated for a single recipient; for more, the shared content once per
    chunk of recipients (NotificationsCreated), so a notification to 10,000 people is 20
    bus messages, not 10,000."""
    if len(rows) == 1:
        n = rows[0]
        outbox.add_realtime(
            session,
            NotificationCreated(
                user_id=n.recipient_id, notification=to_payload(n), unread=counts[n.recipient_id]
            ),
        )
        return
    content = to_payload(rows[0]).content()
    for start in range(0, len(rows), FANOUT_CHUNK_RECIPIENTS):
        chunk = rows[start : start + FANOUT_CHUNK_RECIPIENTS]
        outbox.add_realtime(
            session,
            NotificationsCreated(
                notification=content,
                recipients=[
                    Recipient(
                        user_id=n.recipient_id,
                        notification_id=n.id,
                        seq=n.seq,
                        unread=counts[n.recipient_id],
                    )
                    for n in chunk
                ],
            ),
        )


async def commit(session: AsyncSession, cache: Cache, ttl_secs: int) -> None:
    """Commit (waking the relays) and then store the unread counts computed inside the
    transaction, which are the post-commit truth."""
    await outbox.notify_relays(session)
    dirty: dict[uuid.UUID, UnreadCount] = session.info.pop("unread_dirty", {})
    await session.commit()
    if dirty:
        await unread.store(cache, dirty, ttl_secs)


def _scoped(user_id: uuid.UUID) -> Select[Notification]:
    return select(Notification).where(Notification.recipient_id == user_id)


@dataclass(frozen=True)
class ListFilter:
    read: bool | None = None
    archived: bool = False
    type: str | None = None
    category: str | None = None
    priority: Sequence[str] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    q: str | None = None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_for(
    session: AsyncSession,
    user_id: uuid.UUID,
    flt: ListFilter,
    cursor: int | None,
    limit: int,
) -> tuple[list[Notification], int | None]:
    """Newest first by ``seq``; the cursor is the last ``seq`` seen. New rows get larger
    seqs, so paging backwards never skips or repeats while notifications arrive."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    q = _scoped(user_id)
    if cursor is not None:
        q = q.where(Notification.seq < cursor)
    if flt.read is True:
        q = q.where(Notification.read_at.is_not(None))
    elif flt.read is False:
        q = q.where(Notification.read_at.is_(None))
    q = q.where(
        Notification.archived_at.is_not(None)
        if flt.archived
        else Notification.archived_at.is_(None)
    )
    if flt.type:
        q = q.where(Notification.type == flt.type)
    if flt.category:
        q = q.where(Notification.category == flt.category)
    if flt.priority:
        q = q.where(Notification.priority.in_(list(flt.priority)))
    if flt.since:
        q = q.where(Notification.created_at >= flt.since)
    if flt.until:
        q = q.where(Notification.created_at < flt.until)
    if flt.q:
        pattern = f"%{_escape_like(flt.q)}%"
        q = q.where(
            or_(
                Notification.subject.ilike(pattern, escape="\\"),
                Notification.message.ilike(pattern, escape="\\"),
            )
        )
    rows = list(await session.scalars(q.order_by(Notification.seq.desc()).limit(limit + 1)))
    next_cursor = rows[limit - 1].seq if len(rows) > limit else None
    return rows[:limit], next_cursor


async def get_for(
    session: AsyncSession, user_id: uuid.UUID, notification_id: uuid.UUID
) -> Notification:
    n = await session.scalar(_scoped(user_id).where(Notification.id == notification_id))
    if n is None:
        raise NotFound("notification not found")
    return n


async def set_read(
    session: AsyncSession,
    user_id: uuid.UUID,
    ids: Sequence[uuid.UUID] | None,
    *,
    read: bool = True,
    flt: dict[str, Any] | None = None,
) -> tuple[list[uuid.UUID], UnreadCount]:
    """Mark ``ids`` (or, with ids None, everything matching ``flt``) read or unread.

    Returns the ids whose state changed and the new unread count; does not commit."""
    conds = [Notification.recipient_id == user_id]
    if ids is not None:
        conds.append(Notification.id.in_(list(ids)))
    conds.append(Notification.read_at.is_(None) if read else Notification.read_at.is_not(None))
    flt = flt or {}
    if flt.get("category"):
        conds.append(Notification.category == flt["category"])
    if flt.get("type"):
        conds.append(Notification.type == flt["type"])
    if flt.get("priority"):
        conds.append(Notification.priority.in_(flt["priority"]))
    if flt.get("before"):
        conds.append(Notification.created_at < flt["before"])
    changed = list(
        await session.scalars(
            update(Notification)
            .where(and_(*conds))
            .values(read_at=func.now() if read else None)
            .returning(Notification.id)
        )
    )
    counts = (await unread.compute(session, [user_id]))[user_id]
    if changed or ids is None:
        outbox.add_realtime(
            session,
            ReadStateChanged(
                user_id=user_id, notification_ids=changed, all=ids is None, read=read, unread=counts
            ),
        )
    session.info.setdefault("unread_dirty", {})[user_id] = counts
    return changed, counts


async def archive(
    session: AsyncSession, user_id: uuid.UUID, notification_id: uuid.UUID
) -> Notification:
    n = await get_for(session, user_id, notification_id)
    if n.archived_at is None:
        seq = (await allocate_seqs(session, [user_id]))[user_id]
        n.archived_at = dt.datetime.now(dt.UTC)
        n.updated_at = n.archived_at
        n.seq = seq
        await session.flush()
        counts = (await unread.compute(session, [user_id]))[user_id]
        outbox.add_realtime(
            session, NotificationUpdated(user_id=user_id, notification=to_payload(n), unread=counts)
        )
        session.info.setdefault("unread_dirty", {})[user_id] = counts
    return n
