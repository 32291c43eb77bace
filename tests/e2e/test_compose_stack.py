"""The end-to-end flows against `docker compose up` (opt-in: AVISOS_E2E_COMPOSE=1, see
compose_support.py): the one origin's routing, a notification from the API to a socket
through nginx, and scale-out of the gateways. The flows use the same Operator/Browser as
the process-based tests (opskit.py)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from compose_support import ENABLED, SKIP_REASON, ComposeTarget
from opskit import PASSWORD, Browser, Operator, duplicates

pytestmark = [pytest.mark.skipif(not ENABLED, reason=SKIP_REASON), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def admin_email(compose_target: ComposeTarget) -> str:
    email = f"ops-admin-{uuid.uuid4().hex[:6]}@ops.e2e.avisos"
    compose_target.create_admin(email, PASSWORD)
    return email


async def test_one_origin_routing(compose_target: ComposeTarget) -> None:
    async with httpx.AsyncClient(base_url=compose_target.origin, timeout=10) as c:
        index = await c.get("/")
        assert index.status_code == 200 and "<html" in index.text.lower()
        assert index.headers.get("x-request-id")
        assert (await c.get("/api/openapi.json")).status_code == 200
        for hidden in (
            "/api/internal/v1/users/x/notifications/read",
            "/api//internal/v1/x",
            "/api/%69nternal/v1/x",
            "/api/metrics",
            "/api/readyz",
        ):
            assert (await c.get(hidden)).status_code == 404, hidden
        r = await c.get("/api/v1/me", headers={"X-Request-ID": "compose-e2e-1"})
        assert r.status_code == 401 and r.headers["x-request-id"] == "compose-e2e-1"


async def test_notification_reaches_sockets_on_scaled_gateways(
    compose_target: ComposeTarget, admin_email: str
) -> None:
    await asyncio.to_thread(compose_target.scale, "ws-gateway", 3)
    assert compose_target.replicas("ws-gateway") == 3
    admin = await Operator.login(compose_target.api_url, admin_email)
    store = await admin.location()
    emails = [await admin.manager(store) for _ in range(6)]
    browsers = [await Browser.login(compose_target.api_url, e) for e in emails]
    try:
        for b in browsers:
            await b.open(compose_target.ws_url, origin=compose_target.origin)
        me = [(await b.http.get("/v1/me")).json()["id"] for b in browsers]
        r = await admin.http.post(
            "/v1/notifications",
            json={
                "user_ids": me,
                "type": "stock.low",
                "category": "inventory",
                "subject": "Compose",
                "message": "through nginx",
            },
        )
        assert r.status_code == 201, r.text
        for b in browsers:
            await b.wait_for_notifications(1)
            assert not duplicates(b.notification_ids())
            assert b.notification_ids() == await b.listed_ids()
    finally:
        for b in browsers:
            await b.close()
        await admin.close()
