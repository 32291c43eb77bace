"""The web front: the static PWA (with security and cache headers, SPA fallback to
``index.html``), the ``/api`` and ``/ws`` proxy for local runs, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Scope
from starlette.websockets import WebSocket

from avisos_web.headers import SecurityHeaders
from avisos_web.proxy import ApiProxy, WsRelay
from avisos_web.settings import WebSettings
from avisos_web.system import SystemStatus

#: Revalidate everything on each load: files have no content hashes (no build step), and
#: the service worker is what makes the app fast and offline.
REVALIDATE = "no-cache"
ICON_CACHE = "public, max-age=86400"
HTML_PATH_EXCLUDED = ("/api", "/ws", "/static/", "/healthz", "/readyz")


class CachedStatic(StaticFiles):
    """StaticFiles with our cache policy (ETag/Last-Modified revalidation)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        path = str(full_path)
        response.headers["cache-control"] = ICON_CACHE if "/icons/" in path else REVALIDATE
        return response


def create_app(settings: WebSettings | None = None) -> Starlette:
    settings = settings or WebSettings()
    static_dir = Path(settings.static_dir)
    index = static_dir / "index.html"
    proxy = (
        ApiProxy(settings.api_url, settings.proxy_timeout_secs, settings.proxy_max_body_bytes)
        if settings.web_proxy
        else None
    )

    def page(path: Path, media_type: str | None = None) -> Response:
        return FileResponse(path, media_type=media_type, headers={"cache-control": REVALIDATE})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = {"static": "ok" if index.is_file() else "missing index.html"}
        if proxy is not None:
            checks["api"] = "ok" if await proxy.healthy() else "unavailable"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def service_worker(_: Request) -> Response:
        response = page(static_dir / "sw.js", "text/javascript")
        response.headers["service-worker-allowed"] = "/"
        return response

    async def manifest(_: Request) -> Response:
        return page(static_dir / "manifest.webmanifest", "application/manifest+json")

    async def spa(request: Request) -> Response:
        """Every app route (``/``, ``/notifications/…``, ``/admin/…``) is the one page."""
        path = request.url.path
        if path.startswith(HTML_PATH_EXCLUDED) or "." in path.rsplit("/", 1)[-1]:
            return PlainTextResponse("Not Found", status_code=404)
        return page(index, "text/html")

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/sw.js", service_worker),
        Route("/manifest.webmanifest", manifest),
        Mount("/static", app=CachedStatic(directory=static_dir), name="static"),
    ]
    if proxy is not None:
        relay = WsRelay(settings.gateway_url, settings.ws_max_message_bytes)
        api_proxy = proxy

        # Plain functions: Starlette treats callable objects as raw ASGI apps.
        async def forward(request: Request) -> Response:
            return await api_proxy(request)

        async def ws(websocket: WebSocket) -> None:
            await relay(websocket)

        status = SystemStatus(proxy.client, settings.gateway_url, settings.amqp_url)

        async def system_status(request: Request) -> Response:
            return await status(request)

        routes += [
            Route(
                "/api/{path:path}",
                forward,
                methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            ),
            WebSocketRoute("/ws", ws),
            Route("/system/status", system_status),
        ]
    routes.append(Route("/{path:path}", spa))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if proxy is not None:
                await proxy.close()

    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], lifespan=lifespan)
