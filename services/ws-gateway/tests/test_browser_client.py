"""``avisos-realtime.js`` driven in real Chromium against a real gateway process.

A local aiohttp server serves the JS module, a test page and a ticket endpoint (minting
tickets with the shared secret, as the API's ``POST /v1/realtime/ticket`` will)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from gwkit import GatewayProcess, World, mint_ticket
from playwright.async_api import Page, async_playwright

from avisos_common.messages import SessionRevoked
from avisos_testkit.infra import Backing, free_port

STATIC_JS = (
    Path(__file__).resolve().parents[3] / "services/web/src/avisos_web/static/js/avisos-realtime.js"
)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

PAGE = """<!doctype html><meta charset="utf-8"><title>avisos realtime test</title>
<script type="module">
import { AvisosRealtime } from "/static/js/avisos-realtime.js";
window.got = []; window.events = []; window.unread = null;
const rt = new AvisosRealtime({
  url: "WS_URL",
  minDelayMs: 100, maxDelayMs: 400,
  getTicket: async () => {
    const r = await fetch("/ticket", {method: "POST"});
    if (!r.ok) throw Object.assign(new Error("ticket"), {status: r.status});
    return (await r.json()).ticket;
  },
});
rt.addEventListener("notification", (e) => window.got.push(e.detail));
rt.addEventListener("unread_count", (e) => { window.unread = e.detail; });
for (const t of ["open", "close", "resume", "reload", "stopped"]) {
  rt.addEventListener(t, (e) => window.events.push({type: t, detail: e.detail}));
}
window.rt = rt;
rt.start();
</script>"""


class Site:
    def __init__(self, world: World, user: uuid.UUID, sid: str) -> None:
        self.world, self.user, self.sid = world, user, sid
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.ws_url = ""
        self.tickets = 0

    async def start(self) -> web.AppRunner:
        async def page(_: web.Request) -> web.Response:
            return web.Response(text=PAGE.replace("WS_URL", self.ws_url), content_type="text/html")

        async def js(_: web.Request) -> web.Response:
            return web.Response(text=STATIC_JS.read_text(), content_type="text/javascript")

        async def ticket(_: web.Request) -> web.Response:
            self.tickets += 1
            return web.json_response({"ticket": mint_ticket(self.user, self.sid)})

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/static/js/avisos-realtime.js", js)
        app.router.add_post("/ticket", ticket)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


@pytest.fixture
async def browser_page() -> AsyncIterator[Page]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        try:
            yield page
        finally:
            await browser.close()


async def got(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate("window.got")
    return result


async def test_js_client_receives_reconnects_and_resumes(
    world: World, backing: Backing, browser_page: Page
) -> None:
    user = await world.user()
    sid = await world.session(user)
    site = Site(world, user, sid)
    runner = await site.start()
    gw = await GatewayProcess(backing, AVISOS_ALLOWED_ORIGINS=site.origin).start()
    site.ws_url = gw.url
    page = browser_page
    try:
        await page.goto(site.origin + "/")
        await page.wait_for_function("window.rt && window.rt.state === 'open'", timeout=10_000)
        n1 = await world.notify(user, subject="uno")
        await page.wait_for_function("window.got.length === 1", timeout=10_000)
        first = (await got(page))[0]
        assert first["notification"]["id"] == str(n1.id)
        assert first["cursor"] == 1
        assert await page.evaluate("window.unread.total") == 1

        # The server goes away (drain: 1001); notifications are committed meanwhile.
        await gw.stop()
        await page.wait_for_function(
            "window.events.some(e => e.type === 'close' && e.detail.code === 1001"
            " && e.detail.willReconnect)",
            timeout=10_000,
        )
        missed = [await world.add_notification(user, subject=f"m{i}") for i in range(3)]
        # A new instance on the same address: the client reconnects with its cursor.
        gw2 = GatewayProcess(backing, AVISOS_ALLOWED_ORIGINS=site.origin)
        gw2.port = gw.port
        gw2.env["AVISOS_GATEWAY_PORT"] = str(gw.port)
        await gw2.start()
        gw = gw2
        await page.wait_for_function("window.got.length === 4", timeout=15_000)
        items = await got(page)
        assert [i["notification"]["id"] for i in items[1:]] == [str(m.id) for m in missed]
        assert all(i["replayed"] for i in items[1:])
        assert [i["cursor"] for i in items] == [1, 2, 3, 4]
        events = await page.evaluate("window.events.map(e => e.type)")
        assert "resume" in events
        assert site.tickets >= 2  # a fresh ticket for every connection

        # Live again after the resume; then a logout stops the client for good.
        await world.notify(user, subject="cinco")
        await page.wait_for_function("window.got.length === 5", timeout=10_000)
        await world.publish(SessionRevoked(user_id=user, session_id=sid, reason="logout"))
        await page.wait_for_function("window.rt.state === 'stopped'", timeout=10_000)
        stopped = await page.evaluate("window.events.filter(e => e.type === 'stopped')")
        assert stopped[0]["detail"]["code"] == 4500
        tickets_before = site.tickets
        await page.wait_for_timeout(600)  # longer than the max backoff: no reconnect attempt
        assert site.tickets == tickets_before
    finally:
        await gw.stop()
        await runner.cleanup()
