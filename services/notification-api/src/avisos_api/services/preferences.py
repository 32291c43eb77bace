"""Per-user delivery preferences: category x channel opt-in/out over role defaults,
mandatory categories, quiet hours in the user's time zone, and the email digest.

The in-app inbox is always on (it is where claims, updates and resolutions show); a
mandatory category cannot be turned off on any channel. Everything else falls back to the
defaults of the user's roles (enabled if any role enables it).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.exceptions import InvalidInput
from avisos_api.models import User
from avisos_api.models_events import NotificationSettings, Preference, Rule
from avisos_common.messages import CHANNELS, Channel

#: Categories nobody can opt out of (recalls, food safety, expiring lots).
MANDATORY_CATEGORIES: frozenset[str] = frozenset({"safety", "expiry"})
#: Categories shown even before any rule uses them.
KNOWN_CATEGORIES: tuple[str, ...] = (
    "inventory",
    "orders",
    "transfers",
    "pricing",
    "expiry",
    "safety",
)
#: Channel defaults by role when the user has not chosen (in_app is always on).
ROLE_DEFAULTS: dict[str, dict[str, bool]] = {
    "admin": {"email": True, "sms": False, "push": True},
    "manager": {"email": True, "sms": True, "push": True},
    "staff": {"email": False, "sms": False, "push": True},
}
#: A daily digest goes out at this local hour.
DAILY_DIGEST_LOCAL_HOUR = 8

Digest = Literal["off", "hourly", "daily"]


def role_default(roles: Iterable[str], channel: str) -> bool:
    if channel == "in_app":
        return True
    return any(ROLE_DEFAULTS.get(r, {}).get(channel, False) for r in roles)


def is_locked(category: str, channel: str) -> bool:
    return channel == "in_app" or category in MANDATORY_CATEGORIES


@dataclass
class UserPrefs:
    user_id: uuid.UUID
    roles: list[str]
    timezone: str
    choices: dict[tuple[str, str], bool] = field(default_factory=dict)
    quiet_start: dt.time | None = None
    quiet_end: dt.time | None = None
    digest: str = "off"

    def allows(self, category: str, channel: str) -> bool:
        if is_locked(category, channel):
            return True
        chosen = self.choices.get((category, channel))
        return chosen if chosen is not None else role_default(self.roles, channel)

    def tz(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")

    def quiet_until(self, now: dt.datetime) -> dt.datetime | None:
        """If ``now`` is inside the quiet hours: when they end (UTC). Else None.

        Quiet hours are local wall-clock times and may cross midnight (22:00-07:00)."""
        start, end = self.quiet_start, self.quiet_end
        if start is None or end is None or start == end:
            return None
        local = now.astimezone(self.tz())
        t = local.time().replace(tzinfo=None)
        inside = (start <= t < end) if start < end else (t >= start or t < end)
        if not inside:
            return None
        end_day = local.date()
        if start > end and t >= start:
            end_day += dt.timedelta(days=1)
        end_local = dt.datetime.combine(end_day, end, tzinfo=self.tz())
        return end_local.astimezone(dt.UTC)

    def digest_window(self, now: dt.datetime) -> tuple[str, dt.datetime] | None:
        """The digest window ``now`` falls in, as (key, end), or None if no digest."""
        if self.digest == "hourly":
            end = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
            end += dt.timedelta(hours=1)
        elif self.digest == "daily":
            local = now.astimezone(self.tz())
            end_local = local.replace(
                hour=DAILY_DIGEST_LOCAL_HOUR, minute=0, second=0, microsecond=0
            )
            if end_local <= local:
                end_local += dt.timedelta(days=1)
            end = end_local.astimezone(dt.UTC)
        else:
            return None
        return f"{self.digest}:{end.isoformat()}", end


async def load_many(session: AsyncSession, users: Iterable[User]) -> dict[uuid.UUID, UserPrefs]:
    out = {u.id: UserPrefs(u.id, list(u.roles), u.timezone) for u in users}
    if not out:
        return out
    ids = list(out)
    for p in await session.scalars(select(Preference).where(Preference.user_id.in_(ids))):
        out[p.user_id].choices[(p.category, p.channel)] = p.enabled
    for s in await session.scalars(
        select(NotificationSettings).where(NotificationSettings.user_id.in_(ids))
    ):
        prefs = out[s.user_id]
        prefs.quiet_start, prefs.quiet_end, prefs.digest = s.quiet_start, s.quiet_end, s.digest
    return out


async def categories(session: AsyncSession) -> list[str]:
    used = set(await session.scalars(select(Rule.category).distinct()))
    return list(KNOWN_CATEGORIES) + sorted(used - set(KNOWN_CATEGORIES))


# --- API bodies -------------------------------------------------------------------------


class ChannelState(BaseModel):
    enabled: bool
    locked: bool
    default: bool


class CategoryPrefs(BaseModel):
    category: str
    mandatory: bool
    channels: dict[Channel, ChannelState]


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: dt.time = Field(description="Local time, e.g. 22:00")
    end: dt.time = Field(description="Local time, e.g. 07:00 (may be before start)")

    @model_validator(mode="after")
    def _naive(self) -> QuietHours:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local times; the time zone is the profile's")
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class PreferencesOut(BaseModel):
    timezone: str
    quiet_hours: QuietHours | None
    digest: Digest
    categories: list[CategoryPrefs]


class PreferencesUpdate(BaseModel):
    """Only what is given changes. ``channels``: ``{category: {channel: bool}}``;
    ``quiet_hours: null`` removes them."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[str, dict[Channel, bool]] = Field(default_factory=dict, max_length=100)
    quiet_hours: QuietHours | None = None
    digest: Digest | None = None


