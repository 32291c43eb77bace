"""Report jobs and schedules (the files are built by the reports service).

* ``POST /v1/reports`` queues a job (202) and enqueues ``ReportJobRequested`` through the
  outbox, in the same transaction as the job row.
* ``GET /v1/reports``, ``GET /v1/reports/{id}``: the caller's jobs (admins: anyone's by id,
  everyone's with ``?all=true``). Another user's job answers 404, like a missing one.
* ``GET /v1/reports/{id}/file``: the file, for its requester and admins only.
* ``POST/GET/DELETE /v1/report-schedules``: daily or weekly reports at a wall-clock time
  in the owner's time zone (``users.timezone``), run by the reports service's scheduler.

Contracts shared with the reports service (it does not import this module): the report
kinds and params below, the tables of migration 0004, and ``AVISOS_REPORTS_DIR`` (the
shared storage that ``report_jobs.file_key`` is relative to). See docs/reports.md.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select

from avisos_api import outbox
from avisos_api.api.deps import CurrentUser, SessionDep, StateDep
from avisos_api.exceptions import InvalidInput, NotFound, RateLimited
from avisos_api.models import User
from avisos_api.models_reports import ReportJob, ReportSchedule
from avisos_common.messages import ReportJobRequested, ReportStatusChanged
from avisos_common.settings import ServiceSettings
from avisos_common.topology import EXCHANGE_REPORTS, ROUTING_KEY_REPORTS

router = APIRouter(prefix="/v1/reports", tags=["reports"])
schedules_router = APIRouter(prefix="/v1/report-schedules", tags=["reports"])

ReportKind = Literal[
    "notification_activity", "delivery_performance", "inventory_alerts", "ack_ledger"
]
Frequency = Literal["daily", "weekly"]
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Longest period one report may cover (same bound as the reports service).
MAX_PERIOD_DAYS = 400
DEFAULT_TIMEZONE = "Europe/Madrid"


class ReportsApiSettings(ServiceSettings):
    """The API's view of the reports (``AVISOS_`` environment variables)."""

    reports_dir: Path = Path("/var/lib/avisos/reports")
    #: Queued or running jobs one user may have at once (bounds the work one user causes).
    reports_max_active_jobs: int = 5
    #: Schedules one user may own.
    reports_max_schedules: int = 20


def reports_settings(state: Any) -> ReportsApiSettings:
    """Settings kept on the app state (tests put their own in ``extras``)."""
    found = state.extras.get("reports_settings")
    if not isinstance(found, ReportsApiSettings):
        found = ReportsApiSettings()
        state.extras["reports_settings"] = found
    return found


class ReportParams(BaseModel):
    """Filters. Dates are local dates in the requester's time zone, inclusive."""

    model_config = ConfigDict(extra="forbid")

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    locations: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=500
    )
    categories: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=100
    )
    source_event_id: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> ReportParams:
        if self.date_from and self.date_to:
            if self.date_to < self.date_from:
                raise ValueError("date_to is before date_from")
            if (self.date_to - self.date_from).days > MAX_PERIOD_DAYS:
                raise ValueError(f"the period is longer than {MAX_PERIOD_DAYS} days")
        return self


def _check_kind_params(kind: str, params: ReportParams) -> None:
    if kind == "ack_ledger" and not params.source_event_id:
        raise InvalidInput("the acknowledgement ledger needs params.source_event_id")


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ReportKind
    params: ReportParams = Field(default_factory=ReportParams)
    #: Also send the file by email when it is ready.
    email_copy: bool = False


class ReportJobPublic(BaseModel):
    id: uuid.UUID
    kind: str
    params: dict[str, Any]
    email_copy: bool
    status: str
    progress: float
    error: str | None
    schedule_id: uuid.UUID | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    expires_at: dt.datetime | None
    file_name: str | None
    file_size: int | None
    row_count: int | None
    download_url: str | None

    @classmethod
    def of(cls, job: ReportJob) -> ReportJobPublic:
        return cls(
            id=job.id,
            kind=job.kind,
            params=job.params,
            email_copy=job.email_copy,
            status=job.status,
            progress=job.progress,
            error=job.error,
            schedule_id=job.schedule_id,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            expires_at=job.expires_at,
            file_name=job.file_name,
            file_size=job.file_size,
            row_count=job.row_count,
            download_url=f"/v1/reports/{job.id}/file" if job.status == "done" else None,
        )


