"""The one-origin front for local runs and tests: ``/api/*`` to the API, ``/ws`` to the
gateway. In production nginx (``deploy/``) does the same; keep the two in step.

* ``/api/x`` goes to ``{AVISOS_API_URL}/x`` with cookies, ``X-CSRF-Token`` and
  ``X-Request-ID``; ``/api/internal/...`` is never routed (404), whatever its spelling.
* ``/ws`` is relayed frame by frame to ``{AVISOS_GATEWAY_URL}/ws`` with the query string
  (the ticket) and the browser's ``Origin`` unchanged, so the gateway's Origin allowlist
  judges the real page. A handshake the gateway refuses is refused to the browser too, and
  close codes travel both ways (the client decides on reconnecting from them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections.abc import AsyncIterator
from http.cookiejar import Cookie, CookiePolicy
from urllib.parse import unquote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

from avisos_common.logging import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

API_PREFIX = "/api"
#: Request headers passed to the API; anything else (hop-by-hop, Host...) is dropped.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        "cookie",
        "user-agent",
        "idempotency-key",
        "if-none-match",
        "if-modified-since",
        "x-csrf-token",
        REQUEST_ID_HEADER.lower(),
    }
)
#: Response headers not passed back (hop-by-hop, or recomputed by our server).
DROPPED_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
)
#: WebSocket close codes a peer may send (1005/1006/1015 are reserved for "none/abnormal").
_RESERVED_CLOSE_CODES = frozenset({1005, 1006, 1015})


class _NoCookies(CookiePolicy):
    """A cookie policy that neither stores nor sends any cookie."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: object) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: object) -> bool:
        return False

    def path_return_ok(self, path: str, request: object) -> bool:
        return False


def api_target(path: str) -> str | None:
    """The API path for a front path under ``/api``, or None if it must not be routed.

    Percent-escapes are decoded and dot segments resolved before the check, so neither
    ``/api/%69nternal/x`` nor ``/api/v1/../internal/x`` reaches the internal endpoints."""
    if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
        return None
    rest = unquote(path[len(API_PREFIX) :]) or "/"
    normal = posixpath.normpath(rest)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if normal == "/internal" or normal.startswith("/internal/") or "\\" in normal:
        return None
    return normal


class ApiProxy:
    """Forwards HTTP requests to the API with one pooled client."""

    def __init__(self, api_url: str, timeout_secs: float, max_body_bytes: int) -> None:
        self.api_url = api_url.rstrip("/")
        self.max_body_bytes = max_body_bytes
        # The client must never keep cookies: each browser's cookies travel in its own
        # request's Cookie header. A shared jar would hand one user's session to the next.
        self.client = httpx.AsyncClient(
            base_url=self.api_url,
            timeout=httpx.Timeout(timeout_secs),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        # (httpx copies a jar given to the constructor, dropping its policy: set it here.)
        self.client.cookies.jar.set_policy(_NoCookies())

    async def close(self) -> None:
        await self.client.aclose()

    async def healthy(self) -> bool:
        try:
            r = await self.client.get("/healthz", timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def __call__(self, request: Request) -> Response:
        target = api_target(request.url.path)
        if target is None:
            return JSONResponse({"title": "Not Found", "status": 404}, status_code=404)
        body = await request.body()
        if len(body) > self.max_body_bytes:
            return JSONResponse({"title": "Payload Too Large", "status": 413}, status_code=413)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS
        }
        client_host = request.client.host if request.client else ""
        prior = request.headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{prior}, {client_host}" if prior else client_host
        headers["x-forwarded-proto"] = request.url.scheme
        headers["x-forwarded-host"] = request.headers.get("host", "")
        upstream_req = self.client.build_request(
            request.method,
            target,
            params=request.url.query or None,
            content=body,
            headers=headers,
        )
        try:
            upstream = await self.client.send(upstream_req, stream=True)
        except httpx.HTTPError as exc:
            log.warning("api unreachable", extra={"error": str(exc), "path": target})
            return JSONResponse(
                {"title": "API unavailable", "status": 502, "detail": type(exc).__name__},
                status_code=502,
            )
        out_headers = [
            (k, v)
            for k, v in upstream.headers.multi_items()
            if k.lower() not in DROPPED_RESPONSE_HEADERS
        ]

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        response = StreamingResponse(stream(), status_code=upstream.status_code)
        # raw_headers keeps repeated Set-Cookie headers apart.
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers
        ] + [(b"cache-control", b"no-store")] * ("cache-control" not in upstream.headers)
        return response


def _close_code(code: int | None) -> int:
    if code is None or code in _RESERVED_CLOSE_CODES or not (1000 <= code <= 4999):
        return 1000
    return code


class WsRelay:
    """Relays one browser WebSocket to the gateway."""

    def __init__(self, gateway_url: str, max_message_bytes: int) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.max_message_bytes = max_message_bytes

    def upstream_url(self, query: str) -> str:
        base = self.gateway_url if self.gateway_url.endswith("/ws") else self.gateway_url + "/ws"
        return f"{base}?{query}" if query else base

    async def __call__(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        client_host = websocket.client.host if websocket.client else ""
        try:
            upstream = await connect(
                self.upstream_url(websocket.url.query),
                origin=Origin(origin) if origin else None,
                additional_headers={"X-Forwarded-For": client_host},
                max_size=self.max_message_bytes,
                open_timeout=10,
                ping_interval=None,  # the gateway pings the browser itself
                compression=None,
            )
        except InvalidStatus as exc:
            log.info("gateway refused socket", extra={"status": exc.response.status_code})
            await websocket.close(code=1008)  # before accept: the browser sees a refusal
            return
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            log.warning("gateway unreachable", extra={"error": str(exc)})
            await websocket.close(code=1011)
            return
        await websocket.accept()
        await self._pump(websocket, upstream)

    async def _pump(self, websocket: WebSocket, upstream: ClientConnection) -> None:
        async def browser_to_gateway() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(_close_code(message.get("code")))
                    return
                if message.get("text") is not None:
                    await upstream.send(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

        async def gateway_to_browser() -> None:
            try:
                async for data in upstream:
                    if isinstance(data, str):
                        await websocket.send_text(data)
                    else:
                        await websocket.send_bytes(data)
            except ConnectionClosed:
                pass
            code = _close_code(upstream.close_code if upstream.close_code is not None else 1011)
            reason = upstream.close_reason or ""
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=code, reason=reason)

        tasks = [
            asyncio.create_task(browser_to_gateway()),
            asyncio.create_task(gateway_to_browser()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
