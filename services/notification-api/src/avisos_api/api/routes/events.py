"""The HTTP door for inventory events: ``POST /v1/events`` (API key with
``events:publish``, or an admin). Same contract and effect as publishing to the
``inventory.events`` exchange; see docs/events.md."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from avisos_api.api.deps import AdminUser, Principal, SessionDep, StateDep, require_scope
from avisos_api.events import schemas as event_schemas
from avisos_api.events.ingest import ingest
from avisos_api.exceptions import InvalidInput
from avisos_api.models_events import ProcessedEvent

router = APIRouter(prefix="/v1/events", tags=["events"])

Publisher = Annotated[Principal, Depends(require_scope("events:publish"))]


@router.post(
    "",
    status_code=201,
    responses={
        200: {"description": "Already applied (same source and id): nothing changed"},
        201: {"description": "Applied"},
        422: {"description": "Unknown type or invalid envelope/data (problem+json)"},
    },
)
async def publish_event(
    state: StateDep,
    _: Publisher,
    body: Annotated[dict[str, Any], Body(description="An event envelope (docs/events.md)")],
) -> JSONResponse:
    """Apply one event. Retrying with the same ``source`` and ``id`` is safe: the event
    is applied once, later attempts answer 200 with ``duplicate: true``."""
    try:
        ev = event_schemas.parse_event(body)
    except event_schemas.InvalidEvent as exc:
        raise InvalidInput(exc.reason) from None
    result = await ingest(state, ev, "http")
    return JSONResponse(result.as_json(), status_code=200 if result.duplicate else 201)


@router.get("/schema")
async def event_schema() -> dict[str, Any]:
    """The JSON Schema of the accepted events (also committed as docs/events.schema.json)."""
    return event_schemas.json_schema()


@router.get("/types")
async def event_types() -> dict[str, Any]:
    """Every event type with an example ``data``."""
    return {
        "types": [
            {"type": t, "example": event_schemas.EXAMPLES[t]} for t in event_schemas.EVENT_TYPES
        ]
    }


class EventRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    source: str
    id: str
    type: str
    time: dt.datetime
    subject: str | None
    data: dict[str, Any]
    received_via: str
    received_at: dt.datetime
    notification_count: int
    alert_id: uuid.UUID | None
    acknowledged_by: uuid.UUID | None
    acknowledged_at: dt.datetime | None


@router.get("", response_model=list[EventRecord])
async def list_events(
    _: AdminUser,
    db: SessionDep,
    type: str | None = Query(default=None, max_length=100),
    source: str | None = Query(default=None, max_length=200),
    before: dt.datetime | None = Query(default=None, description="received_at of the last seen"),
    limit: int = Query(default=50, ge=1, le=500),
) -> list[EventRecord]:
    """Recently applied events, newest first (admins): what came in, by which door, and
    how many notifications each made."""
    q = select(ProcessedEvent)
    if type:
        q = q.where(ProcessedEvent.type == type)
    if source:
        q = q.where(ProcessedEvent.source == source)
    if before:
        q = q.where(ProcessedEvent.received_at < before)
    rows = await db.scalars(q.order_by(ProcessedEvent.received_at.desc()).limit(limit))
    return [EventRecord.model_validate(r) for r in rows]
