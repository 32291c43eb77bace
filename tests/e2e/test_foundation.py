"""The first end-to-end path: log in, create a notification through the API, see it
listed, see it published on the broker. The API runs as its own process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import httpx
import pytest

from avisos_common.topology import EXCHANGE_REALTIME
from avisos_testkit.bus import BusTap
from avisos_testkit.infra import Backing
from avisos_testkit.stack import Running, Stack

ADMIN_PASSWORD = "e2e-admin-password-1"


@pytest.fixture(scope="module")
def api(stack: Stack, stack_env: dict[str, str]) -> Running:
    return stack.start("api", name="api-foundation")


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


async def test_login_create_list_and_published(api: Running, backing: Backing) -> None:
    email = f"admin-{uuid.uuid4().hex[:6]}@e2e.avisos"
    env = {**api.env, "AVISOS_ADMIN_PASSWORD": ADMIN_PASSWORD}
    assert "admin created" in _admin_cli(env, "create-admin", email, "--name", "E2E Admin")
    key_out = _admin_cli(env, "create-api-key", "erp", "--scope", "notifications:write")
    key = key_out.strip().splitlines()[-1]
    assert key.startswith("avk_")

    async with httpx.AsyncClient(base_url=api.url, timeout=10) as browser:
        r = await browser.post("/v1/auth/login", json={"email": email, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        browser.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        me = (await browser.get("/v1/me")).json()

        async with BusTap(backing.amqp_url, EXCHANGE_REALTIME, "") as tap:
            r = await browser.post(
                "/v1/notifications",
                json={
                    "user_ids": [me["id"]],
                    "type": "stock.out",
                    "category": "inventory",
                    "subject": "Agotado: Leche 1L",
                    "message": "Sin existencias en MAD-01",
                    "priority": "high",
                },
                headers={"X-Request-ID": "e2e-req-1"},
            )
            assert r.status_code == 201, r.text
            nid = r.json()["notification_ids"][0]
            # A publisher system creates one too, with its API key.
            async with httpx.AsyncClient(base_url=api.url) as erp:
                r2 = await erp.post(
                    "/v1/notifications",
                    headers={"Authorization": f"Bearer {key}"},
                    json={
                        "user_ids": [me["id"]],
                        "type": "order.delayed",
                        "category": "orders",
                        "subject": "PO-1 retrasado",
                        "message": "2 días",
                    },
                )
                assert r2.status_code == 201
            bodies = await tap.wait_for(2, timeout_secs=15)

        listed = (await browser.get("/v1/notifications")).json()["items"]
        assert [n["subject"] for n in listed] == ["PO-1 retrasado", "Agotado: Leche 1L"]
        count = (await browser.get("/v1/notifications/unread-count")).json()
        assert count["total"] == 2 and count["by_priority"]["high"] == 1

        # The operator revokes the key: the publisher is locked out at once.
        prefix = key.split("_")[1]
        assert "revoked" in _admin_cli(env, "revoke-api-key", prefix)
        async with httpx.AsyncClient(base_url=api.url) as erp:
            r3 = await erp.post(
                "/v1/notifications",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "user_ids": [me["id"]],
                    "type": "t",
                    "category": "c",
                    "subject": "s",
                    "message": "m",
                },
            )
            assert r3.status_code == 401

    created = [b for b in bodies if b["kind"] == "notification.created"]
    assert {b["notification"]["id"] for b in created} >= {nid}
    first = next(m for m in tap.messages if json.loads(m.body)["notification"]["id"] == nid)
    assert first.headers.get("x-request-id") == "e2e-req-1"  # the request id travels


async def test_health_openapi_and_problem_json(api: Running) -> None:
    async with httpx.AsyncClient(base_url=api.url) as c:
        assert (await c.get("/healthz")).json()["status"] == "ok"
        ready = (await c.get("/readyz")).json()
        assert ready == {
            "status": "ok",
            "checks": {"postgresql": "ok", "redis": "ok", "rabbitmq": "ok"},
        }
        spec = (await c.get("/openapi.json")).json()
        assert "/v1/notifications" in spec["paths"] and "/v1/auth/login" in spec["paths"]
        assert not any(p.startswith("/internal") for p in spec["paths"])
        r = await c.get("/v1/nope")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        metrics = (await c.get("/metrics")).text
        assert "avisos_api_request_seconds" in metrics


async def test_readyz_names_the_missing_backing_service(stack: Stack) -> None:
    broken = stack.start(
        "api",
        name="api-no-redis",
        wait=False,
        extra_env={"AVISOS_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    try:
        status, body = 0, {}
        async with httpx.AsyncClient(base_url=broken.url) as c:
            deadline = asyncio.get_running_loop().time() + 40
            while status != 503 and asyncio.get_running_loop().time() < deadline:
                try:
                    r = await c.get("/readyz")
                    status, body = r.status_code, r.json()
                except httpx.TransportError:
                    pass
                if status != 503:
                    await asyncio.sleep(0.2)
        assert status == 503, body
        assert body["checks"]["postgresql"] == "ok"
        assert body["checks"]["redis"].startswith("unavailable")
    finally:
        stack.stop(broken.name)


async def test_sigterm_shuts_down_cleanly(stack: Stack) -> None:
    run = stack.start("api", name="api-sigterm")
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM to exit by it.
    assert stack.stop(run.name) in (0, -15)
    log = run.log()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
