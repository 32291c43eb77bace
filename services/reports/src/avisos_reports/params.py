"""What a report job asks for (``report_jobs.params``) and who asks (the requester)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from avisos_reports.i18n import Lang

ReportKind = Literal[
    "notification_activity", "delivery_performance", "inventory_alerts", "ack_ledger"
]
REPORT_KINDS: tuple[ReportKind, ...] = (
    "notification_activity",
    "delivery_performance",
    "inventory_alerts",
    "ack_ledger",
)
#: Longest period one report may cover (bounds the work a request can cause).
MAX_PERIOD_DAYS = 400


class ReportParams(BaseModel):
    """Filters of a report. Dates are local dates in the requester's time zone, inclusive."""

    model_config = ConfigDict(extra="forbid")

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    locations: list[str] = Field(default_factory=list, max_length=500)
    categories: list[str] = Field(default_factory=list, max_length=100)
    #: Required by the acknowledgement ledger: the source event shared by its notifications.
    source_event_id: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _check_range(self) -> ReportParams:
        if self.date_from and self.date_to:
            if self.date_to < self.date_from:
                raise ValueError("date_to is before date_from")
            if (self.date_to - self.date_from).days > MAX_PERIOD_DAYS:
                raise ValueError(f"the period is longer than {MAX_PERIOD_DAYS} days")
        return self

    def resolved_period(self, today: dt.date) -> tuple[dt.date, dt.date]:
        """(from, to) with defaults: the last 30 days up to ``today``."""
        date_to = self.date_to or today
        date_from = self.date_from or (date_to - dt.timedelta(days=29))
        return date_from, date_to


@dataclass(frozen=True)
class Requester:
    user_id: uuid.UUID
    display_name: str
    email: str
    lang: Lang
    timezone: str
    is_admin: bool
    #: Codes of the locations the user is assigned to.
    location_codes: tuple[str, ...]

    @property
    def zone(self) -> ZoneInfo:
        return zone_or_default(self.timezone)


DEFAULT_TIMEZONE = "Europe/Madrid"


def zone_or_default(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def location_scope(requester: Requester, wanted: list[str]) -> list[str] | None:
    """Location codes a report may cover: None means all (admins without a filter).

    Non-admins only ever see their own locations: a filter is intersected with them."""
    if requester.is_admin:
        return list(wanted) or None
    own = set(requester.location_codes)
    return sorted(own & set(wanted)) if wanted else sorted(own)
