"""Report jobs end to end on the real broker and database: request -> running -> done with
status pushes, the in-app "report ready" call (to a stand-in of the API's internal
endpoint), the email copy on avisos.dispatch; failures with a reason; a service killed
mid-job (SIGKILL) whose job the reaper requeues; the scheduler firing at local time; the
cleanup of expired files."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import psycopg
import pytest
from reports_kit import INTERNAL_TOKEN, InternalApiStub, Seed, new_job

from avisos_common.amqp import Publisher
from avisos_common.messages import EmailDelivery, ReportJobRequested, realtime_adapter
from avisos_common.topology import (
    EXCHANGE_REALTIME,
    EXCHANGE_REPORTS,
    ROUTING_KEY_REPORTS,
    dispatch_queue,
)
from avisos_reports.db import Database
from avisos_reports.maintenance import Cleanup, Scheduler
from avisos_reports.schedule import next_run_after
from avisos_reports.service import ReportsService
from avisos_reports.settings import ReportsSettings
from avisos_testkit import polling
from avisos_testkit.infra import Backing, free_port

pytestmark = pytest.mark.timeout(120)

WAIT_SECS = 30.0
#: Reports are built by another task: wait longer than the shared default.
eventually = functools.partial(polling.eventually, timeout_secs=WAIT_SECS)


@pytest.fixture(scope="module")
async def service(rsettings: ReportsSettings, seed: Seed) -> AsyncIterator[ReportsService]:
    svc = ReportsService(rsettings, instance_id="test-instance")
    await svc.start(loops=False)
    yield svc
    await svc.stop(5.0)


@pytest.fixture
async def publisher(amqp: Any) -> Publisher:
    return await Publisher.open(amqp)


@pytest.fixture
async def realtime(amqp: Any) -> AsyncIterator[list[Any]]:
    """Every message on avisos.realtime while the test runs."""
    channel = await amqp.channel()
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(EXCHANGE_REALTIME, routing_key="")
    seen: list[Any] = []

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(realtime_adapter.validate_json(msg.body))
        await msg.ack()

    await queue.consume(on_message)
    yield seen
    await channel.close()


async def job_row(backing: Backing, job_id: uuid.UUID) -> dict[str, Any]:
    db = Database(backing.database_url)
    try:
        row = await db.fetchrow("SELECT * FROM report_jobs WHERE id = %(id)s", {"id": job_id})
    finally:
        await db.close()
    assert row is not None
    return row


async def until_status(backing: Backing, job_id: uuid.UUID, *status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await job_row(backing, job_id)
        return row if row["status"] in status else None

    result: dict[str, Any] = await eventually(check)
    return result


async def request(publisher: Publisher, job_id: uuid.UUID, user: uuid.UUID) -> None:
    await publisher.publish(
        EXCHANGE_REPORTS,
        ROUTING_KEY_REPORTS,
        ReportJobRequested(job_id=job_id, requested_by=user),
    )


async def test_job_runs_notifies_and_emails(
    service: ReportsService,
    publisher: Publisher,
    realtime: list[Any],
    amqp: Any,
    backing: Backing,
    seed: Seed,
    db: psycopg.Connection[Any],
    rsettings: ReportsSettings,
    api_stub: InternalApiStub,
) -> None:
    channel = await amqp.channel()
    email_queue = await channel.get_queue(dispatch_queue("email", "normal"))
    await email_queue.purge()
    job_id = new_job(
        db,
        seed.ana,
        "notification_activity",
        {"date_from": "2026-03-01", "date_to": "2026-03-31"},
        email_copy=True,
    )
    await request(publisher, job_id, seed.ana)
    row = await until_status(backing, job_id, "done", "failed")
    assert row["status"] == "done", row["error"]
    assert row["attempts"] == 1 and row["progress"] == 1.0 and row["lease_owner"] is None
    path = rsettings.reports_dir / row["file_key"]
    assert path.stat().st_size == row["file_size"]
    assert row["file_name"].endswith(".xlsx") and row["row_count"] > 0
    assert row["expires_at"] > row["finished_at"]

    # Pushed over the socket: running then done, for ana only.
    mine = [m for m in realtime if getattr(m, "job_id", None) == job_id]
    await eventually(lambda: [m for m in realtime if getattr(m, "status", "") == "done"])
    mine = [m for m in realtime if getattr(m, "job_id", None) == job_id]
    assert mine[0].status == "running" and mine[-1].status == "done"
    assert {m.user_id for m in mine} == {seed.ana}

    # The in-app "report ready" notification, through the API's internal endpoint.
    await eventually(lambda: [r for r in api_stub.requests if str(job_id) in json.dumps(r)])
    call = next(r for r in api_stub.requests if str(job_id) in json.dumps(r))
    assert call["path"] == "/internal/v1/notifications"
    assert call["headers"]["X-Avisos-Internal-Token"] == INTERNAL_TOKEN
    body = call["json"]
    assert body["user_ids"] == [str(seed.ana)] and body["type"] == "report.ready"
    assert body["category"] == "reports" and body["action_url"] == f"/reports/{job_id}"
    assert body["subject"].startswith("Informe listo")  # ana reads Spanish

    # The email copy with the file attached, for the dispatcher.
    message = await eventually(lambda: email_queue.get(fail=False, no_ack=True))
    email = EmailDelivery.model_validate_json(message.body)
    assert email.to == "ana@example.com" and email.user_id == seed.ana
    (attachment,) = email.attachments
    assert attachment.storage_key == row["file_key"]
    assert (rsettings.reports_dir / attachment.storage_key).exists()
    assert attachment.filename == row["file_name"]

    # A redelivered request does not run the job again.
    await request(publisher, job_id, seed.ana)
    await request(publisher, uuid.uuid4(), seed.ana)  # unknown job: skipped, acked
    await eventually(lambda: service.worker is not None and service.worker.processed >= 3)
    assert (await job_row(backing, job_id))["attempts"] == 1
    await channel.close()


async def test_unserviceable_job_fails_with_reason(
    service: ReportsService,
    publisher: Publisher,
    realtime: list[Any],
    backing: Backing,
    seed: Seed,
    db: psycopg.Connection[Any],
) -> None:
    job_id = new_job(db, seed.admin, "ack_ledger", {})
    await request(publisher, job_id, seed.admin)
    row = await until_status(backing, job_id, "done", "failed")
    assert row["status"] == "failed" and "source_event_id" in row["error"]
    failed = await eventually(
        lambda: [
            m for m in realtime if getattr(m, "job_id", None) == job_id and m.status == "failed"
        ]
    )
    assert "source_event_id" in failed[0].error


def _bulk_user(db: psycopg.Connection[Any], rows: int) -> uuid.UUID:
    uid = uuid.uuid4()
    db.execute(
        """INSERT INTO users (id, email, display_name, password_hash, roles, locale, timezone,
               is_active, notification_seq) VALUES (%s, %s, 'Bulk', 'x', '{admin}', 'en',
               'UTC', true, %s)""",
        (uid, f"bulk-{uid.hex[:8]}@example.com", rows),
    )
    db.execute(
        """INSERT INTO notifications (id, recipient_id, seq, type, category, subject, message,
               priority, data, created_at)
           SELECT gen_random_uuid(), %s, g, 'bulk.test', 'bulk', 'Bulk ' || g, 'm', 'low',
                  '{"location_code": "X1"}'::jsonb,
                  '2025-06-01T00:00:00Z'::timestamptz + g * interval '1 second'
           FROM generate_series(1, %s) g""",
        (uid, rows),
    )
    return uid


async def test_killed_service_job_is_requeued_then_done(
    service: ReportsService,
    publisher: Publisher,
    backing: Backing,
    db: psycopg.Connection[Any],
    rsettings: ReportsSettings,
) -> None:
    """SIGKILL the reports process mid-job: the job's heartbeat goes stale, the reaper
    requeues it, and a live instance finishes it (never stuck "running")."""
    user = _bulk_user(db, 100_000)
    port = free_port()
    env = {
        **os.environ,
        **backing.env(),
        "AVISOS_REPORTS_DIR": str(rsettings.reports_dir),
        "AVISOS_REPORTS_HEARTBEAT_SECS": "0.1",
        "AVISOS_REPORTS_FETCH_ROWS": "500",
        "AVISOS_API_INTERNAL_URL": rsettings.api_internal_url,
        "AVISOS_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "AVISOS_REPORTS_PORT": str(port),
    }
    # Only the doomed process consumes while the job starts.
    assert service.worker is not None
    await service.worker.stop(5.0)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "avisos_reports", env=env)
    try:
        # The process's probes: ready once it consumes the job queue.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready)
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/nope")).status_code == 404
            metrics = (await http.get("/metrics")).text
            assert "avisos_reports_jobs_running" in metrics
        job_id = new_job(
            db, user, "notification_activity", {"date_from": "2025-06-01", "date_to": "2025-06-03"}
        )
        await request(publisher, job_id, user)

        async def started() -> bool:
            row = await job_row(backing, job_id)
            return bool(row["status"] == "running" and row["progress"] > 0)

        await eventually(started)
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    row = await job_row(backing, job_id)
    assert row["status"] == "running" and row["progress"] < 1.0  # killed mid-job
    dead_owner = row["lease_owner"]
    assert dead_owner and dead_owner != "test-instance"

    await service.worker.start()  # a live instance again
    reaper = service.reaper
    assert reaper is not None

    async def reaped() -> bool:
        return job_id in (await reaper.run_once()).requeued

    await eventually(reaped)
    row = await until_status(backing, job_id, "done", "failed")
    assert row["status"] == "done" and row["attempts"] == 2
    assert row["row_count"] == 100_000 + 1  # detail rows + the one activity group
    part = rsettings.reports_dir / (row["file_key"] + ".part")
    assert not part.exists()


async def test_job_failed_when_out_of_attempts(
    service: ReportsService, backing: Backing, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    job_id = new_job(db, seed.admin, "notification_activity", {}, status="running")
    db.execute(
        """UPDATE report_jobs SET attempts = 2, lease_owner = 'gone',
               heartbeat_at = now() - interval '1 hour' WHERE id = %s""",
        (job_id,),
    )
    assert service.reaper is not None
    result = await service.reaper.run_once()
    assert job_id in result.failed
    row = await job_row(backing, job_id)
    assert row["status"] == "failed" and "stopped" in row["error"]


async def test_scheduled_report_fires_at_local_time(
    service: ReportsService,
    publisher: Publisher,
    backing: Backing,
    seed: Seed,
    db: psycopg.Connection[Any],
) -> None:
    from zoneinfo import ZoneInfo

    madrid = ZoneInfo("Europe/Madrid")
    created = dt.datetime(2026, 3, 9, 12, 0, tzinfo=dt.UTC)
    first = next_run_after(created, frequency="daily", time_of_day=dt.time(7, 30), zone=madrid)
    assert first == dt.datetime(2026, 3, 10, 6, 30, tzinfo=dt.UTC)  # 07:30 in Madrid
    schedule_id = uuid.uuid4()
    db.execute(
        """INSERT INTO report_schedules (id, owner_id, kind, params, frequency, time_of_day,
               timezone, email_copy, next_run_at)
           VALUES (%s, %s, 'notification_activity', '{"categories": ["stock"]}', 'daily',
                   '07:30', 'Europe/Madrid', false, %s)""",
        (schedule_id, seed.ana, first),
    )
    now = {"t": dt.datetime(2026, 3, 10, 6, 29, 59, tzinfo=dt.UTC)}
    scheduler = Scheduler(service.db, publisher, clock=lambda: now["t"])
    assert await scheduler.run_once() == []  # 07:29:59 local: not yet
    now["t"] = dt.datetime(2026, 3, 10, 6, 30, 0, tzinfo=dt.UTC)
    (job_id,) = await scheduler.run_once()
    assert await scheduler.run_once() == []  # fired once
    sched = db.execute(
        "SELECT next_run_at, last_job_id FROM report_schedules WHERE id = %s", (schedule_id,)
    ).fetchone()
    assert sched is not None
    assert sched[0] == dt.datetime(2026, 3, 11, 6, 30, tzinfo=dt.UTC) and sched[1] == job_id
    row = await until_status(backing, job_id, "done", "failed")
    assert row["status"] == "done", row["error"]
    assert row["schedule_id"] == schedule_id
    assert row["params"] == {
        "categories": ["stock"],
        "date_from": "2026-03-09",
        "date_to": "2026-03-09",
    }


async def test_cleanup_deletes_expired_files(
    rsettings: ReportsSettings, backing: Backing, seed: Seed, db: psycopg.Connection[Any]
) -> None:
    job_id = new_job(db, seed.admin, "notification_activity", {}, status="done")
    key = f"cl/{job_id}.xlsx"
    path = rsettings.reports_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    db.execute(
        """UPDATE report_jobs SET file_key = %s, expires_at = now() - interval '1 minute'
           WHERE id = %s""",
        (key, job_id),
    )
    database = Database(backing.database_url)
    try:
        expired = await Cleanup(rsettings, database).run_once()
    finally:
        await database.close()
    assert job_id in expired and not path.exists()
    row = await job_row(backing, job_id)
    assert row["status"] == "expired" and row["file_key"] is None
