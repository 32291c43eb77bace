"""Telling the requester: the API's internal notification endpoint and the email copy."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx

from avisos_common.amqp import Publisher
from avisos_common.messages import Attachment, EmailDelivery
from avisos_common.topology import EXCHANGE_DISPATCH, dispatch_routing_key

log = logging.getLogger(__name__)

INTERNAL_TOKEN_HEADER = "X-Avisos-Internal-Token"  # noqa: S105 - a header name
NOTIFICATIONS_PATH = "/internal/v1/notifications"
#: Tries of the internal call before giving up (the socket already showed "done").
NOTIFY_TRIES = 3
NOTIFY_TIMEOUT_SECS = 10.0
NOTIFY_BACKOFF_SECS = 1.0
#: Namespace of the deterministic delivery ids of report emails (one email per job).
REPORT_EMAIL_NAMESPACE = uuid.UUID("7c1f1f52-7d0e-4b1e-9c55-0b7f3d6a4e21")


class Notifier:
    """Posts "report ready" in-app notifications to the API."""

    def __init__(self, base_url: str, token: str, client: httpx.AsyncClient | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._client = client or httpx.AsyncClient(timeout=NOTIFY_TIMEOUT_SECS)

    async def report_ready(
        self,
        *,
        job_id: uuid.UUID,
        user_id: uuid.UUID,
        subject: str,
        message: str,
        data: dict[str, Any],
    ) -> bool:
        """Create the in-app notification; True when the API accepted it."""
        body = {
            "user_ids": [str(user_id)],
            "type": "report.ready",
            "category": "reports",
            "subject": subject,
            "message": message,
            "priority": "normal",
            "data": data,
            "action_url": f"/reports/{job_id}",
        }
        headers = {
            INTERNAL_TOKEN_HEADER: self.token,
            # A retried call must not create a second notification.
            "Idempotency-Key": f"report-ready-{job_id}",
        }
        url = self.base_url + NOTIFICATIONS_PATH
        for attempt in range(1, NOTIFY_TRIES + 1):
            try:
                resp = await self._client.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("report-ready call failed", extra={"error": str(exc), "try": attempt})
            else:
                if resp.status_code < 300:
                    return True
                log.warning(
                    "report-ready call refused",
                    extra={"status": resp.status_code, "try": attempt, "body": resp.text[:300]},
                )
                if resp.status_code < 500 and resp.status_code != 429:
                    return False
            await asyncio.sleep(NOTIFY_BACKOFF_SECS * attempt)
        return False

    async def aclose(self) -> None:
        await self._client.aclose()


def report_email(
    *,
    job_id: uuid.UUID,
    user_id: uuid.UUID,
    to: str,
    to_name: str,
    subject: str,
    text: str,
    file_name: str,
    storage_key: str,
    content_type: str,
) -> EmailDelivery:
    return EmailDelivery(
        delivery_id=uuid.uuid5(REPORT_EMAIL_NAMESPACE, str(job_id)),
        user_id=user_id,
        priority="normal",
        to=to,
        to_name=to_name,
        subject=subject,
        text=text,
        attachments=[
            Attachment(filename=file_name, content_type=content_type, storage_key=storage_key)
        ],
    )


async def send_report_email(publisher: Publisher, email: EmailDelivery) -> None:
    await publisher.publish(EXCHANGE_DISPATCH, dispatch_routing_key("email", "normal"), email)
