"""The life of a report job: claim (lease), build in a thread with heartbeats, finish.

States (``report_jobs.status``): queued -> running -> done | failed; done -> expired when
the file is deleted. A job is claimed by one instance with a conditional UPDATE (only a
queued job can be claimed, so a redelivered message is harmless) that sets
``lease_owner`` and ``heartbeat_at``; the message is acked right after the claim, so a
long job never holds a delivery open. While it runs, the heartbeat refreshes the lease
and the progress; if the lease was taken away (the reaper decided the instance was
dead), the build is cancelled and nothing is written. Finishing is conditional on still
holding the lease (fencing).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from avisos_common import logging as avisos_logging
from avisos_common.amqp import Publisher, PublishError
from avisos_common.messages import ReportJobRequested, ReportStatusChanged
from avisos_common.topology import EXCHANGE_REALTIME, EXCHANGE_REPORTS, ROUTING_KEY_REPORTS
from avisos_reports.build import (
    REQUESTER_SQL,
    XLSX_CONTENT_TYPE,
    BuiltFile,
    JobCancelled,
    build_report,
    requester_from_row,
)
from avisos_reports.db import Database
from avisos_reports.definitions import ReportError
from avisos_reports.i18n import t
from avisos_reports.metrics import BUILD_SECONDS, JOBS, ROWS, RUNNING
from avisos_reports.notify import Notifier, report_email, send_report_email
from avisos_reports.settings import ReportsSettings

log = logging.getLogger(__name__)

#: Progress steps smaller than this are not pushed over the socket.
PROGRESS_PUSH_STEP = 0.02
MAX_ERROR_CHARS = 1000

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    requested_by: uuid.UUID
    kind: str
    params: dict[str, Any]
    email_copy: bool
    attempts: int


class _Progress:
    """Shared between the build thread (writes) and the heartbeat task (reads)."""

    def __init__(self) -> None:
        self.value = 0.0
        self.cancelled = threading.Event()

    def update(self, fraction: float) -> None:
        if self.cancelled.is_set():
            raise JobCancelled("lease lost")
        self.value = fraction


async def publish_status(
    publisher: Publisher,
    *,
    user_id: uuid.UUID,
    job_id: uuid.UUID,
    status: str,
    progress: float = 0.0,
    error: str | None = None,
) -> None:
    """Push a job's state to the user's sockets (best effort: clients also poll the API)."""
    msg = ReportStatusChanged(
        user_id=user_id,
        job_id=job_id,
        status=status,  # type: ignore[arg-type]
        progress=round(progress, 4),
        error=error,
    )
    try:
        await publisher.publish(EXCHANGE_REALTIME, "", msg, mandatory=False)
    except PublishError as exc:
        log.warning("status push failed", extra={"job_id": str(job_id), "error": str(exc)})


async def enqueue(publisher: Publisher, job_id: uuid.UUID, requested_by: uuid.UUID) -> None:
    await publisher.publish(
        EXCHANGE_REPORTS,
        ROUTING_KEY_REPORTS,
        ReportJobRequested(job_id=job_id, requested_by=requested_by),
    )


class JobRunner:
    def __init__(
        self,
        settings: ReportsSettings,
        db: Database,
        publisher: Publisher,
        notifier: Notifier,
        instance_id: str,
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.publisher = publisher
        self.notifier = notifier
        self.instance_id = instance_id
        self.clock = clock

    async def claim(self, job_id: uuid.UUID) -> ClaimedJob | None:
        """Take the lease of a queued job; None if it is not queued (done, running, gone)."""
        row = await self.db.fetchrow(
            """
            UPDATE report_jobs
            SET status = 'running', attempts = attempts + 1, lease_owner = %(owner)s,
                heartbeat_at = now(), started_at = now(), progress = 0, error = NULL
            WHERE id = %(id)s AND status = 'queued'
            RETURNING id, requested_by, kind, params, email_copy, attempts
            """,
            {"id": job_id, "owner": self.instance_id},
        )
        if row is None:
            return None
        params = row["params"] if isinstance(row["params"], dict) else json.loads(row["params"])
        return ClaimedJob(
            row["id"], row["requested_by"], row["kind"], params, row["email_copy"], row["attempts"]
        )

    async def run(self, job: ClaimedJob) -> None:
        """Build the file and finish the job. Never raises (failures are recorded)."""
        with avisos_logging.bind(user_id=str(job.requested_by)):
            try:
                await self._run(job)
            except Exception:
                log.exception("report job crashed", extra={"job_id": str(job.id)})
                await self._fail(job, "internal error while building the report")

    async def _run(self, job: ClaimedJob) -> None:
        await publish_status(
            self.publisher, user_id=job.requested_by, job_id=job.id, status="running"
        )
        progress = _Progress()
        heartbeat = asyncio.create_task(self._heartbeat(job, progress))
        s = self.settings
        RUNNING.inc()
        started = time.monotonic()
        try:
            built = await asyncio.to_thread(
                build_report,
                dsn=s.psycopg_dsn,
                reports_dir=s.reports_dir,
                job_id=job.id,
                kind=job.kind,
                params=job.params,
                requested_by=job.requested_by,
                now=self.clock(),
                progress=progress.update,
                fetch_rows=s.reports_fetch_rows,
                zip_level=s.reports_zip_level,
            )
        except JobCancelled:
            JOBS.labels("abandoned").inc()
            log.warning("report job lost its lease; abandoned", extra={"job_id": str(job.id)})
            return
        except ReportError as exc:
            await self._fail(job, str(exc))
            return
        finally:
            RUNNING.dec()
            BUILD_SECONDS.observe(time.monotonic() - started)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self._finish(job, built)

    async def _heartbeat(self, job: ClaimedJob, progress: _Progress) -> None:
        pushed = 0.0
        while True:
            await asyncio.sleep(self.settings.reports_heartbeat_secs)
            try:
                row = await self.db.fetchrow(
                    """
                    UPDATE report_jobs SET heartbeat_at = now(), progress = %(p)s
                    WHERE id = %(id)s AND lease_owner = %(owner)s AND status = 'running'
                    RETURNING id
                    """,
                    {"id": job.id, "owner": self.instance_id, "p": progress.value},
                )
            except Exception as exc:  # the DB may come back before the lease goes stale
                log.warning("heartbeat failed", extra={"job_id": str(job.id), "error": str(exc)})
                continue
            if row is None:
                progress.cancelled.set()
                return
            if progress.value - pushed >= PROGRESS_PUSH_STEP:
                pushed = progress.value
                await publish_status(
                    self.publisher,
                    user_id=job.requested_by,
                    job_id=job.id,
                    status="running",
                    progress=pushed,
                )

    async def _finish(self, job: ClaimedJob, built: BuiltFile) -> None:
        retention = dt.timedelta(days=self.settings.reports_retention_days)
        row = await self.db.fetchrow(
            """
            UPDATE report_jobs
            SET status = 'done', progress = 1, finished_at = now(),
                expires_at = now() + %(retention)s, file_key = %(key)s, file_name = %(name)s,
                file_size = %(size)s, row_count = %(rows)s, lease_owner = NULL
            WHERE id = %(id)s AND lease_owner = %(owner)s AND status = 'running'
            RETURNING expires_at
            """,
            {
                "id": job.id,
                "owner": self.instance_id,
                "retention": retention,
                "key": built.storage_key,
                "name": built.file_name,
                "size": built.size,
                "rows": built.rows,
            },
        )
        if row is None:
            # The reaper gave the job to someone else meanwhile: this file is not theirs.
            (self.settings.reports_dir / built.storage_key).unlink(missing_ok=True)
            log.warning("finished after losing the lease; discarded", extra={"job_id": str(job.id)})
            return
        JOBS.labels("done").inc()
        ROWS.inc(built.rows)
        log.info(
            "report done",
            extra={"job_id": str(job.id), "rows": built.rows, "bytes": built.size},
        )
        await publish_status(
            self.publisher, user_id=job.requested_by, job_id=job.id, status="done", progress=1.0
        )
        await self._tell_requester(job, built, row["expires_at"])

    async def _tell_requester(
        self, job: ClaimedJob, built: BuiltFile, expires_at: dt.datetime
    ) -> None:
        user = await self.db.fetchrow(REQUESTER_SQL, {"id": job.requested_by})
        if user is None:
            return
        requester = requester_from_row(user)
        lang = requester.lang
        expires_local = expires_at.astimezone(requester.zone).strftime("%Y-%m-%d %H:%M")
        await self.notifier.report_ready(
            job_id=job.id,
            user_id=job.requested_by,
            subject=t(lang, "ready_subject", title=built.title),
            message=t(
                lang, "ready_message", title=built.title, rows=built.rows, expires=expires_local
            ),
            data={
                "report_job_id": str(job.id),
                "kind": job.kind,
                "file_name": built.file_name,
                "rows": built.rows,
                "download_url": f"/v1/reports/{job.id}/file",
            },
        )
        if job.email_copy and requester.email:
            period = " – ".join(
                str(job.params.get(k) or "") for k in ("date_from", "date_to")
            ).strip(" –")
            email = report_email(
                job_id=job.id,
                user_id=job.requested_by,
                to=requester.email,
                to_name=requester.display_name,
                subject=t(lang, "ready_subject", title=built.title),
                text=t(
                    lang,
                    "email_text",
                    name=requester.display_name,
                    title=built.title,
                    period=period or "-",
                ),
                file_name=built.file_name,
                storage_key=built.storage_key,
                content_type=XLSX_CONTENT_TYPE,
            )
            try:
                await send_report_email(self.publisher, email)
            except PublishError as exc:
                log.error(
                    "report email not queued", extra={"job_id": str(job.id), "error": str(exc)}
                )

    async def _fail(self, job: ClaimedJob, reason: str) -> None:
        reason = reason[:MAX_ERROR_CHARS]
        row = await self.db.fetchrow(
            """
            UPDATE report_jobs SET status = 'failed', error = %(reason)s, finished_at = now(),
                   lease_owner = NULL
            WHERE id = %(id)s AND lease_owner = %(owner)s AND status = 'running'
            RETURNING id
            """,
            {"id": job.id, "owner": self.instance_id, "reason": reason},
        )
        if row is not None:
            JOBS.labels("failed").inc()
            log.warning("report failed", extra={"job_id": str(job.id), "reason": reason})
            await publish_status(
                self.publisher,
                user_id=job.requested_by,
                job_id=job.id,
                status="failed",
                error=reason,
            )
