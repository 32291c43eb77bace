"""The baselines the gateway is measured against, each runnable as its own process:

    python bench/gateway/servers.py fastapi PORT   # FastAPI/uvicorn, dict of connections
    python bench/gateway/servers.py socketio PORT  # python-socketio (ASGI on uvicorn)
    python bench/gateway/servers.py bare PORT      # bare websockets, broadcast() on demand

Every server answers ``GET /healthz``. The bare server broadcasts one notification frame
(the gateway's JSON shape and size, plus a top-level ``t0``) to every other connection when
a connection sends the text ``broadcast``, so both sides of the fan-out comparison move and
parse the same bytes; the FastAPI server
does the same with its usual loop of ``await ws.send_text``.
Compression is off everywhere so that the comparison is about the design, not deflate.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from http import HTTPStatus
from typing import Any

# Module level: FastAPI resolves the (string) annotations of endpoints in module globals.
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_fastapi(port: int) -> None:
    import uvicorn

    app = FastAPI()
    connections: dict[str, set[WebSocket]] = {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        user = ws.query_params.get("user", "")
        await ws.accept()
        connections.setdefault(user, set()).add(ws)
        try:
            while True:
                text = await ws.receive_text()
                if text == "broadcast":
                    frame = json.dumps({"t0": time.time()})
                    for conns in list(connections.values()):
                        for other in list(conns):
                            if other is not ws:
                                await other.send_text(frame)
        except WebSocketDisconnect:
            pass
        finally:
            connections[user].discard(ws)

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_per_message_deflate=False,
        loop="uvloop",
        backlog=4096,
    )


def run_socketio(port: int) -> None:
    import socketio
    import uvicorn

    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
    users: dict[str, str] = {}

    @sio.event  # type: ignore[misc,untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        users[sid] = environ.get("QUERY_STRING", "")

    @sio.event  # type: ignore[misc,untyped-decorator]
    async def disconnect(sid: str, *args: Any) -> None:
        users.pop(sid, None)

    async def health_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = socketio.ASGIApp(sio, other_asgi_app=health_app)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_per_message_deflate=False,
        loop="uvloop",
        backlog=4096,
    )


def notification_frame(t0: float) -> str:
    """One notification as the gateway frames it (``{"v":1,"type":"notification",...}``)."""
    return json.dumps(
        {
            "t0": t0,
            "v": 1,
            "type": "notification",
            "cursor": 1,
            "notification": {
                "id": "0b5f2d0e-8a39-4d5c-9a4f-6f1b2c3d4e5f",
                "seq": 1,
                "type": "stock.low",
                "category": "inventory",
                "subject": "Recuento de inventario: Tienda 7 cierra a las 20:00",
                "message": "Todo el personal: recuento general mañana a las 7:00.",
                "priority": "high",
                "data": {"t0": t0, "store": "T7"},
                "action_url": None,
                "source_event_id": None,
                "created_at": "2026-11-28T12:00:00Z",
                "updated_at": None,
                "read_at": None,
                "archived_at": None,
            },
            "unread": {
                "total": 1,
                "by_priority": {"low": 0, "normal": 0, "high": 1, "critical": 0},
            },
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def run_bare(port: int) -> None:
    import uvloop
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.http11 import Request, Response

    clients: set[ServerConnection] = set()

    def process_request(ws: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return ws.respond(HTTPStatus.OK, "ok\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for msg in ws:
                if msg == "broadcast":
                    broadcast([c for c in clients if c is not ws], notification_frame(time.time()))
        except ConnectionClosed:
            pass
        finally:
            clients.discard(ws)

    async def main() -> None:
        async with serve(
            handler,
            "127.0.0.1",
            port,
            process_request=process_request,
            compression=None,
            ping_interval=None,
            backlog=4096,
        ) as server:
            await server.serve_forever()

    uvloop.run(main())


if __name__ == "__main__":
    raise_fd_limit()
    kind, port = sys.argv[1], int(sys.argv[2])
    {"fastapi": run_fastapi, "socketio": run_socketio, "bare": run_bare}[kind](port)
