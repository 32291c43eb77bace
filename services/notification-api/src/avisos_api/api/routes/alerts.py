"""Team claims: ``POST /v1/notifications/{id}/acknowledge`` ("handled by Ana")."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from avisos_api.api.deps import CurrentUser, StateDep
from avisos_api.api.errors import problem
from avisos_api.events import alerts
from avisos_api.events.context import Work, state_clock
from avisos_api.schemas import NotificationPublic
from avisos_api.services import notifications as notif_svc

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.post(
    "/{notification_id}/acknowledge",
    response_model=NotificationPublic,
    responses={409: {"description": "Someone else has it (acknowledged_by_name says who)"}},
)
async def acknowledge(
    notification_id: uuid.UUID, request: Request, user: CurrentUser, state: StateDep
) -> NotificationPublic | JSONResponse:
    """Take the alert (or event) behind this notification: every recipient's notification
    is updated in place to show who handles it, and escalation stops."""
    async with state.sessionmaker() as session:
        work = Work(session, state_clock(state.extras)(), state.settings)
        try:
            n = await alerts.acknowledge(work, user, notification_id)
        except alerts.AlreadyAcknowledged as exc:
            return problem(
                request,
                409,
                exc.slug,
                exc.title,
                exc.detail,
                acknowledged_by=str(exc.by),
                acknowledged_by_name=exc.name,
                acknowledged_at=exc.at.isoformat() if exc.at else None,
            )
        payload = notif_svc.to_payload(n)
        await work.renderer.flush_errors(work.now)
        await notif_svc.commit(session, state.cache, state.settings.unread_cache_ttl_secs)
    return payload
