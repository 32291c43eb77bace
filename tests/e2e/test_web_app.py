"""The browser app end to end: real API, gateway and web front processes, real Chromium.

One stack per module (API + gateway + web on free ports). Every test logs in through the
login page, like a person. Screenshots of the main screens go to
``test-output/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from avisos_api.cli import vapid_keypair
from avisos_testkit.infra import Backing, free_port
from avisos_testkit.polling import eventually
from avisos_testkit.push_service import PushService
from avisos_testkit.stack import Running, Stack

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "e2e-web-password-1"
LOCATION = "WEB-01"
#: The API announces this public key to browsers (GET /v1/push/vapid-public-key).
VAPID_PRIVATE, VAPID_PUBLIC = vapid_keypair()
UI_TIMEOUT_MS = 20_000
"""What the screen may take to follow: a first visit also installs the service worker, and
CI machines are busier than a desk."""


@dataclass
class WebStack:
    api: Running
    gateway: Running
    web: Running
    admin_email: str
    publisher_key: str

    @property
    def url(self) -> str:
        return self.web.url


def _admin_cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "avisos_api.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


@pytest.fixture(scope="module")
def web_stack(stack: Stack) -> Iterator[WebStack]:
    web_port = free_port()
    origin = f"http://127.0.0.1:{web_port}"
    reports_dir = str(stack.log_dir / "web-reports")
    gateway_port = free_port()
    api = stack.start(
        "api",
        name="api-web",
        extra_env={
            "AVISOS_PUBLIC_URL": origin,
            "AVISOS_REPORTS_DIR": reports_dir,
            "AVISOS_SERVICE_READY_URLS": f"ws-gateway=http://127.0.0.1:{gateway_port}/readyz",
            "AVISOS_VAPID_PUBLIC_KEY": VAPID_PUBLIC,
        },
    )
    stack.start(
        "reports",
        name="reports-web",
        extra_env={"AVISOS_API_INTERNAL_URL": api.url, "AVISOS_REPORTS_DIR": reports_dir},
    )
    gateway = stack.start(
        "gateway",
        name="gateway-web",
        port=gateway_port,
        extra_env={
            "AVISOS_ALLOWED_ORIGINS": f"{origin},http://localhost:{web_port}",
            "AVISOS_API_INTERNAL_URL": api.url,
        },
    )
    web = stack.start(
        "web",
        name="web",
        port=web_port,
        extra_env={
            "AVISOS_API_URL": api.url,
            "AVISOS_GATEWAY_URL": f"ws://127.0.0.1:{gateway.port}",
        },
    )
    admin_email = f"admin-{uuid.uuid4().hex[:6]}@web.e2e"
    env = {**api.env, "AVISOS_ADMIN_PASSWORD": PASSWORD}
    _admin_cli(env, "create-admin", admin_email, "--name", "Ada Admin")
    key = _admin_cli(env, "create-api-key", "erp-web", "--scope", "events:publish")
    yield WebStack(api, gateway, web, admin_email, key.strip().splitlines()[-1])
    # The stack is shared by the session: leave nothing consuming for the next modules.
    for name in ("web", "gateway-web", "reports-web", "api-web"):
        if name in stack.running:
            stack.stop(name)


class Api:
    """An admin's HTTP session on the API (to arrange data and check results)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.c = client

    @classmethod
    async def login(cls, base: str, email: str, password: str = PASSWORD) -> Api:
        c = httpx.AsyncClient(base_url=base, timeout=15)
        r = await c.post("/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return cls(c)

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.c.request(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    async def close(self) -> None:
        await self.c.aclose()


@pytest.fixture(scope="module")
async def admin(web_stack: WebStack) -> AsyncIterator[Api]:
    a = await Api.login(web_stack.api.url, web_stack.admin_email)
    r = await a.c.post("/v1/admin/locations", json={"code": LOCATION, "name": "Tienda Web Sol"})
    assert r.status_code in (201, 409), r.text
    yield a
    await a.close()


async def new_user(admin: Api, role: str = "staff", **extra: Any) -> dict[str, Any]:
    email = f"{role}-{uuid.uuid4().hex[:6]}@web.e2e"
    body = {
        "email": email,
        "display_name": f"{role.title()} {email[:10]}",
        "password": PASSWORD,
        "roles": [role],
        "location_codes": [LOCATION],
        **extra,
    }
    user: dict[str, Any] = await admin.call("POST", "/v1/admin/users", json=body)
    return user


async def notify(
    admin: Api, user_id: str, subject: str, priority: str = "high", action_url: str | None = None
) -> str:
    out = await admin.call(
        "POST",
        "/v1/notifications",
        json={
            "user_ids": [user_id],
            "type": "stock.low",
            "category": "inventory",
            "subject": subject,
            "message": f"{subject}: quedan 3 unidades en {LOCATION}",
            "priority": priority,
            "action_url": action_url,
        },
    )
    return str(out["notification_ids"][0])


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


CONSOLE: list[str] = []


POLL_TIMEOUT_SECS = 30.0
"""How long a state reached through the services (an outbox, a queue, a worker) may take to
show: generous, because CI machines are slower and busier than a desk."""


async def new_context(browser: Browser, web: WebStack, **kw: Any) -> BrowserContext:
    ctx = await browser.new_context(base_url=web.url, locale=kw.pop("locale", "es-ES"), **kw)
    ctx.set_default_timeout(UI_TIMEOUT_MS)
    # Page errors and console messages end up in the failure report.
    ctx.on("page", lambda p: p.on("console", lambda m: CONSOLE.append(f"{m.type}: {m.text}")))
    ctx.on("page", lambda p: p.on("pageerror", lambda e: CONSOLE.append(f"pageerror: {e}")))
    return ctx


@pytest.fixture(autouse=True)
def _console_on_failure() -> Any:
    CONSOLE.clear()
    yield
    if CONSOLE:
        print("browser console:\n" + "\n".join(CONSOLE[-50:]))


async def login(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/")
    await page.locator("#login-email").fill(email)
    await page.locator("#login-password").fill(password)
    await page.locator("#login-password").press("Enter")
    await expect(page.locator("#app-header")).to_be_visible()
    await expect(page.locator("#conn-state[data-state=open]")).to_be_attached()


async def publish_stock_out(web: WebStack, sku: str, product_name: str) -> None:
    """An inventory system reports ``sku`` out of stock at LOCATION, over the events API."""
    async with httpx.AsyncClient(base_url=web.api.url) as erp:
        r = await erp.post(
            "/v1/events",
            headers={"Authorization": f"Bearer {web.publisher_key}"},
            json={
                "id": f"evt-{uuid.uuid4().hex[:8]}",
                "source": "erp-web",
                "type": "stock.out",
                "time": dt.datetime.now(dt.UTC).isoformat(),
                "data": {"sku": sku, "product_name": product_name, "location_code": LOCATION},
            },
        )
        assert r.status_code == 201, r.text


def bell(page: Page) -> Any:
    return page.locator("avisos-bell")


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


#: WCAG 2 AA contrast of every visible text on the page against its effective background
#: (the first opaque ancestor background): 4.5:1, or 3:1 for large text.
CONTRAST_JS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const bgOf = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const faded = (el) => {
    for (let e = el; e; e = e.parentElement) {
      if (Number(getComputedStyle(e).opacity) < 1) return true;
    }
    return false;
  };
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility() || el.closest("[disabled], .sr-only") || faded(el)) continue;
    const st = getComputedStyle(el);
    const size = parseFloat(st.fontSize);
    if (size === 0) continue;
    const fg = lum(rgb(st.color).slice(0, 3));
    const bg = lum(bgOf(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    const text = el.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) bad.push(`${el.className}: ${ratio.toFixed(2)} "${text}"`);
  }
  return bad;
}"""


async def assert_contrast(page: Page) -> None:
    bad = await page.evaluate(CONTRAST_JS)
    assert bad == [], f"{page.url}: low contrast: {bad}"


# --- the server --------------------------------------------------------------------------


async def test_headers_static_spa_and_proxy_rules(web_stack: WebStack) -> None:
    async with httpx.AsyncClient(base_url=web_stack.url) as c:
        for path in ("/", "/notifications/abc", "/static/js/app.js", "/manifest.webmanifest"):
            r = await c.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        index = (await c.get("/admin/users")).text
        assert '<script type="module" src="/static/js/app.js">' in index
        assert " style=" not in index and "<script>" not in index  # nothing inline
        sw = await c.get("/sw.js")
        assert sw.headers["cache-control"] == "no-cache"
        assert sw.headers["content-type"].startswith("text/javascript")
        assert (await c.get("/static/nope.js")).status_code == 404
        assert (await c.get("/nope.png")).status_code == 404
        # The proxy reaches the API, never its internal endpoints.
        assert (await c.get("/api/healthz")).json()["status"] == "ok"
        for bad in ("/api/internal/v1/x", "/api/%69nternal/v1/x", "/api/v1/../internal/v1/x"):
            assert (await c.get(bad)).status_code == 404, bad
        assert (await c.get("/api/v1/me")).status_code == 401
        # A login through the proxy gives that client its cookies, and nobody else.
        r = await c.post(
            "/api/v1/auth/login", json={"email": web_stack.admin_email, "password": PASSWORD}
        )
        assert r.status_code == 200
        assert {"avisos_session", "avisos_csrf"} <= set(c.cookies.keys())
        assert "httponly" in r.headers.get_list("set-cookie")[0].lower()
        assert (await c.get("/api/v1/me")).json()["email"] == web_stack.admin_email
        async with httpx.AsyncClient(base_url=web_stack.url) as other:
            assert (await other.get("/api/v1/me")).status_code == 401
        assert (await c.get("/readyz")).json()["checks"] == {"static": "ok", "api": "ok"}
        status = (await c.get("/system/status")).json()  # c is logged in as the admin
        assert status["services"]["ws-gateway"]["status"] == "ok"
        assert "avisos.ingest.events" in status["queues"]
        async with httpx.AsyncClient(base_url=web_stack.url) as anonymous:
            assert (await anonymous.get("/system/status")).status_code == 403

        manifest = (await c.get("/manifest.webmanifest")).json()
        assert manifest["start_url"].startswith("/") and manifest["display"] == "standalone"
        sizes = {(i["sizes"], i.get("purpose", "any")) for i in manifest["icons"]}
        assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
        for icon in manifest["icons"]:
            png = (await c.get(icon["src"])).content
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
            assert f"{w}x{h}" == icon["sizes"]


# --- everyone ---------------------------------------------------------------------------


async def test_login_live_bell_toast_and_second_tab(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    user = await new_user(admin, "staff")
    ctx = await new_context(browser, web_stack)
    try:
        page = await ctx.new_page()
        await page.goto("/")
        await expect(page.locator("#login-email")).to_be_visible()
        await shot(page, "01-login")
        await page.locator("#login-email").fill(user["email"])
        await page.locator("#login-password").fill("wrong-password-x")
        await page.locator("#login-password").press("Enter")
        await expect(page.locator("#login-error")).to_contain_text("incorrectos")
        await login(page, user["email"])
        await expect(bell(page)).to_have_attribute("data-count", "0")

        # An inventory system publishes an event over the API: the bell and a toast react.
        await publish_stock_out(web_stack, "LECHE-1L", "Leche entera 1L")
        await expect(bell(page)).to_have_attribute("data-count", "1")
        toast = page.locator("avisos-toasts .toast").first
        await expect(toast).to_be_visible()
        await expect(toast).to_contain_text("Leche")
        await expect(page.locator("avisos-toasts [aria-live=polite]")).to_contain_text("Leche")
        await shot(page, "02-dashboard-toast")

        # A second tab of the same user, and another device (its own session).
        page2 = await ctx.new_page()
        await page2.goto("/")
        await expect(bell(page2)).to_have_attribute("data-count", "1")
        other_device = await new_context(browser, web_stack)
        phone = await other_device.new_page()
        await login(phone, user["email"])
        await expect(bell(phone)).to_have_attribute("data-count", "1")

        # Mark read in the modal of the first tab: the second tab's counter goes down.
        await bell(page).locator("button").click()
        modal = page.locator("#center-modal")
        await expect(modal).to_be_visible()
        item = modal.locator("li.note").first
        await expect(item).to_contain_text("Leche")
        await shot(page, "03-center-modal")
        await item.locator("[data-action=read]").click()
        await expect(bell(page)).to_have_attribute("data-count", "0")
        await expect(bell(page2)).to_have_attribute("data-count", "0")
        await expect(bell(phone)).to_have_attribute("data-count", "0")  # through the gateway
        await other_device.close()
        await expect(modal.locator("li.note").first).to_have_attribute("data-read", "true")
        # The stock-out alert is a team alert: claiming it shows who handles it.
        await item.locator("[data-action=acknowledge]").click()
        await expect(modal.locator("li.note").first.locator(".chip-ok")).to_contain_text(
            user["display_name"]
        )
        # Escape closes the modal and focus returns to the bell.
        await page.keyboard.press("Escape")
        await expect(modal).to_have_count(0)
        await expect(bell(page).locator("button")).to_be_focused()
    finally:
        await ctx.close()


async def test_toast_click_opens_the_item_and_mark_all_read(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    user = await new_user(admin, "manager")
    ctx = await new_context(browser, web_stack)
    try:
        page = await ctx.new_page()
        await login(page, user["email"])
        nid = await notify(admin, user["id"], "Rotura de stock: Aceite 1L", "critical")
        await notify(admin, user["id"], "Pedido PO-7 retrasado", "normal", "/reports")
        await notify(admin, user["id"], "Precio cambiado: Pan", "low")
        await expect(bell(page)).to_have_attribute("data-count", "3")
        critical = page.locator("avisos-toasts .toast-critical")
        await expect(critical).to_be_visible()
        await expect(page.locator("avisos-toasts [aria-live=assertive]")).to_contain_text("Aceite")
        await critical.locator(".toast-main").click()
        await expect(page).to_have_url(f"{web_stack.url}/notifications/{nid}")
        await expect(page.locator("#note-detail")).to_contain_text("Aceite")
        await expect(bell(page)).to_have_attribute("data-count", "2")  # opening marks it read
        await shot(page, "04-notifications-page")

        await page.locator("[data-action=mark-all]").click()
        await expect(bell(page)).to_have_attribute("data-count", "0")
        # The action link opens the page it points to, inside the app.
        order = page.locator("avisos-center li.note", has_text="PO-7")
        await order.locator("[data-action=open]").click()
        await expect(page).to_have_url(f"{web_stack.url}/reports")
        count = await admin_count(web_stack, user["email"])
        assert count == 0
    finally:
        await ctx.close()


async def admin_count(web: WebStack, email: str) -> int:
    u = await Api.login(web.api.url, email)
    try:
        return int((await u.call("GET", "/v1/notifications/unread-count"))["total"])
    finally:
        await u.close()


async def test_center_pages_with_the_cursor_and_filters(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    user = await new_user(admin, "staff")
    for i in range(30):
        await notify(admin, user["id"], f"Lote N-{i:02d} caduca", "low" if i % 2 else "normal")
    ctx = await new_context(browser, web_stack)
    try:
        page = await ctx.new_page()
        await login(page, user["email"])
        await page.goto("/notifications")
        notes = page.locator("avisos-center li.note")
        await expect(notes).to_have_count(25)  # one page
        await expect(notes.first).to_contain_text("N-29")  # newest first
        await notes.last.scroll_into_view_if_needed()
        await expect(notes).to_have_count(30)  # the next page, from next_cursor
        await expect(page.locator("avisos-center .list-status")).to_have_text("No hay más.")
        await page.locator("avisos-center input[type=search]").fill("N-07")
        await expect(notes).to_have_count(1)
        await page.locator("avisos-center input[type=search]").fill("")
        await page.locator("avisos-center select[name=priority]").select_option("low")
        await expect(notes).to_have_count(15)
        await page.locator("avisos-center select[name=priority]").select_option("")
        await page.locator("avisos-center input[name=unread]").check()
        await expect(notes.first).to_contain_text("N-29")
        await notes.first.locator("[data-action=read]").click()
        await expect(notes).to_have_count(24)  # read ones leave the unread view
        await expect(notes.filter(has_text="N-29")).to_have_count(0)
        await expect(notes.first).to_contain_text("N-28")
    finally:
        await ctx.close()


async def test_preferences_saved_and_reloaded(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    user = await new_user(admin, "manager")
    ctx = await new_context(browser, web_stack)
    try:
        page = await ctx.new_page()
        await login(page, user["email"])
        await page.locator("#prefs-btn").click()
        modal = page.locator("#prefs-modal")
        await expect(modal).to_be_visible()
        locked = modal.locator("input[data-category=expiry][data-channel=email]")
        await expect(locked).to_be_disabled()
        sms = modal.locator("input[data-category=orders][data-channel=sms]")
        was = await sms.is_checked()
        await sms.set_checked(not was)
        await modal.locator("#quiet-on").check()
        await modal.locator("input[name=quiet_start]").fill("22:30")
        await modal.locator("input[name=quiet_end]").fill("06:45")
        await modal.locator("input[name=phone]").fill("+34600111222")
        await modal.locator("select[name=timezone]").select_option("Atlantic/Canary")
        await modal.locator("select[name=locale]").select_option("en")
        await shot(page, "05-preferences")
        await modal.locator("button[type=submit]").click()
        await expect(modal).to_have_count(0)
        await expect(page.locator("#logout-btn")).to_have_text("Log out")  # now in English

        await page.reload()
        await expect(page.locator("#logout-btn")).to_have_text("Log out")
        await page.locator("#prefs-btn").click()
        modal = page.locator("#prefs-modal")
        await expect(modal.locator("input[name=quiet_start]")).to_have_value("22:30")
        await expect(modal.locator("input[name=quiet_end]")).to_have_value("06:45")
        await expect(modal.locator("input[name=phone]")).to_have_value("+34600111222")
        await expect(modal.locator("select[name=timezone]")).to_have_value("Atlantic/Canary")
        sms = modal.locator("input[data-category=orders][data-channel=sms]")
        assert await sms.is_checked() is (not was)
        # Keyboard: Tab stays inside the dialog.
        for _ in range(40):
            await page.keyboard.press("Tab")
            inside = await page.evaluate(
                "() => document.querySelector('#prefs-modal').contains(document.activeElement)"
            )
            assert inside
        await page.keyboard.press("Escape")
        await page.locator("#logout-btn").click()
        await expect(page.locator("#login-email")).to_be_visible()
        assert (await page.request.get("/api/v1/me")).status == 401
    finally:
        await ctx.close()


# --- admins -----------------------------------------------------------------------------


async def test_admin_creates_a_user_who_logs_in_then_deactivates_them(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    actx = await new_context(browser, web_stack)
    uctx = await new_context(browser, web_stack)
    try:
        page = await actx.new_page()
        await login(page, web_stack.admin_email)
        await page.locator("nav a[href='/admin/users']").click()
        await expect(page.locator("#users-list table")).to_be_visible()
        await page.locator("#new-user").click()
        form = page.locator("#user-form")
        email = f"nuevo-{uuid.uuid4().hex[:6]}@web.e2e"
        await form.locator("input[name=email]").fill(email)
        await form.locator("input[name=display_name]").fill("Nuria Nueva")
        await form.locator("input[name=password]").fill(PASSWORD)
        await form.locator(f"input[name=locations][value='{LOCATION}']").check()
        await shot(page, "06-admin-new-user")
        await form.locator("button[type=submit]").click()
        row = page.locator(f"#users-list tr[data-email='{email}']")
        await expect(row).to_be_visible()
        await shot(page, "07-admin-users")

        # The new user logs in.
        upage = await uctx.new_page()
        await login(upage, email)
        await expect(upage.locator("main h1")).to_contain_text("Nuria Nueva")

        # Deactivated by the admin: the user's open page goes back to the login at once.
        await row.locator("[data-action=toggle-active]").click()
        await page.locator(".modal .btn-danger").click()
        await expect(row.locator(".chip-off")).to_be_visible()
        await expect(upage.locator("#login-error")).to_contain_text("sesión ha terminado")
        await expect(upage.locator("#app-header")).to_be_hidden()
        r = await upage.request.get("/api/v1/me")
        assert r.status == 401
    finally:
        await actx.close()
        await uctx.close()


# --- the PWA: offline, service worker, push ---------------------------------------------


SW_STATE = """async () => {
  const reg = await navigator.serviceWorker.getRegistration();
  const state = (w) => (w ? w.state : null);
  return {controlled: navigator.serviceWorker.controller !== null,
          registered: !!reg, installing: state(reg && reg.installing),
          waiting: state(reg && reg.waiting), active: state(reg && reg.active)};
}"""


async def wait_controlled(page: Page) -> None:
    """Until the service worker controls the page, as it does on every visit after the first.

    On the first visit the worker claims the page when it activates, but a page whose
    document was still loading at that moment is not claimed (the spec skips clients that
    are not execution-ready) and is controlled from its next load: so once the worker is
    active, an uncontrolled page is reloaded, as the user's next visit would.
    (Polled from here: Playwright's wait_for_function evaluates strings with eval, which
    the page's CSP rightly forbids.)"""
    reloaded = False

    async def worker_state() -> dict[str, Any]:
        nonlocal reloaded
        state: dict[str, Any] = await page.evaluate(SW_STATE)
        if not state["controlled"] and state["active"] == "activated" and not reloaded:
            reloaded = True
            await page.reload()
            state = await page.evaluate(SW_STATE)
        return state

    # A first visit installs the worker, which fetches and caches the whole shell before
    # it activates: seconds on a loaded two-core CI machine.
    await eventually(
        worker_state,
        lambda state: state["controlled"],
        timeout_secs=POLL_TIMEOUT_SECS,
        what="the service worker in control of the page",
    )


async def test_offline_cached_notifications_and_queued_mark_read(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    user = await new_user(admin, "staff")
    first = await notify(admin, user["id"], "Caducidad: Yogur natural", "high")
    await notify(admin, user["id"], "Traspaso TR-9 enviado", "normal")
    ctx = await new_context(browser, web_stack)
    try:
        page = await ctx.new_page()
        await login(page, user["email"])
        await page.goto("/notifications")
        await expect(page.locator("avisos-center li.note")).to_have_count(2)
        await wait_controlled(page)

        await ctx.set_offline(True)
        await page.reload()
        await expect(page.locator("#offline-banner")).to_be_visible()
        center = page.locator("avisos-center")
        await expect(center).to_have_attribute("data-offline", "true")
        await expect(center.locator("li.note")).to_have_count(2)
        item = center.locator(f"li.note[data-id='{first}']")
        await item.locator("[data-action=read]").click()
        await expect(item).to_have_attribute("data-read", "true")
        await expect(bell(page)).to_have_attribute("data-count", "1")
        await shot(page, "14-offline")
        user_api = await Api.login(web_stack.api.url, user["email"])
        try:
            n = await user_api.call("GET", f"/v1/notifications/{first}")
            assert n["read_at"] is None  # still only queued

            await ctx.set_offline(False)
            await expect(page.locator("#offline-banner")).to_be_hidden()
            n = await eventually(
                lambda: user_api.call("GET", f"/v1/notifications/{first}"),
                lambda n: n["read_at"] is not None,
                timeout_secs=POLL_TIMEOUT_SECS,
                what="the queued mark-read sent",
            )
            assert n["read_at"] is not None
            count = await user_api.call("GET", "/v1/notifications/unread-count")
            assert count["total"] == 1
        finally:
            await user_api.close()
        await expect(bell(page)).to_have_attribute("data-count", "1")
    finally:
        await ctx.close()


async def test_shell_install_survives_a_dropped_request_and_a_503(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    """A store's Wi-Fi loses requests: the worker fetches a failed shell file again instead
    of failing its install, and the app then starts offline."""
    user = await new_user(admin, "staff")
    ctx = await new_context(browser, web_stack)
    faults = {"/static/js/i18n.js": ["abort"], "/static/css/app.css": ["503"]}
    served: list[str] = []

    async def flaky(route: Any) -> None:
        path = urllib.parse.urlsplit(route.request.url).path
        pending = faults.get(path)
        if pending and route.request.service_worker is not None:
            fault = pending.pop(0)
            served.append(f"{fault} {path}")
            if fault == "abort":
                await route.abort("connectionreset")
            else:
                await route.fulfill(status=503, body="busy")
            return
        await route.continue_()

    try:
        await ctx.route("**/static/**", flaky)
        page = await ctx.new_page()
        await login(page, user["email"])
        await wait_controlled(page)
        assert sorted(served) == ["503 /static/css/app.css", "abort /static/js/i18n.js"]
        await ctx.unroute("**/static/**")
        await ctx.set_offline(True)
        await page.reload()
        await expect(page.locator("#offline-banner")).to_be_visible()
    finally:
        await ctx.close()


async def test_service_worker_manifest_and_push_from_the_dispatcher(
    web_stack: WebStack, admin: Api, browser: Browser, stack: Stack, backing: Backing
) -> None:
    """An event -> the real dispatcher sends Web Push (VAPID, encrypted) to the local push
    service -> that payload is delivered to this browser's service worker, whose push
    handler shows the system notification. (Headless Chromium cannot subscribe to a push
    service of ours, so the last hop goes through the DevTools protocol, which fires the
    service worker's real ``push`` event.)"""
    user = await new_user(admin, "staff")
    private, _public = vapid_keypair()
    with PushService() as pushes:
        sub = pushes.new_subscription()
        conn = await asyncpg.connect(backing.database_url.replace("+asyncpg", ""))
        try:
            await conn.execute(
                "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
                " VALUES ($1, $2, $3, $4, $5)",
                uuid.uuid4(),
                uuid.UUID(user["id"]),
                sub["endpoint"],
                sub["keys"]["p256dh"],
                sub["keys"]["auth"],
            )
        finally:
            await conn.close()
        # No readiness endpoint to wait for: the dispatch queues are durable, so what the
        # event produces waits there until the dispatcher consumes it.
        dispatcher = stack.start(
            "dispatcher",
            name="dispatcher-web",
            wait=False,
            extra_env={
                "AVISOS_CHANNELS": '["push"]',
                "AVISOS_VAPID_PRIVATE_KEY": private,
                "AVISOS_VAPID_SUBJECT": "mailto:ops@web.e2e",
            },
        )
        try:
            await publish_stock_out(web_stack, "CAFE-250", "Café molido 250g")
            try:
                received = await pushes.await_count(1, timeout_secs=30)
            except TimeoutError:
                raise AssertionError(f"no push sent:\n{dispatcher.log()[-3000:]}") from None
            # The attempt reaches the delivery log (the admin screen test shows it).
            try:
                await eventually(
                    lambda: admin.call(
                        "GET",
                        "/v1/admin/deliveries",
                        params={"channel": "push", "user_id": user["id"]},
                    ),
                    lambda log: any(a["status"] == "sent" for a in log["items"]),
                    timeout_secs=POLL_TIMEOUT_SECS,
                )
            except TimeoutError:
                raise AssertionError(
                    f"no push attempt logged:\n{dispatcher.log()[-3000:]}"
                ) from None
        finally:
            stack.stop("dispatcher-web")
    payload = received[0].payload
    assert payload is not None and "Café" in payload["title"]

    ctx = await new_context(browser, web_stack)
    try:
        await ctx.grant_permissions(["notifications"], origin=web_stack.url)
        page = await ctx.new_page()
        await login(page, user["email"])
        await wait_controlled(page)
        manifest = await page.evaluate(
            """async () => {
              const link = document.querySelector('link[rel=manifest]');
              const m = await (await fetch(link.href)).json();
              const reg = await navigator.serviceWorker.ready;
              return {name: m.name, scope: reg.scope, active: !!reg.active};
            }"""
        )
        assert manifest == {"name": manifest["name"], "scope": f"{web_stack.url}/", "active": True}

        cdp = await ctx.new_cdp_session(page)
        regs: list[dict[str, Any]] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: regs.extend(e["registrations"]))
        await cdp.send("ServiceWorker.enable")
        await eventually(lambda: regs, timeout_secs=POLL_TIMEOUT_SECS, what="the registration")
        reg_id = next(r["registrationId"] for r in regs if not r.get("isDeleted"))
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": web_stack.url, "registrationId": reg_id, "data": json.dumps(payload)},
        )
        shown = await eventually(
            lambda: page.evaluate(
                """async (tag) => {
                  const reg = await navigator.serviceWorker.ready;
                  const list = await reg.getNotifications({tag});
                  return list.length ? {title: list[0].title, body: list[0].body,
                                        url: list[0].data.url} : null;
                }""",
                payload["tag"],
            ),
            lambda shown: shown is not None,
            timeout_secs=POLL_TIMEOUT_SECS,
            what="the system notification",
        )
        assert shown is not None, "the service worker showed no notification"
        assert shown["title"] == payload["title"] and shown["body"] == payload["body"]
        nid = payload["notification_id"]
        assert shown["url"] in (payload["url"], f"/notifications/{nid}")

        # A click on that system notification opens the app at the notification. There is
        # no DevTools call to click a system notification, so the service worker's own
        # ``notificationclick`` handler gets the event a click would produce.
        await page.goto("/")
        await wait_controlled(page)
        worker = next(w for w in ctx.service_workers if w.url.endswith("/sw.js"))
        await worker.evaluate(
            """async (tag) => {
              const [n] = await self.registration.getNotifications({tag});
              self.dispatchEvent(new NotificationEvent("notificationclick", {notification: n}));
            }""",
            payload["tag"],
        )
        await expect(page).to_have_url(re.compile(re.escape(shown["url"]) + "$"))
    finally:
        await ctx.close()


async def test_phone_layout(web_stack: WebStack, admin: Api, browser: Browser) -> None:
    user = await new_user(admin, "manager")
    await notify(admin, user["id"], "Stock bajo: Tomate frito", "high")
    ctx = await new_context(
        browser, web_stack, viewport={"width": 360, "height": 740}, is_mobile=True, locale="en-GB"
    )
    try:
        page = await ctx.new_page()
        await page.goto("/")
        await expect(page.locator("h1")).to_have_text("Log in")
        await shot(page, "15-phone-login")
        await login(page, user["email"])
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
        assert not overflow, "the page scrolls sideways at 360 px"
        await shot(page, "16-phone-dashboard")
        await assert_contrast(page)
        # The check itself catches low contrast (grey #aaa on white: 2.3:1).
        await page.evaluate(
            """() => { const p = document.createElement('p'); p.id = 'pale';
                       p.textContent = 'pale'; p.style.color = '#aaa';
                       document.querySelector('main').append(p); }"""
        )
        assert len(await page.evaluate(CONTRAST_JS)) == 1
        await page.evaluate("() => document.getElementById('pale').remove()")
        await bell(page).locator("button").click()
        await expect(page.locator("#center-modal li.note")).to_have_count(1)
        await shot(page, "17-phone-center")
        await page.keyboard.press("Escape")
        await page.locator("#nav-toggle").click()
        await expect(page.locator("#app-nav a[href='/reports']")).to_be_visible()
        await shot(page, "18-phone-menu")
        await page.locator("#app-nav a[href='/notifications']").click()
        await expect(page.locator("avisos-center li.note")).to_have_count(1)
        await page.goto("/notifications?priority=low")
        await expect(page.locator("avisos-center .list-status")).to_have_text(
            re.compile("No hay notificaciones")
        )
    finally:
        await ctx.close()


async def test_reports_request_progress_download_and_schedule(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    user = await new_user(admin, "manager")
    await notify(admin, user["id"], "Stock bajo: Arroz 1kg", "normal")
    ctx = await new_context(browser, web_stack, accept_downloads=True)
    try:
        page = await ctx.new_page()
        await login(page, user["email"])
        await page.locator("nav a[href='/reports']").click()
        await page.locator("main select[name=kind]").select_option("notification_activity")
        await page.locator("main form button[type=submit]").first.click()
        row = page.locator("main tbody tr").first
        await expect(row).to_contain_text("Actividad de notificaciones")
        download_link = row.locator("a", has_text="Descargar")
        await expect(download_link).to_be_visible(timeout=30_000)
        async with page.expect_download() as info:
            await download_link.click()
        download = await info.value
        path = await download.path()
        head = await asyncio.to_thread(lambda: Path(path).read_bytes()[:2])
        assert head == b"PK"  # an .xlsx is a zip
        assert download.suggested_filename.endswith(".xlsx")

        schedules = page.locator("main .inline-form")
        await schedules.locator("select").nth(1).select_option("weekly")
        await schedules.locator("input[type=time]").fill("06:30")
        await schedules.locator("button[type=submit]").click()
        await expect(page.locator("main tbody tr", has_text="Semanal")).to_be_visible()
        await shot(page, "13-reports")
    finally:
        await ctx.close()


# Last: the delivery log then holds the push attempts of the test above.
async def test_admin_screens(web_stack: WebStack, admin: Api, browser: Browser) -> None:
    ctx = await new_context(browser, web_stack)
    try:
        page = await ctx.new_page()
        await login(page, web_stack.admin_email)
        await shot(page, "08-admin-dashboard")
        await assert_contrast(page)
        await page.goto("/admin/keys")
        await page.locator("#new-key").click()
        await page.locator(".modal input[name=name]").fill("tpv-tiendas")
        await page.locator(".modal button[type=submit]").click()
        key = page.locator("#new-key-value")
        await expect(key).to_have_value(re.compile(r"^avk_[0-9a-f]{8}_"))
        await shot(page, "09-admin-key-created")
        await page.keyboard.press("Escape")
        await expect(page.locator("td", has_text="tpv-tiendas")).to_be_visible()
        for path, name in (
            ("/admin/rules", "10-admin-rules"),
            ("/admin/deliveries", "11-admin-deliveries"),
            ("/admin/health", "12-admin-health"),
        ):
            await page.goto(path)
            await expect(page.locator("main h1")).to_be_visible()
            await page.wait_for_load_state("networkidle")
            await shot(page, name)
            await assert_contrast(page)
        await page.goto("/admin/health")
        await expect(page.locator("main .chip-ok").first).to_have_text("Listo")
        await expect(page.locator("main tr", has_text="ws-gateway")).to_contain_text("Listo")
        # The screen shows a snapshot of the gateways' presence (refreshed every 2 s);
        # this page's own socket reconnected on every navigation above, so look again
        # (as a person would reload) until the snapshot has it.
        connected = page.locator("#connected-users")
        for _ in range(15):
            await expect(connected).to_have_text(re.compile(r"Usuarios conectados: \d+"))
            if re.search(r": [1-9]", await connected.inner_text()):
                break
            await page.wait_for_timeout(1000)
            await page.reload()
        await expect(connected).to_have_text(re.compile(r"Usuarios conectados: [1-9]"))
        queue = page.locator("main td", has_text="avisos.dispatch.push.urgent")
        await expect(queue).to_be_visible()
        # A template previewed with sample data in both languages.
        await page.goto("/admin/rules")
        await page.locator("main table").nth(1).locator("tbody tr button").first.click()
        previews = page.locator(".modal .preview-grid .card")
        await expect(previews).to_have_count(2)
        await expect(previews.nth(0).locator("h3")).to_have_text("ES")
        await expect(previews.nth(1).locator("h3")).to_have_text("EN")
        await expect(previews.nth(0).locator(".form-error")).to_have_count(0)
        await shot(page, "10b-template-preview")
        await page.keyboard.press("Escape")
        # A report asked for shows up in the list with its state.
        await page.goto("/reports")
        await page.locator("main form button[type=submit]").first.click()
        await expect(page.locator("main tbody tr").first).to_contain_text(
            "Actividad de notificaciones"
        )
        await page.goto("/admin/deliveries")
        await expect(page.locator("main tbody tr", has_text="Push").first).to_be_visible()
    finally:
        await ctx.close()


# Headless Chromium has no push service to subscribe to, so the browser's PushManager is
# replaced by one that hands out a subscription the way a browser would (an https
# endpoint and real P-256 / auth keys). What is tested is the app's part: permission,
# the VAPID key it subscribes with, registering and removing the subscription on the API.
FAKE_PUSH_MANAGER = """
(() => {
  const state = { sub: null, key: null };
  const make = (spec) => ({
    endpoint: spec.endpoint,
    toJSON: () => ({ endpoint: spec.endpoint, expirationTime: null, keys: spec.keys }),
    unsubscribe: async () => { state.sub = null; return true; },
  });
  PushManager.prototype.getSubscription = async function () { return state.sub; };
  PushManager.prototype.subscribe = async function (options) {
    state.key = Array.from(new Uint8Array(options.applicationServerKey));
    window.__pushKey = state.key;
    state.sub = make(SPEC);
    return state.sub;
  };
})();
"""


async def test_notify_me_on_this_device_subscribes_and_unsubscribes(
    web_stack: WebStack, admin: Api, browser: Browser
) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    device_key = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    endpoint = f"https://push.e2e.test/send/{uuid.uuid4().hex}"
    spec = {"endpoint": endpoint, "keys": {"p256dh": b64(device_key), "auth": b64(b"a" * 16)}}
    user = await new_user(admin, "staff")
    ctx = await new_context(browser, web_stack, permissions=["notifications"])
    await ctx.add_init_script(FAKE_PUSH_MANAGER.replace("SPEC", json.dumps(spec)))
    try:
        page = await ctx.new_page()
        await login(page, user["email"])
        await page.locator("#prefs-btn").click()
        device = page.locator("#prefs-modal #push-device")
        await expect(device).to_be_enabled()
        await expect(device).not_to_be_checked()
        await device.check()

        async def endpoints() -> list[str]:
            r = await page.request.get("/api/v1/me/push-subscriptions")
            assert r.status == 200, await r.text()
            return [s["endpoint"] for s in await r.json()]

        found = await eventually(
            endpoints, lambda now: now == [endpoint], timeout_secs=POLL_TIMEOUT_SECS
        )
        assert found == [endpoint]
        # The browser was subscribed with the API's VAPID public key.
        key = bytes(await page.evaluate("() => window.__pushKey"))
        assert b64(key) == VAPID_PUBLIC
        await expect(device).to_be_enabled()
        await device.uncheck()
        found = await eventually(endpoints, lambda now: now == [], timeout_secs=POLL_TIMEOUT_SECS)
        assert found == []
    finally:
        await ctx.close()
