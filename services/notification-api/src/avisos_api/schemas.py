"""Request and response bodies, named by role (``UserCreate``, ``UserPublic``...).

Every request body refuses unknown fields (``extra="forbid"``): a client cannot set
fields it does not own (mass assignment gets 422).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator

from avisos_common.messages import NotificationPayload, Priority, UnreadCount

Role = Literal["admin", "manager", "staff"]
Locale = Literal["es", "en"]
Scope = Literal["events:publish", "notifications:write", "reports:read"]


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _check_phone(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("phone must be in E.164 form, e.g. +34600111222") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("phone number is not valid")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 != value:
        raise ValueError(f"phone must be in E.164 form ({e164})")
    return value


TimeZone = Annotated[str, AfterValidator(_check_timezone)]
Phone = Annotated[str | None, AfterValidator(_check_phone)]
Password = Annotated[str, Field(min_length=10, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth ------------------------------------------------------------------------------


class LoginRequest(Strict):
    email: EmailStr
    password: str = Field(min_length=1, max_length=200)


class LocationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    kind: str
    region: str | None


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str
    roles: list[str]
    locale: str
    timezone: str
    phone: str | None
    is_active: bool
    locations: list[LocationPublic]
    created_at: dt.datetime


class LoginResponse(BaseModel):
    user: UserPublic
    csrf_token: str
    expires_at: dt.datetime


class TicketResponse(BaseModel):
    ticket: str
    expires_in: int


# --- users -----------------------------------------------------------------------------


class UserCreate(Strict):
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200)
    password: Password
    roles: list[Role] = Field(default_factory=lambda: list[Role](["staff"]), min_length=1)
    location_codes: list[str] = Field(default_factory=list)
    locale: Locale = "es"
    timezone: TimeZone = "Europe/Madrid"
    phone: Phone = None


class UserUpdate(Strict):
    """What an admin may change on a user."""

    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    roles: list[Role] | None = Field(default=None, min_length=1)
    location_codes: list[str] | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    phone: Phone = None
    is_active: bool | None = None


class ProfileUpdate(Strict):
    """What a user may change on themselves."""

    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    locale: Locale | None = None
    timezone: TimeZone | None = None
    phone: Phone = None


class PasswordChange(Strict):
    current_password: str
    new_password: Password


class PasswordReset(Strict):
    new_password: Password


class UserPage(BaseModel):
    items: list[UserPublic]
    total: int


class LocationCreate(Strict):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["store", "warehouse"] = "store"
    region: str | None = Field(default=None, max_length=64)


# --- API keys --------------------------------------------------------------------------


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1)


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself. Shown once: store it now.")


# --- notifications ---------------------------------------------------------------------

NotificationPublic = NotificationPayload


class NotificationPage(BaseModel):
    items: list[NotificationPublic]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next (older) page; null at the end."
    )


class NotificationCreate(Strict):
    """Create notifications for users chosen explicitly, by role, by location, or by both
    (role AND location). At least one target is required."""

    user_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10000)
    roles: list[Role] = Field(default_factory=list)
    location_codes: list[str] = Field(default_factory=list)
    type: str = Field(min_length=1, max_length=100)
    category: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=300)
    message: str = Field(min_length=1, max_length=10000)
    priority: Priority = "normal"
    data: dict[str, Any] = Field(default_factory=dict)
    action_url: str | None = Field(default=None, max_length=2000, pattern=r"^(/|https?://)")
    source_event_id: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _has_target(self) -> NotificationCreate:
        if not (self.user_ids or self.roles or self.location_codes):
            raise ValueError("give at least one of user_ids, roles, location_codes")
        return self


class NotificationCreated(BaseModel):
    created: int
    notification_ids: list[uuid.UUID]
    recipient_ids: list[uuid.UUID]


class MarkAllRead(Strict):
    """Optional filter: only notifications matching it are marked read."""

    category: str | None = None
    priority: list[Priority] | None = None
    type: str | None = None
    before: dt.datetime | None = None


class MarkReadResult(BaseModel):
    updated: int
    unread: UnreadCount


class InternalMarkRead(Strict):
    ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    all: bool = False


# --- health ----------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
