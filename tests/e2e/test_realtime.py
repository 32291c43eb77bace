"""The real-time path through real processes: API (with its outbox relay) → RabbitMQ →
gateway → WebSocket, with tickets from the API, read state shared across tabs, and
sockets closed on logout and deactivation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from avisos_testkit.stack import Running, Stack

ORIGIN = "http://shop.e2e.test"
PASSWORD = "realtime-password-1"


@pytest.fixture(scope="module")
def services(stack: Stack) -> tuple[Running, Running]:
    api = stack.start("api", name="api-rt")
    gw = stack.start(
        "gateway",
        name="gw-rt",
        extra_env={"AVISOS_API_INTERNAL_URL": api.url, "AVISOS_ALLOWED_ORIGINS": ORIGIN},
    )
    return api, gw


class Browser:
    def __init__(self, api: Running, gw: Running) -> None:
        self.http = httpx.AsyncClient(base_url=api.url, timeout=10)
        self.gw = gw
        self.user_id = ""

    async def login(self, email: str) -> None:
        r = await self.http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.http.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        self.user_id = r.json()["user"]["id"]

    async def ticket(self) -> str:
        r = await self.http.post("/v1/realtime/ticket")
        assert r.status_code == 200, r.text
        ticket: str = r.json()["ticket"]
        return ticket

    async def socket(self, ticket: str | None = None) -> ClientConnection:
        t = ticket or await self.ticket()
        ws = await connect(f"ws://127.0.0.1:{self.gw.port}/ws?ticket={t}", origin=ORIGIN)  # type: ignore[arg-type]
        hello = await next_frame(ws, "connection_established")
        assert hello["v"] == 1
        return ws


async def next_frame(ws: ClientConnection, kind: str, timeout_secs: float = 10) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame

    return await asyncio.wait_for(find(), timeout_secs)


async def _user(admin: httpx.AsyncClient, roles: list[str]) -> str:
    email = f"rt-{uuid.uuid4().hex[:8]}@e2e.avisos"
    r = await admin.post(
        "/v1/admin/users",
        json={"email": email, "display_name": email[:11], "password": PASSWORD, "roles": roles},
    )
    assert r.status_code == 201, r.text
    return email


@pytest.fixture(scope="module")
async def admin(services: tuple[Running, Running], stack: Stack) -> AsyncIterator[Browser]:
    import subprocess
    import sys

    api, gw = services
    email = f"rt-admin-{uuid.uuid4().hex[:6]}@e2e.avisos"
    subprocess.run(
        [sys.executable, "-m", "avisos_api.cli", "create-admin", email],
        env={**api.env, "AVISOS_ADMIN_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
        timeout=60,
    )
    b = Browser(api, gw)
    await b.login(email)
    yield b
    await b.http.aclose()


async def _browser(services: tuple[Running, Running], admin: Browser, roles: list[str]) -> Browser:
    b = Browser(*services)
    await b.login(await _user(admin.http, roles))
    return b


async def _notify(admin: Browser, user_id: str, subject: str, priority: str = "normal") -> str:
    r = await admin.http.post(
        "/v1/notifications",
        json={
            "user_ids": [user_id],
            "type": "stock.low",
            "category": "inventory",
            "subject": subject,
            "message": "m",
            "priority": priority,
        },
    )
    assert r.status_code == 201, r.text
    nid: str = r.json()["notification_ids"][0]
    return nid


async def test_notification_reaches_only_its_recipient(
    services: tuple[Running, Running], admin: Browser
) -> None:
    ana = await _browser(services, admin, ["staff"])
    bob = await _browser(services, admin, ["staff"])
    ws_ana, ws_bob = await ana.socket(), await bob.socket()
    nid = await _notify(admin, ana.user_id, "Stock bajo: Leche", "high")
    frame = await next_frame(ws_ana, "notification")
    assert frame["notification"]["id"] == nid
    assert frame["notification"]["subject"] == "Stock bajo: Leche"
    assert frame["cursor"] == frame["notification"]["seq"] == 1
    with pytest.raises(TimeoutError):
        await next_frame(ws_bob, "notification", timeout_secs=1.0)
    await ws_ana.close()
    await ws_bob.close()


async def test_read_state_is_shared_across_tabs_and_rest(
    services: tuple[Running, Running], admin: Browser
) -> None:
    ana = await _browser(services, admin, ["staff"])
    tab1, tab2 = await ana.socket(), await ana.socket()
    n1 = await _notify(admin, ana.user_id, "uno")
    await _notify(admin, ana.user_id, "dos")
    for tab in (tab1, tab2):
        await next_frame(tab, "notification")
        await next_frame(tab, "notification")
    await tab1.send(json.dumps({"v": 1, "type": "mark_read", "ids": [n1], "ref": "r1"}))
    confirmation = await next_frame(tab2, "notification_read_confirmation")
    assert confirmation["ids"] == [n1] and confirmation["unread"]["total"] == 1
    # "Mark all read" over REST reaches every open socket.
    r = await ana.http.post("/v1/notifications/read-all")
    assert r.json()["updated"] == 1
    for tab in (tab1, tab2):
        frame = await next_frame(tab, "notification_read_confirmation")
        while not frame["all"]:
            frame = await next_frame(tab, "notification_read_confirmation")
        assert frame["unread"]["total"] == 0
    listed = (await ana.http.get("/v1/notifications", params={"read": "false"})).json()
    assert listed["items"] == []
    await tab1.close()
    await tab2.close()


async def test_resume_replays_what_was_missed(
    services: tuple[Running, Running], admin: Browser
) -> None:
    ana = await _browser(services, admin, ["staff"])
    ws = await ana.socket()
    await _notify(admin, ana.user_id, "antes")
    last = (await next_frame(ws, "notification"))["cursor"]
    await ws.close()
    missed = [await _notify(admin, ana.user_id, f"perdida {i}") for i in range(5)]
    t = await ana.ticket()
    ws = await connect(f"ws://127.0.0.1:{ana.gw.port}/ws?ticket={t}&cursor={last}", origin=ORIGIN)  # type: ignore[arg-type]
    got = [(await next_frame(ws, "notification"))["notification"]["id"] for _ in missed]
    assert got == missed
    await ws.close()


async def test_tickets_are_single_use_and_origin_checked(
    services: tuple[Running, Running], admin: Browser
) -> None:
    ana = await _browser(services, admin, ["staff"])
    t = await ana.ticket()
    ws = await ana.socket(t)
    with pytest.raises(InvalidStatus) as reused:
        await ana.socket(t)
    assert reused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as foreign:
        await connect(
            f"ws://127.0.0.1:{ana.gw.port}/ws?ticket={await ana.ticket()}",
            origin="https://evil.example",
        )  # type: ignore[arg-type]
    assert foreign.value.response.status_code == 403
    await ws.close()


async def test_logout_and_deactivation_close_sockets(
    services: tuple[Running, Running], admin: Browser
) -> None:
    ana = await _browser(services, admin, ["staff"])
    ws = await ana.socket()
    assert (await ana.http.post("/v1/auth/logout")).status_code == 204
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(next_frame(ws, "never"), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4500

    bob = await _browser(services, admin, ["staff"])
    ws_bob = await bob.socket()
    r = await admin.http.patch(f"/v1/admin/users/{bob.user_id}", json={"is_active": False})
    assert r.status_code == 200
    with pytest.raises(ConnectionClosed) as closed_bob:
        await asyncio.wait_for(next_frame(ws_bob, "never"), 10)
    assert closed_bob.value.rcvd is not None and closed_bob.value.rcvd.code == 4501
