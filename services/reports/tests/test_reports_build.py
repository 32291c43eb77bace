"""Each report built from the seeded database, opened with openpyxl and checked against
the database: sheets, headings (in the requester's language), formats and values."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import psycopg
import pytest
from openpyxl.worksheet.worksheet import Worksheet
from reports_kit import EVIL_SUBJECT, RECALL_EVENT, Seed

from avisos_reports.build import build_report
from avisos_reports.definitions import ReportError
from avisos_reports.settings import ReportsSettings

PERIOD = {"date_from": "2026-03-01", "date_to": "2026-03-31"}


def build(
    rsettings: ReportsSettings, user: uuid.UUID, kind: str, params: dict[str, Any]
) -> tuple[openpyxl.Workbook, Path, list[float]]:
    progress: list[float] = []
    built = build_report(
        dsn=rsettings.psycopg_dsn,
        reports_dir=rsettings.reports_dir,
        job_id=uuid.uuid4(),
        kind=kind,
        params=params,
        requested_by=user,
        now=dt.datetime(2026, 3, 20, 9, 0, tzinfo=dt.UTC),
        progress=progress.append,
        fetch_rows=2,  # many round trips through the server-side cursor
    )
    path = rsettings.reports_dir / built.storage_key
    assert path.exists() and not path.with_name(path.name + ".part").exists()
    return openpyxl.load_workbook(path), path, progress


def headers(ws: Worksheet) -> list[Any]:
    return [c.value for c in next(ws.iter_rows(min_row=1, max_row=1))]


def rows(ws: Worksheet) -> list[list[Any]]:
    return [[c.value for c in r] for r in ws.iter_rows(min_row=2)]


def check_table_sheet(ws: Worksheet) -> None:
    """Every table sheet: styled header, frozen under the header, autofilter on all rows."""
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{ws.max_row}"
    head = ws.cell(1, 1)
    assert head.font.b and head.fill.fgColor.rgb.endswith("1F4E78")
    for col in range(1, ws.max_column + 1):
        letter = ws.cell(1, col).column_letter
        assert ws.column_dimensions[letter].width >= 8


def test_activity_report_matches_database(
    rsettings: ReportsSettings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    wb, _, progress = build(rsettings, seed.admin, "notification_activity", PERIOD)
    assert wb.sheetnames == ["Summary", "Activity", "Notifications"]
    assert progress and progress[-1] > 0.9
    summary = wb["Summary"]
    assert summary["A1"].value == "Notification activity"
    assert len(summary._charts) == 2
    totals = {r[0].value: r[1] for r in summary.iter_rows(min_row=2, max_col=2) if r[0].value}
    expected = db.execute(
        """SELECT count(*), count(read_at) FROM notifications
           WHERE created_at >= '2026-03-01' AND created_at < '2026-04-01'"""
    ).fetchone()
    assert expected is not None
    assert totals["Sent"].value == expected[0]
    assert totals["Read"].value == expected[1]
    assert totals["Read rate"].number_format == "0.0%"
    assert totals["Read rate"].value == pytest.approx(expected[1] / expected[0])

    activity = wb["Activity"]
    check_table_sheet(activity)
    assert headers(activity) == [
        "User",
        "Email",
        "Category",
        "Priority",
        "Location",
        "Sent",
        "Read",
        "Read rate",
        "Median minutes to read",
    ]
    by_key = {(r[1], r[2], r[3], r[4]): r for r in rows(activity)}
    ana_normal = by_key[("ana@example.com", "stock", "normal", "M01")]
    # ana's normal-priority stock notifications: 3 + the "restored" one, two of them read
    # after 20 and 30 minutes.
    assert ana_normal[5:8] == [4, 2, pytest.approx(0.5)]
    assert ana_normal[8] == pytest.approx(25.0)
    assert activity.cell(2, 8).number_format == "0.0%"
    assert activity.cell(2, 6).number_format == "#,##0"

    detail = wb["Notifications"]
    check_table_sheet(detail)
    data = rows(detail)
    assert len(data) == expected[0]
    assert detail.cell(2, 1).number_format == "yyyy-mm-dd hh:mm"
    assert detail.cell(2, 10).number_format == "#,##0.00"
    first = db.execute(
        """SELECT created_at AT TIME ZONE 'UTC', subject FROM notifications
           WHERE created_at >= '2026-03-01' ORDER BY created_at, id LIMIT 1"""
    ).fetchone()
    assert first is not None
    assert data[0][0] == first[0]  # a real datetime (admin's zone is UTC), not text
    assert isinstance(data[0][0], dt.datetime)
    # The formula-like subject is text, marked so Excel keeps it text when edited.
    evil = next(r for r in detail.iter_rows(min_row=2) if r[7].value == EVIL_SUBJECT)
    assert evil[7].data_type == "s" and evil[7].quotePrefix


def test_spanish_headings_local_times_and_location_scope(
    rsettings: ReportsSettings, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    """ana (staff, es, Europe/Madrid) sees only M01, in Spanish, in Madrid time, even when
    she asks for B02 too."""
    wb, _, _ = build(
        rsettings, seed.ana, "notification_activity", {**PERIOD, "locations": ["M01", "B02"]}
    )
    assert wb.sheetnames == ["Resumen", "Actividad", "Notificaciones"]
    detail = wb["Notificaciones"]
    assert headers(detail)[:3] == ["Creada", "Destinatario", "Correo"]
    data = rows(detail)
    assert {r[3] for r in data} == {"M01"}
    expected = db.execute(
        """SELECT count(*), min(created_at) FROM notifications
           WHERE data->>'location_code' = 'M01'
             AND created_at >= '2026-02-28T23:00Z' AND created_at < '2026-03-31T22:00Z'"""
    ).fetchone()
    assert expected is not None
    assert len(data) == expected[0]
    madrid = ZoneInfo("Europe/Madrid")
    assert data[0][0] == expected[1].astimezone(madrid).replace(tzinfo=None)
    assert data[0][0].hour == 13  # 12:00 UTC in March is 13:00 in Madrid


def test_inventory_alerts_report(rsettings: ReportsSettings, seed: Seed) -> None:
    wb, _, _ = build(rsettings, seed.admin, "inventory_alerts", PERIOD)
    assert wb.sheetnames == ["Summary", "Alerts", "By store and SKU"]
    alerts = wb["Alerts"]
    check_table_sheet(alerts)
    data = {r[0]: r for r in rows(alerts)}
    assert set(data) == {"M01", "B02"}
    m01 = data["M01"]
    # store, name, sku, condition, state, quantity, opened, resolved, hours, ack by/at, n
    assert m01[1:6] == ["Madrid Centro", "SKU-1", "stock.out", "resolved", 40]
    assert m01[8] == pytest.approx(5.0)
    assert m01[9] == "Ana García"
    assert m01[10] == m01[6] + dt.timedelta(hours=1)
    assert alerts.cell(2, 7).number_format == "yyyy-mm-dd hh:mm"
    b02 = data["B02"]
    assert b02[3:5] == ["stock.low", "open"] and b02[7] is None
    totals = {r[0].value: r[1].value for r in wb["Summary"].iter_rows(min_row=2, max_col=2)}
    assert (totals["Alerts"], totals["Open"], totals["Resolved"]) == (2, 1, 1)


def test_ack_ledger_report(rsettings: ReportsSettings, seed: Seed) -> None:
    wb, _, _ = build(rsettings, seed.admin, "ack_ledger", {"source_event_id": RECALL_EVENT})
    ledger = wb["Ledger"]
    check_table_sheet(ledger)
    data = {r[1]: r for r in rows(ledger)}
    assert set(data) == {"admin@example.com", "ana@example.com", "bob@example.com"}
    ana = data["ana@example.com"]
    assert ana[3] == "in_app, email, sms"
    assert ana[4] == "email: delivered; sms: failed"
    assert ana[8] == "Ana García" and ana[9] == pytest.approx(15.0)
    assert ana[7] - ana[5] == dt.timedelta(minutes=15)
    assert data["bob@example.com"][6] is not None and data["bob@example.com"][7] is None
    totals = {r[0].value: r[1].value for r in wb["Summary"].iter_rows(min_row=2, max_col=2)}
    assert (totals["Recipients"], totals["Read"], totals["Acknowledged"]) == (3, 2, 1)


def test_ack_ledger_needs_a_source_event(rsettings: ReportsSettings, seed: Seed) -> None:
    with pytest.raises(ReportError, match="source_event_id"):
        build(rsettings, seed.admin, "ack_ledger", {})


def test_delivery_performance_report(rsettings: ReportsSettings, seed: Seed) -> None:
    wb, _, _ = build(rsettings, seed.admin, "delivery_performance", PERIOD)
    assert wb.sheetnames == ["Summary", "Channels", "Failure reasons", "Attempts"]
    channels = {r[0]: r for r in rows(wb["Channels"])}
    email = channels["email"]
    # attempts, deliveries, accepted, delivered, failed, retries, rate, p50
    assert email[1:8] == [2, 1, 1, 1, 0, 1, 1.0]
    assert email[8] == pytest.approx(500.0)
    assert channels["sms"][5] == 1
    failures = rows(wb["Failure reasons"])
    assert ["sms", "twilio", "=cmd|evil", 1] in failures
    evil = next(r for r in wb["Failure reasons"].iter_rows(min_row=2) if r[2].value == "=cmd|evil")
    assert evil[2].data_type == "s" and evil[2].quotePrefix
    attempts = wb["Attempts"]
    check_table_sheet(attempts)
    assert len(rows(attempts)) == 3
