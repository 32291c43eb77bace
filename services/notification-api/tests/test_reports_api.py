"""Report jobs and schedules over the API: enqueue through the outbox, object-level
authorization (another user's report is a 404, its file too), limits, schedules at local
time; and one run through the real reports service (API -> relay -> broker -> reports ->
internal notification -> download)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from avisos_api.api.deps import AppState
from avisos_api.api.routes.reports import ReportsApiSettings
from avisos_api.core.config import Settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def reports_dir(state: AppState, tmp_path: Path) -> Iterator[Path]:
    previous = state.extras.get("reports_settings")
    state.extras["reports_settings"] = ReportsApiSettings(reports_dir=tmp_path)
    yield tmp_path
    if previous is None:
        state.extras.pop("reports_settings", None)
    else:
        state.extras["reports_settings"] = previous


async def _sql(state: AppState, sql: str, **params: Any) -> Any:
    async with state.sessionmaker() as s:
        result = await s.execute(text(sql), params)
        await s.commit()
        return result


async def test_request_is_queued_through_the_outbox_and_private(
    people: Any, state: AppState, reports_dir: Path
) -> None:
    ana = await people.create()
    eve = await people.create()
    r = await ana.client.post(
        "/v1/reports",
        json={"kind": "notification_activity", "params": {"date_from": "2026-03-01"}},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["download_url"] is None
    res = await _sql(
        state,
        "SELECT exchange, routing_key, body FROM outbox WHERE exchange = 'avisos.reports'"
        " AND convert_from(body, 'UTF8')::jsonb->>'job_id' = :id",
        id=job["id"],
    )
    assert [(row[0], row[1]) for row in res] == [("avisos.reports", "jobs")]

    assert (await ana.client.get(f"/v1/reports/{job['id']}")).status_code == 200
    assert (await eve.client.get(f"/v1/reports/{job['id']}")).status_code == 404
    assert (await eve.client.get(f"/v1/reports/{job['id']}/file")).status_code == 404
    assert [j["id"] for j in (await ana.client.get("/v1/reports")).json()["items"]] == [job["id"]]
    assert (await eve.client.get("/v1/reports")).json()["items"] == []


async def test_only_the_requester_and_admins_download(
    people: Any, state: AppState, reports_dir: Path
) -> None:
    ana = await people.create()
    eve = await people.create()
    admin = await people.create(roles=["admin"])
    r = await ana.client.post("/v1/reports", json={"kind": "inventory_alerts"})
    job_id = r.json()["id"]
    assert (await ana.client.get(f"/v1/reports/{job_id}/file")).status_code == 404  # not ready
    key = f"ab/{job_id}.xlsx"
    (reports_dir / "ab").mkdir()
    (reports_dir / key).write_bytes(b"PK fake xlsx")
    await _sql(
        state,
        "UPDATE report_jobs SET status = 'done', file_key = :key, file_name = 'alerts.xlsx',"
        " expires_at = now() + interval '1 day' WHERE id = :id",
        key=key,
        id=job_id,
    )
    ok = await ana.client.get(f"/v1/reports/{job_id}/file")
    assert ok.status_code == 200 and ok.content == b"PK fake xlsx"
    assert ok.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert 'filename="alerts.xlsx"' in ok.headers["content-disposition"]
    assert (await eve.client.get(f"/v1/reports/{job_id}/file")).status_code == 404
    assert (await admin.client.get(f"/v1/reports/{job_id}/file")).status_code == 200
    # A key that escapes the reports directory is never served.
    await _sql(
        state, "UPDATE report_jobs SET file_key = '../../etc/passwd' WHERE id = :id", id=job_id
    )
    assert (await ana.client.get(f"/v1/reports/{job_id}/file")).status_code == 404


async def test_limits_and_validation(people: Any, reports_dir: Path) -> None:
    ana = await people.create()
    r = await ana.client.post("/v1/reports", json={"kind": "ack_ledger"})
    assert r.status_code == 422
    r = await ana.client.post(
        "/v1/reports",
        json={
            "kind": "notification_activity",
            "params": {"date_from": "2026-03-02", "date_to": "2026-03-01"},
        },
    )
    assert r.status_code == 422
    for _ in range(5):
        r = await ana.client.post("/v1/reports", json={"kind": "inventory_alerts"})
        assert r.status_code == 202
    r = await ana.client.post("/v1/reports", json={"kind": "inventory_alerts"})
    assert r.status_code == 429


async def test_schedules_at_local_time_and_private(people: Any, reports_dir: Path) -> None:
    ana = await people.create()
    eve = await people.create()
    r = await ana.client.post(
        "/v1/report-schedules",
        json={"kind": "notification_activity", "frequency": "daily", "time_of_day": "07:30"},
    )
    assert r.status_code == 201, r.text
    sched = r.json()
    zone = ZoneInfo(sched["timezone"])
    nxt = dt.datetime.fromisoformat(sched["next_run_at"]).astimezone(zone)
    assert (nxt.hour, nxt.minute) == (7, 30)
    assert nxt > dt.datetime.now(dt.UTC)
    weekly = await ana.client.post(
        "/v1/report-schedules",
        json={
            "kind": "inventory_alerts",
            "frequency": "weekly",
            "weekday": 0,
            "time_of_day": "08:00",
            "email_copy": True,
        },
    )
    assert weekly.status_code == 201
    assert dt.datetime.fromisoformat(weekly.json()["next_run_at"]).astimezone(zone).weekday() == 0
    bad = await ana.client.post(
        "/v1/report-schedules",
        json={"kind": "inventory_alerts", "frequency": "weekly", "time_of_day": "08:00"},
    )
    assert bad.status_code == 422
    assert len((await ana.client.get("/v1/report-schedules")).json()["items"]) == 2
    assert (await eve.client.get("/v1/report-schedules")).json()["items"] == []
    assert (await eve.client.delete(f"/v1/report-schedules/{sched['id']}")).status_code == 404
    assert (await ana.client.delete(f"/v1/report-schedules/{sched['id']}")).status_code == 204
    assert len((await ana.client.get("/v1/report-schedules")).json()["items"]) == 1


async def test_report_through_the_real_reports_service(
    people: Any, app: FastAPI, state: AppState, settings: Settings, tmp_path: Path
) -> None:
    """API -> outbox relay -> broker -> reports service -> internal "report ready" call back
    into the API -> the requester downloads the file and reads it."""
    from avisos_reports.notify import Notifier
    from avisos_reports.service import ReportsService
    from avisos_reports.settings import ReportsSettings

    state.extras["reports_settings"] = ReportsApiSettings(reports_dir=tmp_path)
    token = settings.internal_token.get_secret_value()
    rsettings = ReportsSettings(
        env="test",
        database_url=settings.database_url,
        amqp_url=settings.amqp_url,
        reports_dir=tmp_path,
        internal_token=token,  # type: ignore[arg-type]
        reports_heartbeat_secs=0.2,
    )
    service = ReportsService(rsettings, instance_id=f"api-test-{uuid.uuid4().hex[:6]}")
    service.notifier = Notifier(
        "http://testserver",
        token,
        client=httpx.AsyncClient(transport=httpx.ASGITransport(app=app)),
    )
    await service.start(loops=False)
    try:
        ana = await people.create(roles=["admin"], locale="en")
        r = await ana.client.post("/v1/reports", json={"kind": "notification_activity"})
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while True:
            job = (await ana.client.get(f"/v1/reports/{job_id}")).json()
            if job["status"] in ("done", "failed") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "done", job
        f = await ana.client.get(job["download_url"])
        assert f.status_code == 200
        path = tmp_path / "downloaded.xlsx"
        path.write_bytes(f.content)
        wb = openpyxl.load_workbook(path)
        assert wb.sheetnames == ["Summary", "Activity", "Notifications"]
        # The "report ready" notification arrived in ana's inbox through the internal API.
        deadline = time.monotonic() + 10
        while True:
            inbox = (await ana.client.get("/v1/notifications")).json()["items"]
            ready = [n for n in inbox if n["type"] == "report.ready"]
            if ready or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert ready and ready[0]["action_url"] == f"/reports/{job_id}"
        assert ready[0]["data"]["report_job_id"] == job_id
    finally:
        await service.stop(5.0)
