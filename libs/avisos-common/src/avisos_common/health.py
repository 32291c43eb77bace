"""``/healthz``, ``/readyz`` and ``/metrics`` for the services without a web framework
(dispatcher, reports).

A deliberately tiny HTTP/1.1 server on asyncio (one request per connection): probes and
Prometheus only ever send ``GET``. The caller passes ``ready``, an async callable that
says whether the service can do its work (broker connected, queues consumed, database
answering); it must not raise for "no", and it gets ``REQUEST_TIMEOUT_SECS`` to answer.

* ``/healthz``: 200 while the event loop answers (liveness).
* ``/readyz``: 200 when ``ready()`` is true; 503 otherwise.
* ``/metrics``: the process's Prometheus registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from avisos_common.metrics import render

log = logging.getLogger(__name__)

#: Time a client gets to send its request line and headers.
REQUEST_TIMEOUT_SECS = 5.0
#: Longest request head accepted (bytes).
MAX_HEAD_BYTES = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], Awaitable[bool]]) -> None:
        self.host = host
        self.port = port
        self.ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_HEAD_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health endpoint listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_SECS)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, body, ctype = await self._answer(method, path)
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, b"GET only\n", text
        if path == "/healthz":
            return 200, b"ok\n", text
        if path == "/readyz":
            try:
                ok = await asyncio.wait_for(self.ready(), REQUEST_TIMEOUT_SECS)
            except Exception:
                ok = False
            return (200, b"ready\n", text) if ok else (503, b"not ready\n", text)
        if path == "/metrics":
            body, ctype = render()
            return 200, body, ctype
        return 404, b"not found\n", text
