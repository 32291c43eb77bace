"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from avisos_api.api.deps import AppState, StateDep
from avisos_api.schemas import Health
from avisos_common.metrics import render

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECS = 2.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


async def backing_checks(state: AppState) -> dict[str, str]:
    """Reachability of PostgreSQL, Redis and RabbitMQ: ``ok`` or why not."""
    checks: dict[str, str] = {}

    async def pg() -> None:
        async with state.sessionmaker() as s:
            await s.execute(text("SELECT 1"))

    async def rds() -> None:
        await state.cache.client.ping()

    async def amqp() -> None:
        conn = state.extras.get("amqp")
        if conn is None or conn.is_closed:
            raise ConnectionError("not connected")

    for name, check in (("postgresql", pg), ("redis", rds), ("rabbitmq", amqp)):
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_SECS)
            checks[name] = "ok"
        except Exception as exc:  # every failure is a "not ready" answer, never a 500
            checks[name] = f"unavailable: {type(exc).__name__}"
    return checks


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(state: StateDep) -> Response:
    """PostgreSQL, Redis and RabbitMQ are reachable (503 and which one, otherwise)."""
    checks = await backing_checks(state)
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = render()
    return Response(body, media_type=content_type)
