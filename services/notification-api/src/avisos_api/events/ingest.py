"""Apply one inventory event: record it, run the rules, open/update/resolve alerts, create
notifications in each recipient's language, and decide their deliveries. Both doors
(HTTP ``POST /v1/events`` and the AMQP worker) call :func:`ingest`.

Exactly one effect per event: the ``events`` row (primary key ``(source, id)``) is
inserted in the same transaction as everything the event causes. A second delivery of the
same event waits for the first transaction on that key and then finds the row: it is
reported as a duplicate and changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from avisos_api.api.deps import AppState
from avisos_api.events import alerts as alert_svc
from avisos_api.events import deliveries
from avisos_api.events.context import Work, lock_users, state_clock
from avisos_api.events.schemas import ALERT_CONDITIONS, RESOLVING_TYPES, ValidEvent
from avisos_api.models import Notification
from avisos_api.models_events import Alert, ProcessedEvent
from avisos_api.rules import service as rules_svc
from avisos_api.services import notifications as notif_svc
from avisos_api.services.preferences import load_many
from avisos_common import metrics

log = logging.getLogger(__name__)

EVENTS_APPLIED = metrics.Counter("avisos_events_applied_total", "Inventory events applied")
EVENTS_DUPLICATE = metrics.Counter(
    "avisos_events_duplicate_total", "Inventory events seen again (not re-applied)"
)


@dataclass(frozen=True)
class IngestResult:
    source: str
    id: str
    type: str
    duplicate: bool
    notifications: int
    alert_id: uuid.UUID | None = None
    alert_state: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "id": self.id,
            "type": self.type,
            "duplicate": self.duplicate,
            "notifications": self.notifications,
            "alert_id": str(self.alert_id) if self.alert_id else None,
            "alert_state": self.alert_state,
        }


async def ingest(state: AppState, ev: ValidEvent, via: str) -> IngestResult:
    """Apply ``ev`` and commit (waking the outbox relays). Safe to call again with the
    same event: the second call is a no-op reported as a duplicate."""
    async with state.sessionmaker() as session:
        work = Work(session, state_clock(state.extras)(), state.settings)
        result = await apply(work, ev, via)
        await work.renderer.flush_errors(work.now)
        await notif_svc.commit(session, state.cache, state.settings.unread_cache_ttl_secs)
    (EVENTS_DUPLICATE if result.duplicate else EVENTS_APPLIED).inc()
    return result


async def apply(work: Work, ev: ValidEvent, via: str) -> IngestResult:
    """Everything :func:`ingest` does, without committing."""
    env = ev.envelope
    s = work.session
    inserted = await s.scalar(
        pg_insert(ProcessedEvent)
        .values(
            source=env.source,
            id=env.id,
            type=env.type,
            time=env.time,
            subject=env.subject,
            data=ev.data_json(),
            received_via=via,
            received_at=work.now,
            notification_count=0,
        )
        .on_conflict_do_nothing(index_elements=["source", "id"])
        .returning(ProcessedEvent.id)
    )
    if inserted is None:
        row = await s.get(ProcessedEvent, (env.source, env.id))
        seen = await s.get(Alert, row.alert_id) if row and row.alert_id else None
        return IngestResult(
            env.source,
            env.id,
            row.type if row else env.type,
            True,
            row.notification_count if row else 0,
            seen.id if seen else None,
            seen.state if seen else None,
        )

    data = ev.data_json()
    ref = f"{env.source}/{env.id}"
    event_ref = {
        "source": env.source,
        "id": env.id,
        "type": env.type,
        "time": env.time.isoformat(),
        "subject": env.subject,
    }
    sku = data.get("sku")
    loc = ev.location_code
    alert: Alert | None = None
    count = 0

    if env.type in RESOLVING_TYPES and sku:
        resolved = await alert_svc.resolve(work, sku, loc, data.get("quantity"), ref)
        if resolved:
            alert = resolved[0]

    rules = await rules_svc.matching(s, env.type, data)
    decisions = await rules_svc.decide(s, rules, loc)

    condition = ALERT_CONDITIONS.get(env.type)
    if condition and sku:
        top = max(
            (r for r in rules if r.escalation), key=lambda r: _rank(r.priority), default=None
        ) or (max(rules, key=lambda r: _rank(r.priority)) if rules else None)
        priority = top.priority if top else "normal"
        alert, created = await alert_svc.open_alert(
            work, sku, loc, condition, priority, data.get("quantity"), top, ref
        )
        if not created:
            alert.quantity = data.get("quantity", alert.quantity)
            alert.updated_at = work.now
            alert.last_event = ref
            alert.event_count += 1
            await s.flush()
            already = {
                n.recipient_id
                for n in await s.scalars(
                    select(Notification).where(
                        Notification.data["alert"]["id"].astext == str(alert.id)
                    )
                )
            }
            count += await alert_svc.refresh_alert(work, alert, {**data, "event": event_ref})
            decisions = {uid: d for uid, d in decisions.items() if uid not in already}

    if decisions:
        count += await _notify(work, env.type, data, event_ref, env.id, alert, decisions)

    await s.execute(
        ProcessedEvent.__table__.update()  # type: ignore[attr-defined]
        .where(
            ProcessedEvent.__table__.c.source == env.source,  # type: ignore[attr-defined]
            ProcessedEvent.__table__.c.id == env.id,  # type: ignore[attr-defined]
        )
        .values(notification_count=count, alert_id=alert.id if alert else None)
    )
    log.info(
        "event applied",
        extra={
            "event_type": env.type,
            "event_source": env.source,
            "event_id": env.id,
            "notifications": count,
            "via": via,
        },
    )
    return IngestResult(
        env.source,
        env.id,
        env.type,
        False,
        count,
        alert.id if alert else None,
        alert.state if alert else None,
    )


def _rank(priority: str) -> int:
    order = ("low", "normal", "high", "critical")
    return order.index(priority) if priority in order else 1


async def _notify(
    work: Work,
    type_: str,
    data: dict[str, Any],
    event_ref: dict[str, Any],
    event_id: str,
    alert: Alert | None,
    decisions: dict[uuid.UUID, rules_svc.Decision],
) -> int:
    users = await work.users(decisions)
    prefs = await load_many(work.session, users.values())
    base: dict[str, Any] = {**data, "event": event_ref}
    if alert is not None:
        base["alert"] = await alert_svc.alert_data(work, alert)
        base["rule_id"] = str(alert.rule_id) if alert.rule_id else None
    # Render for each person (a template may greet them), then one create() per group of
    # people who read exactly the same text at the same priority and category.
    groups: dict[tuple[str, str, str, str], list[uuid.UUID]] = {}
    for uid, d in decisions.items():
        user = users.get(uid)
        if user is None:
            continue
        subject, message = await work.render_in_app(type_, base, user, d.priority)
        groups.setdefault((subject, message, d.priority, d.category), []).append(uid)
    await lock_users(work.session, [u for uids in groups.values() for u in uids])
    count = 0
    for (subject, message, priority, category), uids in groups.items():
        spec = notif_svc.NotificationSpec(
            type=type_,
            category=category,
            subject=subject,
            message=message,
            priority=priority,  # type: ignore[arg-type]
            data=base,
            source_event_id=event_id,
        )
        for n in await notif_svc.create(work.session, spec, uids):
            d = decisions[n.recipient_id]
            await deliveries.plan(
                work,
                n,
                users[n.recipient_id],
                prefs[n.recipient_id],
                d.channels,
                d.email_delay_minutes,
            )
            count += 1
    return count
