"""The caller's delivery preferences and contact points:

* ``GET/PUT /v1/me/preferences``: category x channel opt-in/out (mandatory ones locked),
  quiet hours, email digest.
* ``POST/GET /v1/me/push-subscriptions``, ``DELETE /v1/me/push-subscriptions/{id}``:
  the Web Push subscriptions of the caller's devices.
* ``GET /v1/push/vapid-public-key``: what the browser needs to subscribe.

Email and phone (E.164) are edited on the profile (``PATCH /v1/me``).
"""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from avisos_api.api.deps import CurrentUser, SessionDep, SettingsDep
from avisos_api.exceptions import NotFound
from avisos_api.models import PushSubscription
from avisos_api.services import preferences as svc

router = APIRouter(tags=["preferences"])


@router.get("/v1/me/preferences", response_model=svc.PreferencesOut)
async def get_preferences(user: CurrentUser, db: SessionDep) -> svc.PreferencesOut:
    return await svc.view(db, user)


@router.put("/v1/me/preferences", response_model=svc.PreferencesOut)
async def put_preferences(
    body: svc.PreferencesUpdate, user: CurrentUser, db: SessionDep
) -> svc.PreferencesOut:
    """Change what is given; turning off a locked (mandatory or in-app) channel is 422."""
    await svc.update(db, user, body, set(body.model_fields_set))
    await db.commit()
    return await svc.view(db, user)


class PushKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_=-]+$")
    auth: str = Field(min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_=-]+$")


class PushSubscriptionIn(BaseModel):
    """The browser's ``PushSubscription.toJSON()``."""

    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=10, max_length=2000, pattern=r"^https://")
    keys: PushKeys


class PushSubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint: str
    user_agent: str | None
    created_at: dt.datetime
    last_success_at: dt.datetime | None


@router.post(
    "/v1/me/push-subscriptions",
    response_model=PushSubscriptionOut,
    status_code=status.HTTP_201_CREATED,
)
async def add_push_subscription(
    body: PushSubscriptionIn, request: Request, user: CurrentUser, db: SessionDep
) -> PushSubscriptionOut:
    """Register this device. An endpoint already known moves to the caller (a shared
    device belongs to whoever subscribed last) with its new keys."""
    sub = await db.scalar(
        select(PushSubscription).where(PushSubscription.endpoint == body.endpoint)
    )
    if sub is None:
        sub = PushSubscription(endpoint=body.endpoint)
        db.add(sub)
    sub.user_id = user.id
    sub.p256dh = body.keys.p256dh
    sub.auth = body.keys.auth
    sub.user_agent = (request.headers.get("user-agent") or "")[:300] or None
    await db.commit()
    await db.refresh(sub)
    return PushSubscriptionOut.model_validate(sub)


@router.get("/v1/me/push-subscriptions", response_model=list[PushSubscriptionOut])
async def list_push_subscriptions(user: CurrentUser, db: SessionDep) -> list[PushSubscriptionOut]:
    rows = await db.scalars(
        select(PushSubscription)
        .where(PushSubscription.user_id == user.id)
        .order_by(PushSubscription.created_at)
    )
    return [PushSubscriptionOut.model_validate(r) for r in rows]


@router.delete(
    "/v1/me/push-subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def delete_push_subscription(
    subscription_id: uuid.UUID, user: CurrentUser, db: SessionDep
) -> Response:
    sub = await db.get(PushSubscription, subscription_id)
    if sub is None or sub.user_id != user.id:
        raise NotFound("push subscription not found")
    await db.delete(sub)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class VapidKey(BaseModel):
    public_key: str


@router.get("/v1/push/vapid-public-key", response_model=VapidKey)
async def vapid_public_key(settings: SettingsDep) -> VapidKey:
    if not settings.vapid_public_key:
        raise NotFound("Web Push is not configured (AVISOS_VAPID_PUBLIC_KEY)")
    return VapidKey(public_key=settings.vapid_public_key)
