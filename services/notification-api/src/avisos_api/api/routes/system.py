"""``GET /v1/admin/system``: what the admin "System" screen shows.

* ``services``: readiness of this API (PostgreSQL, Redis, RabbitMQ) and of every other
  service whose readiness URL is configured (``AVISOS_SERVICE_READY_URLS``, e.g.
  ``ws-gateway=http://ws-gateway:8001/readyz,dispatcher=http://dispatcher:8002/readyz``).
* ``queues``: messages waiting and consumers of every work queue and the dead letters
  (passive declarations: nothing is created).
* ``gateways``: what each live gateway instance reports in Redis
  (``{prefix}presence:gateway:{instance}``, refreshed every few seconds, expiring when the
  instance dies), and ``connected_users`` / ``connections`` summed over them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi import APIRouter
from pydantic import BaseModel

from avisos_api.api.deps import AdminUser, StateDep
from avisos_api.api.routes.health import backing_checks
from avisos_common.topology import QUEUE_DEAD_LETTERS, work_queues

router = APIRouter(prefix="/v1/admin", tags=["system"])

PROBE_TIMEOUT_SECS = 3.0
PRESENCE_PATTERN = "presence:gateway:*"


class ServiceStatus(BaseModel):
    status: str
    checks: dict[str, str] = {}


class QueueDepth(BaseModel):
    messages: int
    consumers: int


class SystemStatus(BaseModel):
    services: dict[str, ServiceStatus]
    queues: dict[str, QueueDepth] | None
    gateways: list[dict[str, Any]]
    connected_users: int | None
    connections: int | None


def parse_ready_urls(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(","):
        name, sep, url = part.strip().partition("=")
        if sep and name and url:
            out[name.strip()] = url.strip()
    return out


async def _probe(client: httpx.AsyncClient, url: str) -> ServiceStatus:
    try:
        r = await client.get(url)
    except httpx.HTTPError as exc:
        return ServiceStatus(status="unavailable", checks={"http": type(exc).__name__})
    try:
        body = r.json()
    except ValueError:
        body = {}
    checks = body.get("checks", {}) if isinstance(body, dict) else {}
    return ServiceStatus(
        status="ok" if r.status_code == 200 else "unavailable",
        checks={str(k): str(v) for k, v in checks.items()},
    )


async def _queues(state: StateDep) -> dict[str, QueueDepth] | None:
    conn = state.extras.get("amqp")
    if conn is None or conn.is_closed:
        return None
    out: dict[str, QueueDepth] = {}
    channel = await conn.channel()
    try:
        for name in [q.name for q in work_queues()] + [QUEUE_DEAD_LETTERS]:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            out[name] = QueueDepth(
                messages=int(result.message_count or 0),
                consumers=int(result.consumer_count or 0),
            )
    finally:
        await channel.close()
    return out


async def _gateways(state: StateDep) -> list[dict[str, Any]]:
    client = state.cache.client
    keys = [k async for k in client.scan_iter(match=state.cache.key(PRESENCE_PATTERN))]
    values = await client.mget(keys) if keys else []
    return sorted(
        (json.loads(v) for v in values if v),
        key=lambda g: str(g.get("instance", "")),
    )


@router.get("/system", response_model=SystemStatus)
async def system(_: AdminUser, state: StateDep) -> SystemStatus:
    urls = parse_ready_urls(state.settings.service_ready_urls)
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECS) as client:
        own, probed, queues, gateways = await asyncio.gather(
            backing_checks(state),
            asyncio.gather(*(_probe(client, u) for u in urls.values())),
            _queues(state),
            _gateways(state),
        )
    services = {
        "notification-api": ServiceStatus(
            status="ok" if all(v == "ok" for v in own.values()) else "unavailable", checks=own
        ),
        **dict(zip(urls, probed, strict=True)),
    }
    return SystemStatus(
        services=services,
        queues=queues,
        gateways=gateways,
        connected_users=sum(int(g.get("users", 0)) for g in gateways) if gateways else None,
        connections=sum(int(g.get("connections", 0)) for g in gateways) if gateways else None,
    )
