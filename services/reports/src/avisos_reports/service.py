"""The reports service: consumes ``avisos.reports.jobs`` and runs the maintenance loops."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from avisos_common.amqp import Publisher, Reject, RetryLater, Worker, connect
from avisos_common.health import HealthServer
from avisos_common.messages import ReportJobRequested
from avisos_common.topology import QUEUE_REPORTS
from avisos_reports.db import Database
from avisos_reports.jobs import Clock, JobRunner, utcnow
from avisos_reports.maintenance import Cleanup, Reaper, Scheduler, every
from avisos_reports.notify import Notifier
from avisos_reports.settings import ReportsSettings

log = logging.getLogger(__name__)

#: How long a delivery waits for a free build slot before going back through a delay queue.
SLOT_WAIT_SECS = 30.0
SLOT_RETRY_DELAY_SECS = 15.0


class ReportWorker(Worker):
    """Claims a job, acks at once, and builds it in the background (bounded concurrency)."""

    queue = QUEUE_REPORTS
    # Waiting for a slot is retried through the delay queues; it is not a failure.
    max_attempts = 1000

    def __init__(
        self, connection: AbstractRobustConnection, settings: ReportsSettings, runner: JobRunner
    ) -> None:
        super().__init__(connection)
        self.prefetch = max(1, settings.reports_concurrency)
        self.slots = asyncio.Semaphore(max(1, settings.reports_concurrency))
        self.runner = runner
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, body: bytes, message: AbstractIncomingMessage, attempt: int) -> None:
        try:
            request = ReportJobRequested.model_validate_json(body)
        except ValidationError as exc:
            raise Reject(f"invalid ReportJobRequested: {exc}") from exc
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation of a stopping service that lands as the slot frees up.
            async with asyncio.timeout(SLOT_WAIT_SECS):
                await self.slots.acquire()
        except TimeoutError:
            raise RetryLater("all build slots busy", SLOT_RETRY_DELAY_SECS) from None
        try:
            job = await self.runner.claim(request.job_id)
        except BaseException:
            self.slots.release()
            raise
        if job is None:
            self.slots.release()
            log.info("job not queued; skipped", extra={"job_id": str(request.job_id)})
            return
        task = asyncio.create_task(self.runner.run(job), name=f"report-{job.id}")
        self.tasks.add(task)

        def _done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            self.slots.release()

        task.add_done_callback(_done)
        # Returning acks the message: the job's state now lives in report_jobs.


class ReportsService:
    """Everything one reports instance runs. ``start()`` then ``stop()``."""

    def __init__(
        self, settings: ReportsSettings, clock: Clock = utcnow, instance_id: str | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.instance_id = (
            instance_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self.db = Database(settings.psycopg_dsn)
        self.notifier = Notifier(
            settings.api_internal_url, settings.internal_token.get_secret_value()
        )
        self.connection: AbstractRobustConnection | None = None
        self.worker: ReportWorker | None = None
        self.publisher: Publisher | None = None
        self.reaper: Reaper | None = None
        self.cleanup: Cleanup | None = None
        self.scheduler: Scheduler | None = None
        self._loops: list[asyncio.Task[None]] = []
        self.health: HealthServer | None = None

    async def start(self, *, loops: bool = True) -> None:
        self.settings.reports_dir.mkdir(parents=True, exist_ok=True)
        self.connection = await connect(self.settings.amqp_url)
        # One publisher for jobs and loops, independent of the consumer's channel.
        self.publisher = await Publisher.open(self.connection)
        runner = JobRunner(
            self.settings, self.db, self.publisher, self.notifier, self.instance_id, self.clock
        )
        self.worker = ReportWorker(self.connection, self.settings, runner)
        await self.worker.start()
        self.reaper = Reaper(self.settings, self.db, self.publisher)
        self.cleanup = Cleanup(self.settings, self.db)
        self.scheduler = Scheduler(self.db, self.publisher, self.clock)
        if loops:
            s = self.settings
            self._loops = [
                asyncio.create_task(
                    every(s.reports_reaper_interval_secs, self.reaper.run_once, "reaper")
                ),
                asyncio.create_task(
                    every(s.reports_cleanup_interval_secs, self.cleanup.run_once, "cleanup")
                ),
                asyncio.create_task(
                    every(s.reports_scheduler_interval_secs, self.scheduler.run_once, "scheduler")
                ),
            ]
        if self.settings.reports_port:
            self.health = HealthServer(
                self.settings.reports_host, self.settings.reports_port, self.ready
            )
            await self.health.start()
        log.info("reports service started", extra={"instance": self.instance_id})

    async def ready(self) -> bool:
        """Broker connected, job queue consumed, database answering."""
        if self.connection is None or self.connection.is_closed or self.worker is None:
            return False
        if self.worker._consumer_tag is None:
            return False
        row = await self.db.fetchrow("SELECT 1 AS ok")
        return row is not None

    async def stop(self, timeout_secs: float = 30.0) -> None:
        if self.health is not None:
            await self.health.stop()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.worker is not None:
            await self.worker.stop(timeout_secs)
            if self.worker.tasks:
                # Builds still running are abandoned; their lease goes stale and the
                # reaper requeues them.
                await asyncio.wait(self.worker.tasks, timeout=timeout_secs)
        if self.connection is not None:
            await self.connection.close()
        await self.notifier.aclose()
        await self.db.close()
