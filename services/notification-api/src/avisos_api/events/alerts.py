"""Stateful alerts: one open alert per (sku, location_code, condition), its notifications
updated in place (new seq, re-rendered, ``NotificationUpdated``), team claims
(acknowledge) and escalation of alerts nobody claims.

``notification.data.alert`` is a contract read by the reports service::

    {id, state: open|resolved, opened_at, resolved_at, acknowledged_by,
     acknowledged_by_name, acknowledged_at, condition, sku, location_code, quantity,
     escalation_level}
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api import outbox
from avisos_api.events import deliveries
from avisos_api.events.context import Work, lock_users
from avisos_api.exceptions import Conflict, InvalidInput
from avisos_api.models import Notification, User
from avisos_api.models_events import Alert, ProcessedEvent, Rule
from avisos_api.rules.service import region_locations
from avisos_api.services import notifications as notif_svc
from avisos_api.services import unread
from avisos_api.services.preferences import load_many
from avisos_common.messages import Channel, NotificationUpdated

log = logging.getLogger(__name__)


def _iso(v: dt.datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


async def alert_data(work: Work, alert: Alert) -> dict[str, Any]:
    return {
        "id": str(alert.id),
        "state": alert.state,
        "opened_at": _iso(alert.opened_at),
        "resolved_at": _iso(alert.resolved_at),
        "acknowledged_by": str(alert.acknowledged_by) if alert.acknowledged_by else None,
        "acknowledged_by_name": await work.user_name(alert.acknowledged_by),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "condition": alert.condition,
        "sku": alert.sku,
        "location_code": alert.location_code,
        "quantity": alert.quantity,
        "escalation_level": alert.escalation_level,
    }


async def open_alert(
    work: Work,
    sku: str,
    location_code: str,
    condition: str,
    priority: str,
    quantity: float | None,
    rule: Rule | None,
    event_ref: str,
) -> tuple[Alert, bool]:
    """The open alert for the key, created if there is none; returns (alert, created).
    The row is locked until commit, so concurrent events for one key serialise here."""
    new_id = uuid.uuid4()
    next_at = None
    if rule is not None and rule.escalation:
        minutes = rule.ack_timeout_minutes or int(rule.escalation[0]["after_minutes"])
        next_at = work.now + dt.timedelta(minutes=minutes)
    inserted = await work.session.scalar(
        pg_insert(Alert)
        .values(
            id=new_id,
            sku=sku,
            location_code=location_code,
            condition=condition,
            state="open",
            priority=priority,
            quantity=quantity,
            opened_at=work.now,
            updated_at=work.now,
            escalation_level=0,
            next_escalation_at=next_at,
            rule_id=rule.id if rule else None,
            opened_by_event=event_ref,
            last_event=event_ref,
            event_count=1,
        )
        .on_conflict_do_nothing(
            index_elements=["sku", "location_code", "condition"],
            # A literal predicate: PostgreSQL matches the partial unique index only then.
            index_where=text("state = 'open'"),
        )
        .returning(Alert.id)
    )
    alert = await work.session.scalar(
        select(Alert)
        .where(
            Alert.sku == sku,
            Alert.location_code == location_code,
            Alert.condition == condition,
            Alert.state == "open",
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert alert is not None
    return alert, inserted is not None


async def _alert_notifications(session: AsyncSession, alert_id: uuid.UUID) -> list[Notification]:
    return list(
        await session.scalars(
            select(Notification)
            .where(
                Notification.data.has_key("alert"),  # type: ignore[attr-defined]
                Notification.data["alert"]["id"].astext == str(alert_id),
            )
            .order_by(Notification.recipient_id, Notification.created_at)
            .with_for_update()
        )
    )


async def _event_notifications(
    session: AsyncSession, source: str, event_id: str
) -> list[Notification]:
    return list(
        await session.scalars(
            select(Notification)
            .where(
                Notification.source_event_id == event_id,
                Notification.data["event"]["source"].astext == source,
            )
            .order_by(Notification.recipient_id, Notification.created_at)
            .with_for_update()
        )
    )


async def update_in_place(
    work: Work,
    rows: Sequence[Notification],
    mutate: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Give each row new data (``mutate`` gets a copy), re-render its in-app text in its
    recipient's language, take a new seq, and announce ``NotificationUpdated``."""
    if not rows:
        return
    users = await work.users({n.recipient_id for n in rows})
    # allocate_seqs takes one value per user per call: call it once per "round".
    per_user: dict[uuid.UUID, list[Notification]] = {}
    for n in rows:
        per_user.setdefault(n.recipient_id, []).append(n)
    await lock_users(work.session, per_user)
    rounds = max(len(v) for v in per_user.values())
    for i in range(rounds):
        ids = [uid for uid, ns in per_user.items() if len(ns) > i]
        seqs = await notif_svc.allocate_seqs(work.session, ids)
        for uid in ids:
            per_user[uid][i].seq = seqs[uid]
    for n in rows:
        data = mutate(dict(n.data or {}))
        n.data = data
        user = users.get(n.recipient_id)
        if user is not None:
            n.subject, n.message = await work.render_in_app(n.type, data, user, n.priority)
        n.updated_at = work.now
    await work.session.flush()
    counts = await unread.compute(work.session, list(per_user))
    for n in rows:
        outbox.add_realtime(
            work.session,
            NotificationUpdated(
                user_id=n.recipient_id,
                notification=notif_svc.to_payload(n),
                unread=counts[n.recipient_id],
            ),
        )
    work.session.info.setdefault("unread_dirty", {}).update(counts)


