"""``GET /system/status`` for the admin "System" screen in local runs: the gateway's
readiness and connected users (from its ``/metrics``), and the depth of every work queue
(passive declarations on RabbitMQ).

Only admins get an answer: the caller's session cookie is checked by asking the API
``/v1/me``. Where the web service only serves files (``AVISOS_WEB_PROXY=false``, behind
nginx) the route does not exist and the screen says "not available"; production has
Prometheus for these numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import aio_pika
import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from avisos_common.topology import QUEUE_DEAD_LETTERS, work_queues

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECS = 3.0
_METRIC = re.compile(r"^(avisos_gateway_(?:users|connections))(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


def gateway_http_url(gateway_url: str) -> str:
    """``ws://host:port[/ws]`` -> ``http://host:port``."""
    url = re.sub(r"^ws", "http", gateway_url.rstrip("/"))
    return url[: -len("/ws")] if url.endswith("/ws") else url


def parse_gateway_metrics(text: str) -> dict[str, float]:
    """The gateway's connection gauges from Prometheus text (summed over labels)."""
    out: dict[str, float] = {}
    for name, value in _METRIC.findall(text):
        key = name.removeprefix("avisos_gateway_")
        out[key] = out.get(key, 0.0) + float(value)
    return out


class SystemStatus:
    def __init__(self, api: httpx.AsyncClient, gateway_url: str, amqp_url: str) -> None:
        self.api = api
        self.gateway = gateway_http_url(gateway_url)
        self.amqp_url = amqp_url

    async def _is_admin(self, request: Request) -> bool:
        cookie = request.headers.get("cookie")
        if not cookie:
            return False
        try:
            r = await self.api.get("/v1/me", headers={"cookie": cookie}, timeout=CHECK_TIMEOUT_SECS)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and "admin" in r.json().get("roles", [])

    async def _gateway(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "unavailable", "checks": {}}
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECS) as c:
            try:
                ready = await c.get(self.gateway + "/readyz")
                body = ready.json() if "json" in ready.headers.get("content-type", "") else {}
                out["status"] = "ok" if ready.status_code == 200 else "unavailable"
                out["checks"] = body.get("checks", {}) if isinstance(body, dict) else {}
                metrics = await c.get(self.gateway + "/metrics")
                out.update(parse_gateway_metrics(metrics.text))
            except httpx.HTTPError as exc:
                out["checks"] = {"http": type(exc).__name__}
        return out

    async def _queues(self) -> dict[str, dict[str, int]] | None:
        names = [q.name for q in work_queues()] + [QUEUE_DEAD_LETTERS]
        try:
            conn = await asyncio.wait_for(aio_pika.connect(self.amqp_url), CHECK_TIMEOUT_SECS)
        except Exception as exc:  # any connection failure means "no numbers"
            log.warning("rabbitmq unreachable for status", extra={"error": str(exc)})
            return None
        out: dict[str, dict[str, int]] = {}
        try:
            for name in names:
                # A passive declaration of a missing queue closes its channel: one each.
                with contextlib.suppress(Exception):
                    channel = await conn.channel()
                    q = await channel.declare_queue(name, passive=True)
                    result = q.declaration_result
                    out[name] = {
                        "messages": int(result.message_count or 0),
                        "consumers": int(result.consumer_count or 0),
                    }
                    await channel.close()
        finally:
            await conn.close()
        return out

    async def __call__(self, request: Request) -> Response:
        if not await self._is_admin(request):
            return JSONResponse({"title": "Forbidden", "status": 403}, status_code=403)
        gateway, queues = await asyncio.gather(self._gateway(), self._queues())
        return JSONResponse(
            {
                "services": {"ws-gateway": gateway},
                "connected_users": gateway.get("users"),
                "connections": gateway.get("connections"),
                "queues": queues,
            },
            headers={"cache-control": "no-store"},
        )