class ReportJobList(BaseModel):
    items: list[ReportJobPublic]


def _is_admin(user: User) -> bool:
    return "admin" in user.roles


async def _job_for(db: SessionDep, user: User, job_id: uuid.UUID) -> ReportJob:
    job = await db.get(ReportJob, job_id)
    if job is None or (job.requested_by != user.id and not _is_admin(user)):
        raise NotFound("no such report")
    return job


@router.post("", response_model=ReportJobPublic, status_code=status.HTTP_202_ACCEPTED)
async def request_report(
    body: ReportCreate, user: CurrentUser, db: SessionDep, state: StateDep
) -> ReportJobPublic:
    _check_kind_params(body.kind, body.params)
    limit = reports_settings(state).reports_max_active_jobs
    active = await db.scalar(
        select(func.count())
        .select_from(ReportJob)
        .where(ReportJob.requested_by == user.id, ReportJob.status.in_(("queued", "running")))
    )
    if (active or 0) >= limit:
        raise RateLimited(f"you already have {limit} reports in progress; wait for one to finish")
    job = ReportJob(
        id=uuid.uuid4(),
        requested_by=user.id,
        kind=body.kind,
        params=body.params.model_dump(mode="json", exclude_defaults=True),
        email_copy=body.email_copy,
        status="queued",
        progress=0.0,
        attempts=0,
    )
    db.add(job)
    outbox.add(
        db,
        EXCHANGE_REPORTS,
        ROUTING_KEY_REPORTS,
        ReportJobRequested(job_id=job.id, requested_by=user.id),
    )
    outbox.add_realtime(db, ReportStatusChanged(user_id=user.id, job_id=job.id, status="queued"))
    await db.commit()
    await db.refresh(job)
    return ReportJobPublic.of(job)


@router.get("", response_model=ReportJobList)
async def list_reports(
    user: CurrentUser,
    db: SessionDep,
    all: bool = Query(default=False, description="admins: every user's jobs"),
    limit: int = Query(default=50, ge=1, le=200),
) -> ReportJobList:
    q = select(ReportJob).order_by(ReportJob.created_at.desc(), ReportJob.id).limit(limit)
    if not (all and _is_admin(user)):
        q = q.where(ReportJob.requested_by == user.id)
    rows = (await db.scalars(q)).all()
    return ReportJobList(items=[ReportJobPublic.of(j) for j in rows])


@router.get("/{job_id}", response_model=ReportJobPublic)
async def get_report(job_id: uuid.UUID, user: CurrentUser, db: SessionDep) -> ReportJobPublic:
    return ReportJobPublic.of(await _job_for(db, user, job_id))