async def view(session: AsyncSession, user: User) -> PreferencesOut:
    prefs = (await load_many(session, [user]))[user.id]
    cats = await categories(session)
    quiet = (
        QuietHours(start=prefs.quiet_start, end=prefs.quiet_end)
        if prefs.quiet_start is not None and prefs.quiet_end is not None
        else None
    )
    return PreferencesOut(
        timezone=user.timezone,
        quiet_hours=quiet,
        digest=prefs.digest,  # type: ignore[arg-type]
        categories=[
            CategoryPrefs(
                category=c,
                mandatory=c in MANDATORY_CATEGORIES,
                channels={
                    ch: ChannelState(
                        enabled=prefs.allows(c, ch),
                        locked=is_locked(c, ch),
                        default=role_default(user.roles, ch),
                    )
                    for ch in CHANNELS
                },
            )
            for c in cats
        ],
    )


async def update(
    session: AsyncSession, user: User, body: PreferencesUpdate, fields_set: set[str]
) -> None:
    """Apply ``body``; raises InvalidInput (422) for an attempt to turn off something
    locked. Does not commit."""
    known = set(await categories(session))
    for category, channels in body.channels.items():
        if category not in known:
            raise InvalidInput(f"unknown category {category!r}; known: {sorted(known)}")
        for channel, enabled in channels.items():
            if not enabled and is_locked(category, channel):
                why = "the in-app inbox" if channel == "in_app" else f"{category!r} is mandatory"
                raise InvalidInput(f"cannot turn off {channel} for {category}: {why}")
    now = dt.datetime.now(dt.UTC)
    for category, channels in body.channels.items():
        for channel, enabled in channels.items():
            if is_locked(category, channel):
                continue
            await session.execute(
                pg_insert(Preference)
                .values(
                    user_id=user.id,
                    category=category,
                    channel=channel,
                    enabled=enabled,
                    updated_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["user_id", "category", "channel"],
                    set_={"enabled": enabled, "updated_at": now},
                )
            )
    if "quiet_hours" in fields_set or body.digest is not None:
        current = await session.get(NotificationSettings, user.id)
        if current is None:
            current = NotificationSettings(user_id=user.id, digest="off")
            session.add(current)
        if "quiet_hours" in fields_set:
            current.quiet_start = body.quiet_hours.start if body.quiet_hours else None
            current.quiet_end = body.quiet_hours.end if body.quiet_hours else None
        if body.digest is not None:
            current.digest = body.digest
        current.updated_at = now
    await session.flush()


async def reset(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(Preference).where(Preference.user_id == user_id))
