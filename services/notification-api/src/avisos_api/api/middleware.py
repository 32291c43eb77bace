"""ASGI middleware: request ids and request metrics (pure ASGI, no per-request task)."""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avisos_common import logging as avisos_logging
from avisos_common.metrics import Histogram

REQUEST_SECONDS = Histogram(
    "avisos_api_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_HEADER = avisos_logging.REQUEST_ID_HEADER.lower().encode()


class RequestContext:
    """Takes ``X-Request-ID`` from the request (or makes one), binds it to the logs of
    the request, echoes it in the response, and records latency by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", []):
            if name == _HEADER:
                candidate = value.decode("latin-1")
                rid = candidate if _VALID_ID.match(candidate) else None
                break
        rid = rid or avisos_logging.new_request_id()
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (_HEADER, rid.encode())]
            await send(message)

        with avisos_logging.bind(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                REQUEST_SECONDS.labels(scope.get("method", ""), path, str(status)).observe(
                    time.perf_counter() - started
                )
