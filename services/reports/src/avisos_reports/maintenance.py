"""Background duties of the reports service: reaper, file cleanup, scheduler.

Each has a ``run_once`` that tests call directly (with an injected clock for the
scheduler) and a loop that calls it periodically. Several instances may run them at once:
every change is a conditional UPDATE or uses ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from avisos_common.amqp import Publisher, PublishError
from avisos_reports.db import Database
from avisos_reports.jobs import Clock, enqueue, publish_status, utcnow
from avisos_reports.metrics import REAPED, SCHEDULED
from avisos_reports.params import zone_or_default
from avisos_reports.schedule import next_run_after, period_for_run
from avisos_reports.settings import ReportsSettings

log = logging.getLogger(__name__)

#: Schedules started per scheduler pass (the rest wait for the next pass).
SCHEDULES_PER_PASS = 50
#: Expired files deleted per cleanup pass.
CLEANUP_BATCH = 500


@dataclass
class ReapResult:
    requeued: list[uuid.UUID]
    failed: list[uuid.UUID]
    republished: list[uuid.UUID]


class Reaper:
    """Jobs whose instance died (stale heartbeat) are requeued, or failed after
    ``reports_max_attempts`` runs; queued jobs whose message got lost are re-published."""

    def __init__(self, settings: ReportsSettings, db: Database, publisher: Publisher) -> None:
        self.settings = settings
        self.db = db
        self.publisher = publisher

    async def run_once(self) -> ReapResult:
        s = self.settings
        stale = await self.db.fetch(
            """
            UPDATE report_jobs SET
                status = CASE WHEN attempts >= %(max)s THEN 'failed' ELSE 'queued' END,
                error = CASE WHEN attempts >= %(max)s
                    THEN 'the report service stopped while building this report ('
                         || attempts || ' attempts)' END,
                finished_at = CASE WHEN attempts >= %(max)s THEN now() END,
                lease_owner = NULL, progress = 0, enqueued_at = now()
            WHERE status = 'running'
              AND heartbeat_at < now() - make_interval(secs => %(stale)s)
            RETURNING id, requested_by, status, error
            """,
            {"max": s.reports_max_attempts, "stale": s.reports_lease_stale_secs},
        )
        lost = await self.db.fetch(
            """
            UPDATE report_jobs SET enqueued_at = now()
            WHERE status = 'queued' AND enqueued_at < now() - make_interval(secs => %(after)s)
            RETURNING id, requested_by
            """,
            {"after": s.reports_requeue_after_secs},
        )
        result = ReapResult([], [], [])
        for row in stale:
            REAPED.labels(row["status"]).inc()
            if row["status"] == "failed":
                result.failed.append(row["id"])
                log.warning("job failed: worker lost", extra={"job_id": str(row["id"])})
                await publish_status(
                    self.publisher,
                    user_id=row["requested_by"],
                    job_id=row["id"],
                    status="failed",
                    error=row["error"],
                )
            else:
                result.requeued.append(row["id"])
                log.warning("job requeued: worker lost", extra={"job_id": str(row["id"])})
                await self._enqueue(row["id"], row["requested_by"])
                await publish_status(
                    self.publisher, user_id=row["requested_by"], job_id=row["id"], status="queued"
                )
        for row in lost:
            REAPED.labels("republished").inc()
            result.republished.append(row["id"])
            await self._enqueue(row["id"], row["requested_by"])
        return result

    async def _enqueue(self, job_id: uuid.UUID, user_id: uuid.UUID) -> None:
        try:
            await enqueue(self.publisher, job_id, user_id)
        except PublishError as exc:  # next pass re-publishes (enqueued_at ages again)
            log.error("re-publish failed", extra={"job_id": str(job_id), "error": str(exc)})


class Cleanup:
    """Deletes files past their retention and marks their jobs ``expired``."""

    def __init__(self, settings: ReportsSettings, db: Database) -> None:
        self.settings = settings
        self.db = db

    async def run_once(self) -> list[uuid.UUID]:
        rows = await self.db.fetch(
            """
            SELECT id, file_key FROM report_jobs
            WHERE status = 'done' AND expires_at < now()
            ORDER BY expires_at LIMIT %(n)s
            """,
            {"n": CLEANUP_BATCH},
        )
        expired: list[uuid.UUID] = []
        root = self.settings.reports_dir.resolve()
        for row in rows:
            if row["file_key"]:
                path = (root / row["file_key"]).resolve()
                if path.is_relative_to(root):
                    await asyncio.to_thread(path.unlink, True)
            done = await self.db.fetchrow(
                """
                UPDATE report_jobs SET status = 'expired', file_key = NULL
                WHERE id = %(id)s AND status = 'done' RETURNING id
                """,
                {"id": row["id"]},
            )
            if done is not None:
                expired.append(row["id"])
        if expired:
            log.info("expired report files deleted", extra={"count": len(expired)})
        return expired


class Scheduler:
    """Starts the report jobs of due schedules and moves each schedule to its next run."""

    def __init__(self, db: Database, publisher: Publisher, clock: Clock = utcnow) -> None:
        self.db = db
        self.publisher = publisher
        self.clock = clock

    async def run_once(self) -> list[uuid.UUID]:
        now = self.clock()
        started: list[tuple[uuid.UUID, uuid.UUID]] = []
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """
                SELECT s.id, s.owner_id, s.kind, s.params, s.frequency, s.weekday,
                       s.time_of_day, s.timezone, s.email_copy, s.next_run_at
                FROM report_schedules s JOIN users u ON u.id = s.owner_id
                WHERE s.enabled AND u.is_active AND s.next_run_at <= %(now)s
                ORDER BY s.next_run_at
                LIMIT %(n)s
                FOR UPDATE OF s SKIP LOCKED
                """,
                {"now": now, "n": SCHEDULES_PER_PASS},
            )
            for s in await cur.fetchall():
                zone = zone_or_default(s["timezone"])
                date_from, date_to = period_for_run(s["next_run_at"], s["frequency"], zone)
                params = dict(s["params"] or {})
                params.update(date_from=date_from.isoformat(), date_to=date_to.isoformat())
                job_id = uuid.uuid4()
                await conn.execute(
                    """
                    INSERT INTO report_jobs (id, requested_by, kind, params, email_copy,
                                             schedule_id, status)
                    VALUES (%(id)s, %(owner)s, %(kind)s, %(params)s::jsonb, %(email)s,
                            %(sid)s, 'queued')
                    """,
                    {
                        "id": job_id,
                        "owner": s["owner_id"],
                        "kind": s["kind"],
                        "params": json.dumps(params),
                        "email": s["email_copy"],
                        "sid": s["id"],
                    },
                )
                # Next run strictly after now: runs missed while down are not repeated.
                nxt = next_run_after(
                    now,
                    frequency=s["frequency"],
                    time_of_day=s["time_of_day"],
                    zone=zone,
                    weekday=s["weekday"],
                )
                await conn.execute(
                    """
                    UPDATE report_schedules SET next_run_at = %(next)s, last_run_at = %(now)s,
                           last_job_id = %(job)s
                    WHERE id = %(id)s
                    """,
                    {"next": nxt, "now": now, "job": job_id, "id": s["id"]},
                )
                started.append((job_id, s["owner_id"]))
        for job_id, owner in started:
            SCHEDULED.inc()
            log.info("scheduled report started", extra={"job_id": str(job_id)})
            try:
                await enqueue(self.publisher, job_id, owner)
            except PublishError as exc:  # the reaper re-publishes queued jobs later
                log.error("scheduled job not published", extra={"error": str(exc)})
        return [job_id for job_id, _ in started]


async def every(interval_secs: float, fn: Callable[[], Awaitable[object]], name: str) -> None:
    """Call ``fn`` every ``interval_secs`` until cancelled; log and survive its errors."""
    while True:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s pass failed", name)
        await asyncio.sleep(interval_secs)
