"""Next-run computation: local wall-clock times, across daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from avisos_reports.schedule import next_run_after, period_for_run

MADRID = ZoneInfo("Europe/Madrid")
UTC = dt.UTC


def local(y: int, m: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=MADRID)


def test_daily_runs_at_local_time_before_and_after_spring_forward() -> None:
    t = dt.time(7, 30)
    # 2026-03-29 is the spring-forward day in Madrid (+01:00 -> +02:00).
    before = next_run_after(local(2026, 3, 28, 8), frequency="daily", time_of_day=t, zone=MADRID)
    assert before == local(2026, 3, 29, 7, 30).astimezone(UTC)
    assert before == dt.datetime(2026, 3, 29, 5, 30, tzinfo=UTC)  # already summer time
    after = next_run_after(before, frequency="daily", time_of_day=t, zone=MADRID)
    assert after.astimezone(MADRID).time() == t
    assert after - before == dt.timedelta(hours=24)
    winter = next_run_after(local(2026, 3, 27, 8), frequency="daily", time_of_day=t, zone=MADRID)
    assert winter == dt.datetime(2026, 3, 28, 6, 30, tzinfo=UTC)
    assert before - winter == dt.timedelta(hours=23)  # the short night


def test_fall_back_day_runs_once_at_local_time() -> None:
    t = dt.time(7, 0)
    run = next_run_after(local(2026, 10, 24, 9), frequency="daily", time_of_day=t, zone=MADRID)
    assert run == dt.datetime(2026, 10, 25, 6, 0, tzinfo=UTC)  # winter time again
    # An ambiguous time (02:30 happens twice) runs once, at the first occurrence.
    amb = next_run_after(
        local(2026, 10, 24, 9), frequency="daily", time_of_day=dt.time(2, 30), zone=MADRID
    )
    assert amb == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    again = next_run_after(amb, frequency="daily", time_of_day=dt.time(2, 30), zone=MADRID)
    assert again.astimezone(MADRID).date() == dt.date(2026, 10, 26)


def test_nonexistent_time_on_spring_forward_runs_after_the_gap() -> None:
    run = next_run_after(
        local(2026, 3, 28, 12), frequency="daily", time_of_day=dt.time(2, 30), zone=MADRID
    )
    assert run.astimezone(MADRID) == local(2026, 3, 29, 3, 30)


def test_weekly_and_strictly_after() -> None:
    t = dt.time(8, 0)
    monday_8 = local(2026, 3, 2, 8)  # a Monday
    assert monday_8.weekday() == 0
    nxt = next_run_after(monday_8, frequency="weekly", time_of_day=t, zone=MADRID, weekday=0)
    assert nxt.astimezone(MADRID) == local(2026, 3, 9, 8)
    friday = next_run_after(monday_8, frequency="weekly", time_of_day=t, zone=MADRID, weekday=4)
    assert friday.astimezone(MADRID) == local(2026, 3, 6, 8)
    with pytest.raises(ValueError, match="weekday"):
        next_run_after(monday_8, frequency="weekly", time_of_day=t, zone=MADRID)


def test_period_covers_previous_local_days() -> None:
    run = dt.datetime(2026, 3, 10, 6, 30, tzinfo=UTC)
    assert period_for_run(run, "daily", MADRID) == (dt.date(2026, 3, 9), dt.date(2026, 3, 9))
    assert period_for_run(run, "weekly", MADRID) == (dt.date(2026, 3, 3), dt.date(2026, 3, 9))
