"""The front proxy's config, run by a real nginx against stub upstreams: /api stripped and
forwarded with a request id, /api/internal and the operational endpoints refused (also
when disguised), the web app at /, the WebSocket upgrade at /ws. The compose service names
are swapped for the stubs' addresses; everything else is the committed file. Skipped where
no nginx binary is installed (`apt-get install nginx-light`)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import WSMsgType, web
from deploykit import DEPLOY, localize_nginx
from websockets.asyncio.client import connect

from avisos_testkit.infra import free_port

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


@dataclass
class Stub:
    """An upstream that records each request (path with query, headers) and answers it."""

    name: str
    port: int = field(default_factory=free_port)
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"path": request.path_qs, "headers": dict(request.headers)})
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(f"{self.name}:{msg.data}")
            return ws
        # Like the services, echo the request id.
        rid = {"X-Request-ID": request.headers.get("X-Request-ID", "none")}
        return web.json_response({"upstream": self.name, "path": request.path_qs}, headers=rid)

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


@dataclass
class Front:
    url: str
    api: Stub
    gateway: Stub
    web: Stub
    log: Path


@pytest.fixture(scope="module")
async def front(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Front]:
    assert NGINX is not None
    stubs = {name: Stub(name) for name in ("notification-api", "ws-gateway", "web")}
    runners = [await s.start() for s in stubs.values()]
    port = free_port()
    prefix = tmp_path_factory.mktemp("nginx")
    log = prefix / "access.log"
    upstreams = {name: f"http://127.0.0.1:{stub.port}" for name, stub in stubs.items()}
    conf = localize_nginx(upstreams, port, log)
    (prefix / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; nginx runs beside the loop
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g",
         "daemon off; error_log stderr warn;"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        async with httpx.AsyncClient() as c:
            while True:
                try:
                    if (await c.get(f"{url}/nginx-health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                await asyncio.sleep(0.05)
        yield Front(url, stubs["notification-api"], stubs["ws-gateway"], stubs["web"], log)
    finally:
        proc.terminate()
        proc.wait(10)
        for r in runners:
            await r.cleanup()


async def test_api_prefix_stripped_with_request_id(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url) as c:
        r = await c.get("/api/v1/notifications?limit=5&cursor=a%2Fb")
        assert r.json() == {
            "upstream": "notification-api",
            "path": "/v1/notifications?limit=5&cursor=a%2Fb",
        }
        minted = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", minted)
        assert front.api.seen[-1]["headers"]["X-Request-ID"] == minted
        assert front.api.seen[-1]["headers"]["X-Forwarded-For"] == "127.0.0.1"

        r = await c.post("/api/v1/auth/login", json={}, headers={"X-Request-ID": "rid-123"})
        assert r.json()["path"] == "/v1/auth/login"
        assert r.headers.get_list("x-request-id") == ["rid-123"]  # once, not once per hop
        assert front.api.seen[-1]["headers"]["X-Request-ID"] == "rid-123"
    line = json.loads(front.log.read_text().splitlines()[-1])
    assert line["request_id"] == "rid-123" and line["path"] == "/api/v1/auth/login"


@pytest.mark.parametrize(
    "path",
    [
        "/api/internal/v1/users/u/notifications/read",
        "/api/internal",
        "/api//internal/v1/x",
        "/api/%69nternal/v1/x",
        "/api/./internal/v1/x",
        "/api/v1/../internal/v1/x",
        "/api/metrics",
        "/api/healthz",
        "/api/readyz",
    ],
)
async def test_internal_and_operational_paths_never_reach_the_api(front: Front, path: str) -> None:
    before = len(front.api.seen)
    async with httpx.AsyncClient(base_url=front.url) as c:
        request = c.build_request("POST", front.url)
        request.url = request.url.copy_with(raw_path=path.encode())
        r = await c.send(request)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert len(front.api.seen) == before, f"{path} reached the API"


async def test_web_app_and_websocket(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url) as c:
        for path in ("/", "/admin/users", "/sw.js", "/apidocs"):
            assert (await c.get(path)).json()["upstream"] == "web", path
        assert (await c.get("/api/v1/me")).json()["upstream"] == "notification-api"
    ws_url = front.url.replace("http://", "ws://") + "/ws?ticket=abc.def"
    async with connect(ws_url, origin="http://localhost:8080") as ws:  # type: ignore[arg-type]
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 5) == "ws-gateway:ping"
    seen = front.gateway.seen[-1]
    assert seen["path"] == "/ws?ticket=abc.def"
    assert seen["headers"]["Origin"] == "http://localhost:8080"
    assert seen["headers"]["X-Request-ID"] and seen["headers"]["Host"]
    line = json.loads(front.log.read_text().splitlines()[-1])
    assert line["path"] == "/ws" and "ticket" not in json.dumps(line)  # tickets stay out of logs


def test_committed_config_is_valid(tmp_path: Path) -> None:
    """`nginx -t` on the file exactly as compose mounts it (names are resolved per request
    through 127.0.0.11, so no DNS is needed to load it)."""
    assert NGINX is not None
    out = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(DEPLOY / "nginx/nginx.conf"),
         "-g", "error_log stderr;"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
