"""Provider callbacks. ``POST /v1/webhooks/twilio/status``: Twilio's status reports for SMS.

The ``X-Twilio-Signature`` is checked with twilio's ``RequestValidator`` and the account's
auth token over the URL Twilio called (``AVISOS_TWILIO_STATUS_CALLBACK_URL``, the public URL
the dispatcher gave Twilio; the request URL only when it is unset) and the form fields.
A missing or wrong signature answers 403 problem+json and records nothing.

Final statuses (delivered, undelivered, failed) are added to the delivery log and set the
delivery's status; others (queued, sent...) are acknowledged and ignored. Twilio retries
callbacks, so a status already recorded for that message is not recorded twice.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from fastapi import APIRouter, Request, Response
from pydantic import SecretStr
from sqlalchemy import select, update
from twilio.request_validator import RequestValidator

from avisos_api.api.deps import SessionDep, StateDep
from avisos_api.exceptions import PermissionDenied
from avisos_api.models_delivery import Delivery, DeliveryAttempt
from avisos_common.settings import ServiceSettings

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

SIGNATURE_HEADER = "X-Twilio-Signature"
#: Twilio MessageStatus -> delivery-log status.
FINAL_STATUSES = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}


class TwilioWebhookSettings(ServiceSettings):
    twilio_auth_token: SecretStr | None = None
    twilio_status_callback_url: str | None = None
    secret_fields: tuple[str, ...] = ("twilio_auth_token",)


@lru_cache
def _env_settings() -> TwilioWebhookSettings:
    return TwilioWebhookSettings()


def webhook_settings(state: StateDep) -> TwilioWebhookSettings:
    """From ``state.extras['twilio_webhook']`` when set (tests), else the environment."""
    configured = state.extras.get("twilio_webhook")
    return configured if isinstance(configured, TwilioWebhookSettings) else _env_settings()


@router.post("/twilio/status", status_code=204)
async def twilio_status(request: Request, db: SessionDep, state: StateDep) -> Response:
    settings = webhook_settings(state)
    form = await request.form()
    params = {k: str(v) for k, v in form.items()}
    signature = request.headers.get(SIGNATURE_HEADER, "")
    url = settings.twilio_status_callback_url or str(request.url)
    token = settings.twilio_auth_token
    if token is None or not signature:
        raise PermissionDenied("missing or unverifiable Twilio signature")
    if not RequestValidator(token.get_secret_value()).validate(url, params, signature):
        raise PermissionDenied("Twilio signature does not match")

    sid = params.get("MessageSid", "")
    status = FINAL_STATUSES.get(params.get("MessageStatus", ""))
    if not sid or status is None:
        return Response(status_code=204)
    delivery = await db.scalar(select(Delivery).where(Delivery.provider_message_id == sid))
    if delivery is None:
        return Response(status_code=204)
    seen = await db.scalar(
        select(DeliveryAttempt.id).where(
            DeliveryAttempt.delivery_id == delivery.delivery_id,
            DeliveryAttempt.provider_message_id == sid,
            DeliveryAttempt.status == status,
        )
    )
    if seen is not None:
        return Response(status_code=204)
    now = dt.datetime.now(dt.UTC)
    error = None
    if status != "delivered":
        code = params.get("ErrorCode")
        error = f"twilio reported {params.get('MessageStatus')}" + (
            f" (error {code})" if code else ""
        )
    db.add(
        DeliveryAttempt(
            delivery_id=delivery.delivery_id,
            channel=delivery.channel,
            notification_id=delivery.notification_id,
            user_id=delivery.user_id,
            provider="twilio",
            provider_message_id=sid,
            status=status,
            error=error,
            attempt=delivery.attempts,
            started_at=now,
            finished_at=now,
        )
    )
    await db.execute(
        update(Delivery)
        .where(Delivery.delivery_id == delivery.delivery_id)
        .values(status=status, last_error=error, updated_at=now)
    )
    await db.commit()
    return Response(status_code=204)
