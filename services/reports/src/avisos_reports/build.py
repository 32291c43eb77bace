"""Building one report file (synchronous: runs in a worker thread).

The caller gives a progress callback; it is called with the fraction done (0..1) from
this thread and may raise :class:`JobCancelled` to stop the build (the job's lease was
lost). The file is written as ``<key>.part`` and renamed when complete, so a reader never
sees half a file and a crash leaves only a ``.part`` behind.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from avisos_reports.definitions import BUILDERS, BuildContext, ReportError
from avisos_reports.i18n import lang_of
from avisos_reports.params import REPORT_KINDS, ReportKind, ReportParams, Requester
from avisos_reports.xlsx import write_workbook

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class JobCancelled(Exception):
    """Raised from the progress callback when the job must stop (lease lost)."""


@dataclass(frozen=True)
class BuiltFile:
    storage_key: str
    file_name: str
    size: int
    rows: int
    title: str


REQUESTER_SQL = """
    SELECT u.id, u.display_name, u.email, u.locale, u.timezone, u.roles,
           coalesce(array_agg(l.code) FILTER (WHERE l.code IS NOT NULL), '{}') AS codes
    FROM users u
    LEFT JOIN user_locations ul ON ul.user_id = u.id
    LEFT JOIN locations l ON l.id = ul.location_id
    WHERE u.id = %(id)s
    GROUP BY u.id
"""


def requester_from_row(row: dict[str, Any] | tuple[Any, ...]) -> Requester:
    if isinstance(row, dict):
        values = (row["id"], row["display_name"], row["email"], row["locale"])
        tz, roles, codes = row["timezone"], row["roles"], row["codes"]
    else:
        values = row[:4]
        tz, roles, codes = row[4], row[5], row[6]
    return Requester(
        user_id=values[0],
        display_name=values[1],
        email=values[2],
        lang=lang_of(values[3]),
        timezone=tz,
        is_admin="admin" in (roles or []),
        location_codes=tuple(sorted(codes or [])),
    )


def storage_key_for(job_id: uuid.UUID) -> str:
    """Where a job's file lives, relative to the reports directory."""
    return f"{job_id.hex[:2]}/{job_id}.xlsx"


_SLUG = re.compile(r"[^A-Za-z0-9]+")


def file_name_for(kind: str, title: str, day: dt.date) -> str:
    slug = _SLUG.sub("-", title.encode("ascii", "ignore").decode()).strip("-").lower()
    return f"{slug or kind}-{day.isoformat()}.xlsx"


def build_report(
    *,
    dsn: str,
    reports_dir: Path,
    job_id: uuid.UUID,
    kind: str,
    params: dict[str, Any],
    requested_by: uuid.UUID,
    now: dt.datetime,
    progress: Callable[[float], None],
    fetch_rows: int = 5000,
    zip_level: int = 1,
) -> BuiltFile:
    """Build the report of one job; raise :class:`ReportError` for a request that cannot be
    served (the reason is shown to the user)."""
    if kind not in REPORT_KINDS:
        raise ReportError(f"unknown report kind {kind!r}")
    report_kind: ReportKind = kind  # type: ignore[assignment]
    try:
        report_params = ReportParams.model_validate(params)
    except ValueError as exc:
        raise ReportError(f"invalid report parameters: {exc}") from exc
    key = storage_key_for(job_id)
    final = reports_dir / key
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    with psycopg.connect(dsn) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.cursor() as cur:
            cur.execute(REQUESTER_SQL, {"id": requested_by})
            row = cur.fetchone()
        if row is None:
            raise ReportError("the requesting user no longer exists")
        requester: Requester = requester_from_row(row)
        ctx = BuildContext(conn, requester, report_params, now, fetch_rows)
        report = BUILDERS[report_kind](ctx)
        expected = max(1, report.expected_rows)
        done = 0

        def on_rows(n: int) -> None:
            nonlocal done
            done += n
            progress(min(0.99, done / expected))

        progress(0.0)
        try:
            result = write_workbook(
                part, report.summary, report.tables, on_rows=on_rows, zip_level=zip_level
            )
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            # Stop fetch threads of tables the writer did not finish (on errors).
            for table in report.tables:
                close = getattr(table.rows, "close", None)
                if close is not None:
                    close()
    os.replace(part, final)
    local_day = now.astimezone(requester.zone).date()
    return BuiltFile(
        storage_key=key,
        file_name=file_name_for(kind, report.title, local_day),
        size=final.stat().st_size,
        rows=result.total_rows,
        title=report.title,
    )
