"""When a scheduled report runs next: wall-clock times in the owner's zone, DST-safe.

The next run is found per local *date* (combine the date with the wall-clock time in the
zone, then convert to UTC), never by adding 24 hours to the last run, so a 07:30 report
stays at 07:30 across daylight-saving changes. A wall-clock time that does not exist on a
spring-forward day resolves to the same instant as the time before the gap plus the gap
(02:30 becomes 03:30); one that happens twice on a fall-back day runs once, at the first.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo

Frequency = Literal["daily", "weekly"]

#: Days looked ahead for the next run (a weekly schedule is at most 7 days ahead).
_LOOKAHEAD_DAYS = 9


def next_run_after(
    after: dt.datetime,
    *,
    frequency: Frequency,
    time_of_day: dt.time,
    zone: ZoneInfo,
    weekday: int | None = None,
) -> dt.datetime:
    """The first run strictly after ``after`` (aware), as an aware UTC datetime.

    ``weekday`` (0 = Monday) is required for weekly schedules."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    if frequency == "weekly" and (weekday is None or not 0 <= weekday <= 6):
        raise ValueError("weekly schedules need a weekday 0..6")
    local_today = after.astimezone(zone).date()
    wall = time_of_day.replace(tzinfo=None, fold=0)
    for offset in range(-1, _LOOKAHEAD_DAYS):
        day = local_today + dt.timedelta(days=offset)
        if frequency == "weekly" and day.weekday() != weekday:
            continue
        candidate = dt.datetime.combine(day, wall, tzinfo=zone).astimezone(dt.UTC)
        if candidate > after:
            return candidate
    raise AssertionError("no run found in the look-ahead window")  # unreachable


def period_for_run(
    run_at: dt.datetime, frequency: Frequency, zone: ZoneInfo
) -> tuple[dt.date, dt.date]:
    """The local dates a scheduled run covers: the previous day, or the previous 7 days."""
    today = run_at.astimezone(zone).date()
    last = today - dt.timedelta(days=1)
    first = last if frequency == "daily" else today - dt.timedelta(days=7)
    return first, last
