"""The HTTP door for inventory events: ``POST /v1/events`` (API key with
``events:publish``, or an admin). Same contract and effect as publishing to the
``inventory.events`` exchange; see docs/events.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from avisos_api.api.deps import Principal, StateDep, require_scope
from avisos_api.events import schemas as event_schemas
from avisos_api.events.ingest import ingest
from avisos_api.exceptions import InvalidInput

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
