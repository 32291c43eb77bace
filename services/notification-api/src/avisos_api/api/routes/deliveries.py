"""The delivery log: every attempt at email, SMS and push, read-only.

* ``GET /v1/notifications/{id}/deliveries``: the attempts for one notification (its
  recipient or an admin; anyone else gets 404, like a missing notification).
* ``GET /v1/me/deliveries``: the caller's own attempts.
* ``GET /v1/admin/deliveries``: everything, filtered by channel, status and date.

Pages are newest first; ``next_cursor`` (the last row id) fetches the next page.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, select

from avisos_api.api.deps import AdminUser, CurrentUser, SessionDep
from avisos_api.exceptions import InvalidInput, NotFound
from avisos_api.models import Notification
from avisos_api.models_delivery import DeliveryAttempt

router = APIRouter(tags=["deliveries"])

MAX_PAGE = 200
DeliveryChannel = Literal["email", "sms", "push"]
AttemptStatus = Literal["queued", "sent", "delivered", "failed", "bounced", "undelivered"]


class DeliveryAttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    delivery_id: uuid.UUID
    channel: str
    notification_id: uuid.UUID | None
    user_id: uuid.UUID
    provider: str | None
    provider_message_id: str | None
    status: str
    error: str | None
    attempt: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    latency_ms: int | None


class DeliveryAttemptPage(BaseModel):
    items: list[DeliveryAttemptPublic]
    next_cursor: str | None


def _cursor(value: str | None) -> int | None:
    if not value:
        return None
    try:
        cursor = int(value)
    except ValueError:
        raise InvalidInput("cursor is not valid; use next_cursor from a previous page") from None
    if cursor <= 0:
        raise InvalidInput("cursor is not valid")
    return cursor


async def _page(
    db: SessionDep, query: Select[DeliveryAttempt], cursor: str | None, limit: int
) -> DeliveryAttemptPage:
    after = _cursor(cursor)
    if after is not None:
        query = query.where(DeliveryAttempt.id < after)
    rows = (await db.scalars(query.order_by(DeliveryAttempt.id.desc()).limit(limit + 1))).all()
    items = [DeliveryAttemptPublic.model_validate(r) for r in rows[:limit]]
    next_cursor = str(items[-1].id) if len(rows) > limit and items else None
    return DeliveryAttemptPage(items=items, next_cursor=next_cursor)


@router.get("/v1/notifications/{notification_id}/deliveries", response_model=DeliveryAttemptPage)
async def notification_deliveries(
    notification_id: uuid.UUID,
    user: CurrentUser,
    db: SessionDep,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
) -> DeliveryAttemptPage:
    note = await db.get(Notification, notification_id)
    if note is None or (note.recipient_id != user.id and "admin" not in user.roles):
        raise NotFound("notification not found")
    query = select(DeliveryAttempt).where(DeliveryAttempt.notification_id == notification_id)
    return await _page(db, query, cursor, limit)


@router.get("/v1/me/deliveries", response_model=DeliveryAttemptPage)
async def my_deliveries(
    user: CurrentUser,
    db: SessionDep,
    channel: DeliveryChannel | None = None,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
) -> DeliveryAttemptPage:
    query = select(DeliveryAttempt).where(DeliveryAttempt.user_id == user.id)
    if channel:
        query = query.where(DeliveryAttempt.channel == channel)
    return await _page(db, query, cursor, limit)


@router.get("/v1/admin/deliveries", response_model=DeliveryAttemptPage)
async def admin_deliveries(
    admin: AdminUser,
    db: SessionDep,
    channel: DeliveryChannel | None = None,
    status: AttemptStatus | None = None,
    since: dt.datetime | None = Query(default=None, description="started_at >= since"),
    until: dt.datetime | None = Query(default=None, description="started_at < until"),
    user_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
) -> DeliveryAttemptPage:
    query = select(DeliveryAttempt)
    if channel:
        query = query.where(DeliveryAttempt.channel == channel)
    if status:
        query = query.where(DeliveryAttempt.status == status)
    if since:
        query = query.where(DeliveryAttempt.started_at >= since)
    if until:
        query = query.where(DeliveryAttempt.started_at < until)
    if user_id:
        query = query.where(DeliveryAttempt.user_id == user_id)
    return await _page(db, query, cursor, limit)
