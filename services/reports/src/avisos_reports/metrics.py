"""Prometheus metrics of the reports service."""

from __future__ import annotations

from avisos_common.metrics import Counter, Gauge, Histogram

JOBS = Counter(
    "avisos_reports_jobs_total",
    "Report jobs finished by this instance, by outcome (done, failed, abandoned).",
    ["outcome"],
)
BUILD_SECONDS = Histogram(
    "avisos_reports_build_seconds",
    "Time to build one report file (query and writing).",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
ROWS = Counter("avisos_reports_rows_total", "Rows written into report files.")
RUNNING = Gauge("avisos_reports_jobs_running", "Report jobs being built by this instance.")
REAPED = Counter(
    "avisos_reports_reaped_total",
    "Jobs taken back from lost workers or re-published, by action.",
    ["action"],
)
SCHEDULED = Counter("avisos_reports_scheduled_total", "Jobs started by the scheduler.")