async def refresh_alert(work: Work, alert: Alert, event_data: dict[str, Any] | None = None) -> int:
    """Push the alert's current state into all its notifications; ``event_data`` (the
    newest event's data and ``event`` ref) is merged into them too."""
    rows = await _alert_notifications(work.session, alert.id)
    state = await alert_data(work, alert)

    def mutate(data: dict[str, Any]) -> dict[str, Any]:
        if event_data and data.get("kind") != "escalation":
            data.update(event_data)
        data["alert"] = state
        return data

    await update_in_place(work, rows, mutate)
    return len(rows)


async def resolve(
    work: Work, sku: str, location_code: str, quantity: float | None, ref: str
) -> list[Alert]:
    """Resolve every open alert of (sku, location_code) and tell their recipients."""
    alerts = list(
        await work.session.scalars(
            select(Alert)
            .where(Alert.sku == sku, Alert.location_code == location_code, Alert.state == "open")
            .order_by(Alert.id)
            .with_for_update()
        )
    )
    for alert in alerts:
        alert.state = "resolved"
        alert.resolved_at = work.now
        alert.updated_at = work.now
        alert.next_escalation_at = None
        alert.last_event = ref
        alert.event_count += 1
        if quantity is not None:
            alert.quantity = quantity
        await work.session.flush()
        await refresh_alert(work, alert)
    return alerts


# --- acknowledge ------------------------------------------------------------------------


class AlreadyAcknowledged(Conflict):
    slug, title = "already-acknowledged", "Someone else is handling this"

    def __init__(self, by: uuid.UUID, name: str | None, at: dt.datetime | None) -> None:
        super().__init__(f"already handled by {name or by}")
        self.by, self.name, self.at = by, name, at


