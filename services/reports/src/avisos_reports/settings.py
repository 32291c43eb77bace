"""Settings of the reports service (environment variables prefixed ``AVISOS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from avisos_common.settings import ServiceSettings


class ReportsSettings(ServiceSettings):
    """Where files go, how long they live, and the timings of the job lease."""

    #: Port of /healthz, /readyz and /metrics (0: no endpoint).
    reports_port: int = 0
    reports_host: str = "0.0.0.0"
    #: Shared storage for report files; ``Attachment.storage_key`` is relative to it.
    reports_dir: Path = Path("/var/lib/avisos/reports")
    #: Days a finished report file is kept before the cleanup loop deletes it.
    reports_retention_days: float = 7.0
    #: Base URL of the API's internal endpoints (``/internal/v1/...``).
    api_internal_url: str = "http://127.0.0.1:8000"
    #: Same dev default as the API (refused outside dev/test).
    internal_token: SecretStr = SecretStr("dev-only-internal-token-not-for-production-use-000")
    #: Jobs one instance builds at once (each in its own thread).
    reports_concurrency: int = 2
    #: How often a running job refreshes its lease (``report_jobs.heartbeat_at``).
    reports_heartbeat_secs: float = 5.0
    #: A running job whose heartbeat is older than this is considered lost.
    reports_lease_stale_secs: float = 60.0
    #: A queued job not picked up for this long is published again.
    reports_requeue_after_secs: float = 300.0
    #: Runs of one job (first run + retries after a lost worker) before it is failed.
    reports_max_attempts: int = 3
    #: Period of the reaper, cleanup and scheduler loops.
    reports_reaper_interval_secs: float = 15.0
    reports_cleanup_interval_secs: float = 300.0
    reports_scheduler_interval_secs: float = 20.0
    #: Rows fetched per round trip from the server-side cursor.
    reports_fetch_rows: int = 5000
    #: zlib level of the bulk sheets (1 is ~3x faster than 6 for ~25 % larger files).
    reports_zip_level: int = 1

    secret_fields: tuple[str, ...] = ("internal_token",)

    @property
    def psycopg_dsn(self) -> str:
        """The database URL in the form libpq accepts."""
        return self.asyncpg_dsn
