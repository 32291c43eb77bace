"""Endpoints for other Avisos services (gateway, reports), authenticated by
``X-Avisos-Internal-Token``. The front proxy never routes ``/internal``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from avisos_api.api.deps import CacheDep, InternalCaller, SessionDep, SettingsDep
from avisos_api.api.routes.notifications import create_notifications
from avisos_api.schemas import (
    InternalMarkRead,
    MarkReadResult,
    NotificationCreate,
    NotificationCreated,
)
from avisos_api.services import notifications as svc
from avisos_api.services import users

router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)


@router.post("/users/{user_id}/notifications/read", response_model=MarkReadResult)
async def mark_read(
    user_id: uuid.UUID,
    body: InternalMarkRead,
    _: InternalCaller,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> MarkReadResult:
    """Mark read on behalf of a user whose identity the gateway verified (its ticket).
    Ids of other users' notifications are ignored."""
    await users.get(db, user_id)
    changed, counts = await svc.set_read(db, user_id, None if body.all else body.ids, read=True)
    await svc.commit(db, cache, settings.unread_cache_ttl_secs)
    return MarkReadResult(updated=len(changed), unread=counts)


@router.post(
    "/notifications", response_model=NotificationCreated, status_code=status.HTTP_201_CREATED
)
async def create(
    body: NotificationCreate,
    _: InternalCaller,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> NotificationCreated:
    result = await create_notifications(body, db, cache, settings)
    await svc.commit(db, cache, settings.unread_cache_ttl_secs)
    return result