async def acknowledge(work: Work, user: User, notification_id: uuid.UUID) -> Notification:
    """Claim the alert (or event) behind one of the user's notifications: the first
    claimer takes it and every recipient's notification shows it. Raises NotFound for
    others' notifications, AlreadyAcknowledged (409) if someone else has it. Claiming
    again by the same user is a no-op. Does not commit."""
    n = await notif_svc.get_for(work.session, user.id, notification_id)
    data = n.data or {}
    alert_ref = (data.get("alert") or {}).get("id")
    event_ref = data.get("event") or {}
    if alert_ref:
        alert = await work.session.scalar(
            select(Alert)
            .where(Alert.id == uuid.UUID(alert_ref))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if alert is None:
            raise InvalidInput("the alert of this notification no longer exists")
        if alert.acknowledged_by is not None:
            if alert.acknowledged_by != user.id:
                raise AlreadyAcknowledged(
                    alert.acknowledged_by,
                    await work.user_name(alert.acknowledged_by),
                    alert.acknowledged_at,
                )
            return n
        alert.acknowledged_by = user.id
        alert.acknowledged_at = work.now
        alert.updated_at = work.now
        alert.next_escalation_at = None
        await work.session.flush()
        await refresh_alert(work, alert)
    elif event_ref.get("source") and event_ref.get("id"):
        ev = await work.session.scalar(
            select(ProcessedEvent)
            .where(
                and_(
                    ProcessedEvent.source == event_ref["source"],
                    ProcessedEvent.id == event_ref["id"],
                )
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if ev is None:
            raise InvalidInput("the event of this notification is not recorded")
        if ev.acknowledged_by is not None:
            if ev.acknowledged_by != user.id:
                raise AlreadyAcknowledged(
                    ev.acknowledged_by, await work.user_name(ev.acknowledged_by), ev.acknowledged_at
                )
            return n
        ev.acknowledged_by, ev.acknowledged_at = user.id, work.now
        claim = {
            "acknowledged_by": str(user.id),
            "acknowledged_by_name": user.display_name,
            "acknowledged_at": work.now.isoformat(),
        }
        rows = await _event_notifications(work.session, ev.source, ev.id)

        def mutate(d: dict[str, Any]) -> dict[str, Any]:
            # Top level too: that is where clients read an event's claim (alerts: data.alert).
            d["claim"] = claim
            d.update(claim)
            return d

        await update_in_place(work, rows, mutate)
    else:
        raise InvalidInput("only notifications from events can be acknowledged")
    await work.session.refresh(n)
    return n


# --- escalation -------------------------------------------------------------------------


async def escalate_due(work: Work, limit: int = 100) -> int:
    """Run the next escalation step of every open, unclaimed alert that is due at
    ``work.now``. Returns how many alerts escalated. Does not commit."""
    alerts = list(
        await work.session.scalars(
            select(Alert)
            .where(
                Alert.state == "open",
                Alert.acknowledged_by.is_(None),
                Alert.next_escalation_at.is_not(None),
                Alert.next_escalation_at <= work.now,
            )
            .order_by(Alert.next_escalation_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    done = 0
    for alert in alerts:
        rule = await work.session.get(Rule, alert.rule_id) if alert.rule_id else None
        steps = list(rule.escalation) if rule else []
        level = alert.escalation_level
        if level >= len(steps):
            alert.next_escalation_at = None
            continue
        step = steps[level]
        await _escalate(work, alert, rule, step, level + 1)
        alert.escalation_level = level + 1
        alert.updated_at = work.now
        if level + 1 < len(steps):
            after = int(steps[level + 1]["after_minutes"])
            alert.next_escalation_at = max(
                alert.opened_at + dt.timedelta(minutes=after), work.now + dt.timedelta(seconds=1)
            )
        else:
            alert.next_escalation_at = None
        done += 1
    await work.session.flush()
    return done


async def _escalate(
    work: Work, alert: Alert, rule: Rule | None, step: dict[str, Any], level: int
) -> None:
    codes = (
        await region_locations(work.session, alert.location_code)
        if step.get("scope") == "region"
        else [alert.location_code]
    )
    recipients = await notif_svc.resolve_recipients(work.session, (), step.get("roles", []), codes)
    if not recipients:
        log.warning("escalation has nobody to tell", extra={"alert_id": str(alert.id)})
        return
    originals = await _alert_notifications(work.session, alert.id)
    base = next((n for n in originals if (n.data or {}).get("kind") != "escalation"), None)
    base_data = dict(base.data or {}) if base else {}
    state = await alert_data(work, alert)
    users = await work.users(recipients)
    prefs = await load_many(work.session, users.values())
    await lock_users(work.session, recipients)
    channels: list[Channel] = ["in_app", *step.get("channels", [])]
    category = rule.category if rule else "inventory"
    for uid, user in users.items():
        data = {
            **base_data,
            "kind": "escalation",
            "alert": state,
            "escalation": {"level": level, "scope": step.get("scope", "location")},
        }
        if base is not None:
            subject, message = await work.render_in_app(base.type, data, user, base.priority)
            data["original"] = {"type": base.type, "subject": subject, "message": message}
        subject, message = await work.render_in_app("alert.escalated", data, user, "critical")
        spec = notif_svc.NotificationSpec(
            type="alert.escalated",
            category=category,
            subject=subject,
            message=message,
            priority="critical",
            data=data,
            source_event_id=base.source_event_id if base else None,
        )
        for n in await notif_svc.create(work.session, spec, [uid]):
            await deliveries.plan(work, n, user, prefs[uid], channels)
