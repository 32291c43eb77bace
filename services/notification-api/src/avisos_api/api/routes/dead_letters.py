"""Admin view of dead letters and their replay.

* ``GET /v1/admin/dead-letters``: newest first, optional ``queue`` filter, cursor pages.
* ``POST /v1/admin/dead-letters/{id}/replay``: republish the original body to its origin
  queue through the default exchange, with a fresh attempt counter, via the outbox (the
  publish happens after commit and only counts once the broker confirms). A failed delivery
  is reopened (``deliveries.status`` back to ``retrying``) so the dispatcher's idempotency
  record lets it be sent again.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, update

from avisos_api import outbox
from avisos_api.api.deps import AdminUser, SessionDep
from avisos_api.exceptions import Conflict, InvalidInput, NotFound
from avisos_api.models import OutboxMessage
from avisos_api.models_delivery import DeadLetter, Delivery
from avisos_api.workers.dead_letters import HEADER_REPLAY
from avisos_common import topology

router = APIRouter(prefix="/v1/admin/dead-letters", tags=["dead-letters"])

MAX_PAGE = 200
BODY_PREVIEW_CHARS = 4000
#: Headers of a dead letter that must not travel with the replayed message.
_DROP_HEADERS = (
    topology.HEADER_ATTEMPT,
    topology.HEADER_DELAY,
    topology.HEADER_REASON,
    topology.HEADER_ORIGIN_QUEUE,
    topology.HEADER_ORIGIN_EXCHANGE,
    topology.HEADER_ORIGIN_ROUTING_KEY,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)


class DeadLetterPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    message_id: str | None
    origin_queue: str | None
    origin_exchange: str | None
    origin_routing_key: str | None
    reason: str | None
    headers: dict[str, Any]
    body: str
    content_type: str | None
    received_at: dt.datetime
    replayed_at: dt.datetime | None
    replay_count: int


class DeadLetterPage(BaseModel):
    items: list[DeadLetterPublic]
    next_cursor: str | None


def _public(row: DeadLetter) -> DeadLetterPublic:
    return DeadLetterPublic(
        id=row.id,
        message_id=row.message_id,
        origin_queue=row.origin_queue,
        origin_exchange=row.origin_exchange,
        origin_routing_key=row.origin_routing_key,
        reason=row.reason,
        headers=row.headers,
        body=row.body.decode("utf-8", errors="replace")[:BODY_PREVIEW_CHARS],
        content_type=row.content_type,
        received_at=row.received_at,
        replayed_at=row.replayed_at,
        replay_count=row.replay_count,
    )


@router.get("", response_model=DeadLetterPage)
async def list_dead_letters(
    admin: AdminUser,
    db: SessionDep,
    queue: str | None = Query(default=None, max_length=200),
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
) -> DeadLetterPage:
    query = select(DeadLetter)
    if queue:
        query = query.where(DeadLetter.origin_queue == queue)
    if cursor:
        if not cursor.isdigit():
            raise InvalidInput("cursor is not valid")
        query = query.where(DeadLetter.id < int(cursor))
    rows = (await db.scalars(query.order_by(DeadLetter.id.desc()).limit(limit + 1))).all()
    items = [_public(r) for r in rows[:limit]]
    return DeadLetterPage(
        items=items, next_cursor=str(items[-1].id) if len(rows) > limit and items else None
    )


@router.post("/{dead_letter_id}/replay", response_model=DeadLetterPublic)
async def replay_dead_letter(
    dead_letter_id: int, admin: AdminUser, db: SessionDep
) -> DeadLetterPublic:
    row = await db.get(DeadLetter, dead_letter_id, with_for_update=True)
    if row is None:
        raise NotFound("dead letter not found")
    if not row.origin_queue:
        raise Conflict("the origin queue of this message is unknown; it cannot be replayed")
    headers = {k: v for k, v in row.headers.items() if k not in _DROP_HEADERS}
    headers[topology.HEADER_ATTEMPT] = 1
    headers[HEADER_REPLAY] = row.replay_count + 1
    db.add(
        OutboxMessage(
            message_id=row.message_id or uuid.uuid4().hex,
            exchange="",  # the default exchange routes by queue name
            routing_key=row.origin_queue,
            body=row.body,
            headers=headers,
            mandatory=True,
            attempts=0,
        )
    )
    db.info["outbox_dirty"] = True
    delivery_id = _delivery_id(row.body)
    if delivery_id is not None:
        await db.execute(
            update(Delivery)
            .where(Delivery.delivery_id == delivery_id, Delivery.status == "failed")
            .values(status="retrying", updated_at=dt.datetime.now(dt.UTC))
        )
    row.replayed_at = dt.datetime.now(dt.UTC)
    row.replay_count += 1
    row.replayed_by = admin.id
    await outbox.notify_relays(db)
    await db.commit()
    return _public(row)


def _delivery_id(body: bytes) -> uuid.UUID | None:
    try:
        doc = json.loads(body)
        return uuid.UUID(str(doc["delivery_id"])) if isinstance(doc, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
