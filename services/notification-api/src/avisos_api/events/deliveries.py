"""From a notification to email / SMS / push deliveries: preferences, contact points,
quiet hours, digests and "only if still unread", then the outbox.

:func:`plan` decides for one notification and its recipient; what must wait becomes a
``scheduled_deliveries`` row that :func:`release_due` (run by a background loop with the
injectable clock) sends later, through the outbox, in the transaction that marks it
released.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api import outbox
from avisos_api.events.context import Work, delivery_id
from avisos_api.models import Notification, PushSubscription, User
from avisos_api.models_events import ScheduledDelivery
from avisos_api.services.preferences import UserPrefs, load_many
from avisos_common.messages import (
    Channel,
    DeliveryMessage,
    EmailDelivery,
    Priority,
    PushDelivery,
    SmsDelivery,
    delivery_adapter,
)

log = logging.getLogger(__name__)

#: Rows released per pass of the loop (the rest waits for the next pass).
RELEASE_BATCH = 500
DIGEST_NS = uuid.UUID("8e0f4a4c-31a1-4c1e-bd5b-1f6f0a2d9c77")


async def _has_push(session: AsyncSession, user_id: uuid.UUID) -> bool:
    n = await session.scalar(
        select(func.count())
        .select_from(PushSubscription)
        .where(PushSubscription.user_id == user_id)
    )
    return bool(n)


async def build(
    work: Work, n: Notification, user: User, channel: Channel
) -> DeliveryMessage | None:
    """Render the channel's template for ``n`` in the user's language. None if the user
    has no contact point on that channel (no phone, no push subscription)."""
    if channel == "sms" and not user.phone:
        return None
    if channel == "push" and not await _has_push(work.session, user.id):
        return None
    ctx = await work.context(n.data or {}, user, n.priority)
    parts = (await work.renderer.render(n.type, channel, user.locale, ctx)).parts
    common: dict[str, Any] = {
        "delivery_id": delivery_id(n.id, channel),
        "notification_id": n.id,
        "user_id": user.id,
        "priority": n.priority,
    }
    if channel == "email":
        return EmailDelivery(
            **common,
            to=user.email,
            to_name=user.display_name,
            subject=parts.get("subject") or n.subject,
            text=parts.get("text") or n.message,
            html=parts.get("html") or None,
        )
    if channel == "sms":
        return SmsDelivery(**common, to=user.phone or "", body=parts.get("text") or n.subject)
    alert = (n.data or {}).get("alert") or {}
    return PushDelivery(
        **common,
        title=parts.get("title") or n.subject,
        body=parts.get("body") or n.message,
        url=n.action_url,
        tag=str(alert.get("id") or n.id),
    )


def _schedule(
    work: Work,
    kind: str,
    n: Notification,
    channel: str,
    due_at: dt.datetime,
    payload: dict[str, Any],
    digest_window: str | None = None,
) -> None:
    work.session.add(
        ScheduledDelivery(
            kind=kind,
            user_id=n.recipient_id,
            notification_id=n.id,
            channel=channel,
            due_at=due_at,
            payload=payload,
            digest_window=digest_window,
        )
    )


async def plan(
    work: Work,
    n: Notification,
    user: User,
    prefs: UserPrefs,
    channels: Sequence[Channel],
    email_delay_minutes: int | None = None,
) -> dict[str, str]:
    """Decide each non-in-app channel of ``n``; returns ``{channel: outcome}`` with outcome
    one of sent, deferred, digest, unread_check, opted_out, no_contact."""
    outcomes: dict[str, str] = {}
    critical = n.priority == "critical"
    for channel in channels:
        if channel == "in_app":
            continue
        if not prefs.allows(n.category, channel):
            outcomes[channel] = "opted_out"
            continue
        msg = await build(work, n, user, channel)
        if msg is None:
            outcomes[channel] = "no_contact"
            continue
        payload = msg.model_dump(mode="json")
        if channel == "email" and email_delay_minutes:
            due = work.now + dt.timedelta(minutes=email_delay_minutes)
            _schedule(work, "unread_check", n, channel, due, payload)
            outcomes[channel] = "unread_check"
            continue
        if channel == "email" and n.priority == "low":
            window = prefs.digest_window(work.now)
            if window is not None:
                item = {"subject": n.subject, "message": n.message, "type": n.type}
                _schedule(work, "digest", n, channel, window[1], item, window[0])
                outcomes[channel] = "digest"
                continue
        quiet_end = None if critical else prefs.quiet_until(work.now)
        if quiet_end is not None:
            _schedule(work, "deferred", n, channel, quiet_end, payload)
            outcomes[channel] = "deferred"
            continue
        outbox.add_delivery(work.session, msg)
        outcomes[channel] = "sent"
    return outcomes


async def release_due(work: Work, limit: int = RELEASE_BATCH) -> int:
    """Send what is due at ``work.now``; returns how many rows were settled. Rows are
    claimed with SKIP LOCKED, so several API processes can run this at once. Does not
    commit."""
    rows = list(
        await work.session.scalars(
            select(ScheduledDelivery)
            .where(ScheduledDelivery.released_at.is_(None), ScheduledDelivery.due_at <= work.now)
            .order_by(ScheduledDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not rows:
        return 0
    users = await work.users({r.user_id for r in rows})
    prefs = await load_many(work.session, users.values())
    digests: dict[tuple[uuid.UUID, str], list[ScheduledDelivery]] = {}
    for row in rows:
        if row.kind == "digest":
            digests.setdefault((row.user_id, row.digest_window or ""), []).append(row)
            continue
        user = users.get(row.user_id)
        if user is None or not user.is_active:
            row.released_at, row.outcome = work.now, "inactive"
            continue
        await _release_one(work, row, prefs.get(row.user_id))
    for (user_id, window), items in digests.items():
        user = users.get(user_id)
        if user is None or not user.is_active:
            for r in items:
                r.released_at, r.outcome = work.now, "inactive"
            continue
        await _release_digest(work, user, prefs[user_id], window, items)
    await work.session.flush()
    return len(rows)


async def _release_one(work: Work, row: ScheduledDelivery, prefs: UserPrefs | None) -> None:
    msg = delivery_adapter.validate_python(row.payload)
    n = None
    if row.notification_id is not None:
        n = await work.session.get(Notification, row.notification_id)
    if row.kind == "unread_check" and (
        n is None or n.read_at is not None or n.archived_at is not None
    ):
        row.released_at, row.outcome = work.now, "read"
        return
    if n is not None and prefs is not None and not prefs.allows(n.category, row.channel):
        # The user opted out while it waited (e.g. during quiet hours).
        row.released_at, row.outcome = work.now, "opted_out"
        return
    quiet_end = None
    if prefs is not None and msg.priority != "critical":
        quiet_end = prefs.quiet_until(work.now)
    if quiet_end is not None:
        # Became due inside quiet hours (e.g. the unread check): wait for their end.
        row.kind, row.due_at = "deferred", quiet_end
        return
    outbox.add_delivery(work.session, msg)
    row.released_at, row.outcome = work.now, "sent"


async def _release_digest(
    work: Work,
    user: User,
    prefs: UserPrefs,
    window: str,
    items: list[ScheduledDelivery],
) -> None:
    quiet_end = prefs.quiet_until(work.now)
    if quiet_end is not None:
        for r in items:
            r.due_at = quiet_end
        return
    ctx = {
        "recipient": {"name": user.display_name, "locale": user.locale},
        "items": [r.payload for r in items],
        "window": window.split(":", 1)[0],
        "link": work.settings.public_url,
    }
    parts = (await work.renderer.render("digest", "email", user.locale, ctx)).parts
    priority: Priority = "low"
    msg = EmailDelivery(
        delivery_id=uuid.uuid5(DIGEST_NS, f"{user.id}:{window}:{items[0].id}"),
        notification_id=None,
        user_id=user.id,
        priority=priority,
        to=user.email,
        to_name=user.display_name,
        subject=parts.get("subject", "Avisos"),
        text=parts.get("text", ""),
        html=parts.get("html") or None,
    )
    outbox.add_delivery(work.session, msg)
    for r in items:
        r.released_at, r.outcome = work.now, "sent"
