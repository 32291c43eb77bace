"""What one unit of work (an event, a release pass, an acknowledgement) shares: the
session, the clock reading, settings, the template renderer and small caches."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.core.config import Settings
from avisos_api.models import Location, User
from avisos_api.services.templates import Renderer

Clock = Callable[[], dt.datetime]

#: Namespace of delivery ids: uuid5(DELIVERY_NS, f"{notification_id}:{channel}").
DELIVERY_NS = uuid.UUID("5f1d3c0e-7b6a-4e55-9a43-2d0c9e1b7a10")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def delivery_id(notification_id: uuid.UUID, channel: str) -> uuid.UUID:
    """Deterministic: the same notification on the same channel is one delivery however
    often it is decided, so the dispatcher sends it once."""
    return uuid.uuid5(DELIVERY_NS, f"{notification_id}:{channel}")


def state_clock(extras: dict[str, Any]) -> Clock:
    """The clock in ``AppState.extras['clock']`` (tests inject one), else the real one."""
    clock: Clock | None = extras.get("clock")
    return clock or utcnow


async def lock_users(session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
    """Lock the users' rows (their seq counters) in id order, all at once. Later
    ``allocate_seqs`` calls in several batches then never wait on each other across
    transactions in different orders, which could deadlock.

    ``FOR NO KEY UPDATE``, the lock the seq UPDATE itself takes: it does not conflict with
    the KEY SHARE locks that inserting rows referencing users takes (a dispatcher writing
    deliveries for several users in one statement), so those never join a deadlock."""
    wanted = sorted(set(ids))
    if wanted:
        await session.execute(
            text("SELECT id FROM users WHERE id = ANY(:ids) ORDER BY id FOR NO KEY UPDATE"),
            {"ids": wanted},
        )


@dataclass
class Work:
    session: AsyncSession
    now: dt.datetime
    settings: Settings
    renderer: Renderer = field(init=False)
    _locations: dict[str, Location | None] = field(default_factory=dict)
    _users: dict[uuid.UUID, User] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.renderer = Renderer(self.session)

    async def location(self, code: str | None) -> dict[str, str]:
        if not code:
            return {"code": "", "name": ""}
        if code not in self._locations:
            self._locations[code] = await self.session.scalar(
                select(Location).where(Location.code == code)
            )
        loc = self._locations[code]
        return {
            "code": code,
            "name": loc.name if loc else code,
            "region": (loc.region or "") if loc else "",
        }

    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, User]:
        missing = [i for i in ids if i not in self._users]
        if missing:
            for u in await self.session.scalars(select(User).where(User.id.in_(missing))):
                self._users[u.id] = u
        return {i: self._users[i] for i in ids if i in self._users}

    async def user_name(self, user_id: uuid.UUID | None) -> str | None:
        if user_id is None:
            return None
        found = await self.users([user_id])
        return found[user_id].display_name if user_id in found else None

    async def context(self, data: dict[str, Any], user: User, priority: str) -> dict[str, Any]:
        """The template context for ``data`` (a notification's data) and its recipient."""
        return {
            "event": data.get("event") or {},
            "data": data,
            "alert": data.get("alert") or {},
            "claim": data.get("claim") or {},
            "original": data.get("original") or {},
            "escalation": data.get("escalation") or {},
            "recipient": {"name": user.display_name, "locale": user.locale},
            "location": await self.location(data.get("location_code")),
            "priority": priority,
            "link": self.settings.public_url,
        }

    async def render_in_app(
        self, type_: str, data: dict[str, Any], user: User, priority: str
    ) -> tuple[str, str]:
        ctx = await self.context(data, user, priority)
        r = await self.renderer.render(type_, "in_app", user.locale, ctx)
        return r.parts.get("subject", "")[:300] or type_, r.parts.get("message", "") or type_
