"""Rules: CRUD for admins, and matching an event to the rules (and people) it concerns."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import any_, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.exceptions import NotFound
from avisos_api.models import Location
from avisos_api.models_events import Rule
from avisos_api.rules.conditions import all_hold
from avisos_api.rules.schemas import RuleIn
from avisos_api.services import notifications as notif_svc
from avisos_common.messages import PRIORITIES, Channel, Priority


async def list_rules(session: AsyncSession) -> list[Rule]:
    return list(await session.scalars(select(Rule).order_by(Rule.created_at, Rule.name)))


async def get(session: AsyncSession, rule_id: uuid.UUID) -> Rule:
    rule = await session.get(Rule, rule_id)
    if rule is None:
        raise NotFound("rule not found")
    return rule


def _apply(rule: Rule, body: RuleIn) -> None:
    rule.name = body.name
    rule.description = body.description
    rule.enabled = body.enabled
    rule.event_types = list(body.event_types)
    rule.conditions = [c.model_dump(mode="json") for c in body.conditions]
    rule.roles = list(body.roles)
    rule.location_scope = body.location_scope
    rule.location_codes = list(body.location_codes)
    rule.user_ids = list(body.user_ids)
    rule.priority = body.priority
    rule.category = body.category
    rule.channels = list(body.channels)
    rule.ack_timeout_minutes = body.ack_timeout_minutes
    rule.escalation = [s.model_dump(mode="json") for s in body.escalation]
    rule.email_delay_minutes = body.email_delay_minutes
    rule.updated_at = dt.datetime.now(dt.UTC)


async def create(session: AsyncSession, body: RuleIn) -> Rule:
    rule = Rule(id=uuid.uuid4(), builtin_key=None)
    _apply(rule, body)
    session.add(rule)
    await session.flush()
    await session.refresh(rule)
    return rule


async def replace(session: AsyncSession, rule_id: uuid.UUID, body: RuleIn) -> Rule:
    rule = await get(session, rule_id)
    _apply(rule, body)
    await session.flush()
    return rule


async def delete(session: AsyncSession, rule_id: uuid.UUID) -> None:
    await session.delete(await get(session, rule_id))
    await session.flush()


async def matching(session: AsyncSession, event_type: str, data: dict[str, object]) -> list[Rule]:
    """Enabled rules for ``event_type`` whose conditions all hold on ``data``."""
    rows = await session.scalars(
        select(Rule)
        .where(Rule.enabled.is_(True), literal(event_type) == any_(Rule.event_types))
        .order_by(Rule.created_at, Rule.id)
    )
    return [r for r in rows if all_hold(r.conditions, data)]


@dataclass
class Decision:
    """What one recipient gets for one event, merged over every matching rule."""

    priority: Priority
    category: str
    channels: list[Channel]
    rule_id: uuid.UUID
    email_delay_minutes: int | None = None
    rule_ids: list[uuid.UUID] = field(default_factory=list)
    #: How many of the merged rules send email.
    emailing_rules: int = 0


def _merge_delay(d: Decision, rule: Rule) -> int | None:
    """Only rules that send email have a say: if one of them sends it at once, it goes at
    once; otherwise the shortest "only if still unread after N minutes" wins."""
    if "email" not in rule.channels:
        return d.email_delay_minutes
    had_email = d.emailing_rules > 0
    d.emailing_rules += 1
    if rule.email_delay_minutes is None:
        return None
    if not had_email:
        return rule.email_delay_minutes
    if d.email_delay_minutes is None:
        return None
    return min(d.email_delay_minutes, rule.email_delay_minutes)


async def known_locations(session: AsyncSession, codes: Sequence[str]) -> list[str]:
    if not codes:
        return []
    return list(await session.scalars(select(Location.code).where(Location.code.in_(codes))))


async def region_locations(session: AsyncSession, code: str) -> list[str]:
    """Every location in the same region as ``code`` (just ``code`` if it has none)."""
    region = await session.scalar(select(Location.region).where(Location.code == code))
    if not region:
        return await known_locations(session, [code])
    return list(await session.scalars(select(Location.code).where(Location.region == region)))


async def recipients_of(
    session: AsyncSession, rule: Rule, event_location: str | None
) -> list[uuid.UUID]:
    """Resolve a rule's audience now (roles, locations, named users) via
    :func:`avisos_api.services.notifications.resolve_recipients`. Unknown locations and
    users no longer active are skipped instead of failing the event."""
    if rule.location_scope == "event":
        if not event_location:
            return []
        codes = await known_locations(session, [event_location])
        if not codes:
            return []
    elif rule.location_scope == "fixed":
        codes = await known_locations(session, rule.location_codes)
        if not codes:
            return []
    else:
        codes = []
    found: set[uuid.UUID] = set()
    if rule.roles or codes:
        found.update(await notif_svc.resolve_recipients(session, (), rule.roles, codes))
    if rule.user_ids:
        from avisos_api.models import User

        found.update(
            await session.scalars(
                select(User.id).where(User.id.in_(rule.user_ids), User.is_active.is_(True))
            )
        )
    return sorted(found)


def _rank(p: str) -> int:
    return PRIORITIES.index(p) if p in PRIORITIES else 1  # type: ignore[arg-type]


async def decide(
    session: AsyncSession, rules: Sequence[Rule], event_location: str | None
) -> dict[uuid.UUID, Decision]:
    """Per recipient: the highest priority of the rules that reach them (its category),
    the union of their channels, the shortest email delay."""
    out: dict[uuid.UUID, Decision] = {}
    for rule in rules:
        for uid in await recipients_of(session, rule, event_location):
            d = out.get(uid)
            channels: list[Channel] = list(rule.channels)  # type: ignore[arg-type]
            if d is None:
                out[uid] = Decision(
                    priority=rule.priority,  # type: ignore[arg-type]
                    category=rule.category,
                    channels=channels,
                    rule_id=rule.id,
                    email_delay_minutes=rule.email_delay_minutes if "email" in channels else None,
                    rule_ids=[rule.id],
                    emailing_rules=1 if "email" in channels else 0,
                )
                continue
            if _rank(rule.priority) > _rank(d.priority):
                d.priority = rule.priority  # type: ignore[assignment]
                d.category = rule.category
                d.rule_id = rule.id
            d.channels = list(dict.fromkeys([*d.channels, *channels]))
            d.rule_ids.append(rule.id)
            d.email_delay_minutes = _merge_delay(d, rule)
    return out
