"""Request and response bodies of /v1/admin/rules."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from avisos_api.events.schemas import EVENT_TYPES
from avisos_api.rules.conditions import MAX_CONDITIONS, Condition
from avisos_common.messages import Channel, Priority

Role = Literal["admin", "manager", "staff"]
LocationScope = Literal["event", "fixed", "any"]
Category = str
_SMS: tuple[Channel, ...] = ("sms",)
_IN_APP: tuple[Channel, ...] = ("in_app",)


class EscalationStep(BaseModel):
    """Who is told, on which channels, when a critical alert stays unacknowledged."""

    model_config = ConfigDict(extra="forbid")

    after_minutes: int = Field(ge=1, le=7 * 24 * 60, description="Since the alert opened")
    roles: list[Role] = Field(min_length=1)
    scope: Literal["location", "region"] = Field(
        default="location",
        description="location: the event's location; region: every location of its region",
    )
    channels: list[Channel] = Field(default_factory=lambda: list(_SMS), min_length=1)


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool = True
    event_types: list[str] = Field(min_length=1)
    conditions: list[Condition] = Field(default_factory=list, max_length=MAX_CONDITIONS)
    roles: list[Role] = Field(default_factory=list)
    location_scope: LocationScope = Field(
        default="event",
        description="event: data.location_code; fixed: location_codes; any: no location filter",
    )
    location_codes: list[str] = Field(default_factory=list, max_length=500)
    user_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    priority: Priority = "normal"
    category: Category = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    channels: list[Channel] = Field(default_factory=lambda: list(_IN_APP), min_length=1)
    ack_timeout_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    escalation: list[EscalationStep] = Field(default_factory=list, max_length=5)
    email_delay_minutes: int | None = Field(
        default=None,
        ge=1,
        le=7 * 24 * 60,
        description="Send the email only if the notification is still unread after N minutes",
    )

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _targets(self) -> RuleIn:
        if not (self.roles or self.user_ids or self.location_scope != "any"):
            raise ValueError("give roles, user_ids, or a location scope")
        if self.location_scope == "fixed" and not self.location_codes:
            raise ValueError("location_scope 'fixed' needs location_codes")
        if "in_app" not in self.channels:
            # The inbox is the record every claim, update and resolution is shown on.
            self.channels = ["in_app", *self.channels]
        self.channels = list(dict.fromkeys(self.channels))
        if self.escalation and self.ack_timeout_minutes is None:
            self.ack_timeout_minutes = min(s.after_minutes for s in self.escalation)
        return self


class RuleOut(RuleIn):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: uuid.UUID
    builtin_key: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