@router.get("/{job_id}/file", response_class=FileResponse)
async def download_report(
    job_id: uuid.UUID, user: CurrentUser, db: SessionDep, state: StateDep
) -> FileResponse:
    """The file of a finished job: only its requester and admins may download it."""
    job = await _job_for(db, user, job_id)
    if job.status == "expired":
        raise NotFound("this report has expired; request it again")
    if job.status != "done" or not job.file_key:
        raise NotFound("this report is not ready")
    root = reports_settings(state).reports_dir.resolve()
    path = (root / job.file_key).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("the report file is gone")
    return FileResponse(
        path,
        media_type=XLSX_CONTENT_TYPE,
        filename=job.file_name or f"report-{job.id}.xlsx",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


# --- schedules -------------------------------------------------------------------------


def next_run_after(
    after: dt.datetime,
    frequency: Frequency,
    time_of_day: dt.time,
    zone: ZoneInfo,
    weekday: int | None,
) -> dt.datetime:
    """First run strictly after ``after``, per local date (DST-safe). Same rule as
    ``avisos_reports.schedule.next_run_after`` (services do not import each other)."""
    local_today = after.astimezone(zone).date()
    wall = time_of_day.replace(tzinfo=None, fold=0)
    for offset in range(-1, 9):
        day = local_today + dt.timedelta(days=offset)
        if frequency == "weekly" and day.weekday() != weekday:
            continue
        candidate = dt.datetime.combine(day, wall, tzinfo=zone).astimezone(dt.UTC)
        if candidate > after:
            return candidate
    raise AssertionError("unreachable")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ReportKind
    params: ReportParams = Field(default_factory=ReportParams)
    frequency: Frequency
    #: 0 = Monday .. 6 = Sunday; required for weekly schedules.
    weekday: int | None = Field(default=None, ge=0, le=6)
    #: Wall-clock time in the owner's time zone.
    time_of_day: dt.time
    email_copy: bool = False
    #: Admins may schedule for another user (the report is built as that user).
    owner_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _check(self) -> ScheduleCreate:
        if (self.frequency == "weekly") != (self.weekday is not None):
            raise ValueError("weekday is required for weekly schedules, and only for them")
        if self.params.date_from or self.params.date_to:
            raise ValueError("scheduled reports cover the previous day or week; omit dates")
        return self


class SchedulePublic(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    kind: str
    params: dict[str, Any]
    frequency: str
    weekday: int | None
    time_of_day: dt.time
    timezone: str
    email_copy: bool
    next_run_at: dt.datetime
    last_run_at: dt.datetime | None
    last_job_id: uuid.UUID | None

    @classmethod
    def of(cls, s: ReportSchedule) -> SchedulePublic:
        return cls(
            id=s.id,
            owner_id=s.owner_id,
            kind=s.kind,
            params=s.params,
            frequency=s.frequency,
            weekday=s.weekday,
            time_of_day=s.time_of_day,
            timezone=s.timezone,
            email_copy=s.email_copy,
            next_run_at=s.next_run_at,
            last_run_at=s.last_run_at,
            last_job_id=s.last_job_id,
        )


class ScheduleList(BaseModel):
    items: list[SchedulePublic]


@schedules_router.post("", response_model=SchedulePublic, status_code=status.HTTP_201_CREATED)
async def create_schedule(
    body: ScheduleCreate, user: CurrentUser, db: SessionDep, state: StateDep
) -> SchedulePublic:
    _check_kind_params(body.kind, body.params)
    owner = user
    if body.owner_id is not None and body.owner_id != user.id:
        if not _is_admin(user):
            raise NotFound("no such user")
        found = await db.get(User, body.owner_id)
        if found is None or not found.is_active:
            raise NotFound("no such user")
        owner = found
    count = await db.scalar(
        select(func.count()).select_from(ReportSchedule).where(ReportSchedule.owner_id == owner.id)
    )
    limit = reports_settings(state).reports_max_schedules
    if (count or 0) >= limit:
        raise InvalidInput(f"at most {limit} schedules per user")
    zone = _zone(owner.timezone)
    time_of_day = body.time_of_day.replace(tzinfo=None, second=0, microsecond=0)
    schedule = ReportSchedule(
        id=uuid.uuid4(),
        owner_id=owner.id,
        kind=body.kind,
        params=body.params.model_dump(mode="json", exclude_defaults=True),
        frequency=body.frequency,
        weekday=body.weekday,
        time_of_day=time_of_day,
        timezone=zone.key,
        email_copy=body.email_copy,
        enabled=True,
        next_run_at=next_run_after(
            dt.datetime.now(dt.UTC), body.frequency, time_of_day, zone, body.weekday
        ),
    )
    db.add(schedule)
    await db.commit()
    await db.refresh(schedule)
    return SchedulePublic.of(schedule)


@schedules_router.get("", response_model=ScheduleList)
async def list_schedules(
    user: CurrentUser,
    db: SessionDep,
    all: bool = Query(default=False, description="admins: every user's schedules"),
) -> ScheduleList:
    q = select(ReportSchedule).order_by(ReportSchedule.created_at, ReportSchedule.id)
    if not (all and _is_admin(user)):
        q = q.where(ReportSchedule.owner_id == user.id)
    return ScheduleList(items=[SchedulePublic.of(s) for s in (await db.scalars(q)).all()])


@schedules_router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_schedule(schedule_id: uuid.UUID, user: CurrentUser, db: SessionDep) -> Response:
    schedule = await db.get(ReportSchedule, schedule_id)
    if schedule is None or (schedule.owner_id != user.id and not _is_admin(user)):
        raise NotFound("no such schedule")
    await db.delete(schedule)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
