"""The notifications REST API. Every route is scoped to the caller: another user's
notification answers 404, exactly like a missing one."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from avisos_api.api.deps import (
    CacheDep,
    CurrentUser,
    Principal,
    SessionDep,
    SettingsDep,
    require_scope,
)
from avisos_api.exceptions import InvalidInput
from avisos_api.schemas import (
    MarkAllRead,
    MarkReadResult,
    NotificationCreate,
    NotificationCreated,
    NotificationPage,
    NotificationPublic,
)
from avisos_api.services import idempotency, unread
from avisos_api.services import notifications as svc
from avisos_common.messages import Priority, UnreadCount

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

Writer = Annotated[Principal, Depends(require_scope("notifications:write"))]


def _cursor(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        cursor = int(value)
    except ValueError:
        raise InvalidInput("cursor is not valid; use next_cursor from a previous page") from None
    if cursor < 0:
        raise InvalidInput("cursor is not valid")
    return cursor


@router.get("", response_model=NotificationPage)
async def list_notifications(
    user: CurrentUser,
    db: SessionDep,
    read: bool | None = Query(default=None, description="true: only read; false: only unread"),
    archived: bool = False,
    type: str | None = Query(default=None, max_length=100),
    category: str | None = Query(default=None, max_length=64),
    priority: list[Priority] = Query(default=[]),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    q: str | None = Query(default=None, max_length=200, description="text in subject or message"),
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=svc.MAX_PAGE_SIZE),
) -> NotificationPage:
    flt = svc.ListFilter(
        read=read,
        archived=archived,
        type=type,
        category=category,
        priority=priority,
        since=since,
        until=until,
        q=q,
    )
    rows, next_cursor = await svc.list_for(db, user.id, flt, _cursor(cursor), limit)
    return NotificationPage(
        items=[svc.to_payload(n) for n in rows],
        next_cursor=str(next_cursor) if next_cursor is not None else None,
    )


@router.get("/unread-count", response_model=UnreadCount)
async def unread_count(
    user: CurrentUser, db: SessionDep, cache: CacheDep, settings: SettingsDep
) -> UnreadCount:
    return await unread.get(db, cache, user.id, settings.unread_cache_ttl_secs)


@router.post("/read-all", response_model=MarkReadResult)
async def read_all(
    user: CurrentUser,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    body: MarkAllRead | None = None,
) -> MarkReadResult:
    """Mark all unread notifications read, optionally only those matching the filter."""
    flt = body.model_dump(exclude_none=True) if body else {}
    changed, counts = await svc.set_read(db, user.id, None, read=True, flt=flt)
    await svc.commit(db, cache, settings.unread_cache_ttl_secs)
    return MarkReadResult(updated=len(changed), unread=counts)


@router.get("/{notification_id}", response_model=NotificationPublic)
async def get_notification(
    notification_id: uuid.UUID, user: CurrentUser, db: SessionDep
) -> NotificationPublic:
    return svc.to_payload(await svc.get_for(db, user.id, notification_id))


async def _set_read_one(
    notification_id: uuid.UUID,
    read: bool,
    user_id: uuid.UUID,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> NotificationPublic:
    await svc.get_for(db, user_id, notification_id)  # 404 for others' notifications
    await svc.set_read(db, user_id, [notification_id], read=read)
    await svc.commit(db, cache, settings.unread_cache_ttl_secs)
    return svc.to_payload(await svc.get_for(db, user_id, notification_id))


@router.post("/{notification_id}/read", response_model=NotificationPublic)
async def mark_read(
    notification_id: uuid.UUID,
    user: CurrentUser,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> NotificationPublic:
    return await _set_read_one(notification_id, True, user.id, db, cache, settings)


@router.post("/{notification_id}/unread", response_model=NotificationPublic)
async def mark_unread(
    notification_id: uuid.UUID,
    user: CurrentUser,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> NotificationPublic:
    return await _set_read_one(notification_id, False, user.id, db, cache, settings)


@router.post("/{notification_id}/archive", response_model=NotificationPublic)
async def archive(
    notification_id: uuid.UUID,
    user: CurrentUser,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> NotificationPublic:
    n = await svc.archive(db, user.id, notification_id)
    await svc.commit(db, cache, settings.unread_cache_ttl_secs)
    return svc.to_payload(n)


async def create_notifications(
    body: NotificationCreate, db: SessionDep, cache: CacheDep, settings: SettingsDep
) -> NotificationCreated:
    """Resolve recipients, insert, announce; commits. Shared with the internal route."""
    recipients = await svc.resolve_recipients(db, body.user_ids, body.roles, body.location_codes)
    spec = svc.NotificationSpec(
        type=body.type,
        category=body.category,
        subject=body.subject,
        message=body.message,
        priority=body.priority,
        data=body.data,
        action_url=body.action_url,
        source_event_id=body.source_event_id,
    )
    rows = await svc.create(db, spec, recipients)
    return NotificationCreated(
        created=len(rows),
        notification_ids=[n.id for n in rows],
        recipient_ids=[n.recipient_id for n in rows],
    )


@router.post(
    "",
    response_model=NotificationCreated,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Idempotency-Key reused with a different body"}},
)
async def create(
    body: NotificationCreate,
    request: Request,
    principal: Writer,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> NotificationCreated | JSONResponse:
    """Create notifications (API key with ``notifications:write``, or an admin) for
    users, a role, a location, or role at location. With ``Idempotency-Key`` a retried
    request within 24 h gets the first answer and creates nothing more."""
    if idempotency_key is None:
        result = await create_notifications(body, db, cache, settings)
        await svc.commit(db, cache, settings.unread_cache_ttl_secs)
        return result
    key = idempotency.check_key(idempotency_key)
    # Read before any rollback below expires the ORM objects the principal holds.
    owner = principal.key
    req_hash = idempotency.request_hash("POST", request.url.path, body.model_dump(mode="json"))
    stored = await idempotency.lookup(db, owner, key, req_hash)
    if stored is not None:
        return JSONResponse(
            stored.response_body,
            status_code=stored.status_code,
            headers={"Idempotent-Replayed": "true"},
        )
    result = await create_notifications(body, db, cache, settings)
    await idempotency.remember(
        db,
        owner,
        key,
        req_hash,
        201,
        result.model_dump(mode="json"),
        settings.idempotency_ttl_secs,
    )
    try:
        await svc.commit(db, cache, settings.unread_cache_ttl_secs)
    except IntegrityError:
        # A concurrent request with the same key committed first: answer like it did.
        await db.rollback()
        stored = await idempotency.lookup(db, owner, key, req_hash)
        if stored is None:
            raise
        return JSONResponse(
            stored.response_body,
            status_code=stored.status_code,
            headers={"Idempotent-Replayed": "true"},
        )
    return result
