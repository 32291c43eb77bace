"""compose.yaml without Docker: every Avisos service started as a process with exactly
the environment compose gives it (AVISOS_ENV=prod, secrets from `make env`), only the
network addresses swapped for this machine's (backing services of this run, free ports,
a local SMTP sink). Proves the services accept the compose configuration in production
mode and become ready; then, where nginx is installed, runs the committed front-proxy
config in front of them and drives the one origin the way a browser and an ERP do."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))

from deploykit import ENV_EXAMPLE, load_compose, localize_nginx, parse_env_file, service_env
from gen_env import generate
from opskit import (
    EMAIL_QUEUES,
    Browser,
    Operator,
    duplicates,
    finish_create_admin,
    order_delayed,
    own_backing,
    publish,
    start_create_admin,
    wait_consumers,
)

from avisos_testkit.infra import Backing, free_port
from avisos_testkit.smtp import SmtpSink
from avisos_testkit.stack import Running, Stack

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
#: compose service -> (Stack kind, the variable holding its port)
KINDS = {
    "notification-api": ("api", "AVISOS_API_PORT"),
    "ws-gateway": ("gateway", "AVISOS_GATEWAY_PORT"),
    "dispatcher": ("dispatcher", "AVISOS_METRICS_PORT"),
    "reports": ("reports", "AVISOS_REPORTS_PORT"),
    "web": ("web", "AVISOS_WEB_PORT"),
}


@dataclass
class Local:
    backing: Backing
    env_file: dict[str, str]
    runs: dict[str, Running]
    sink: SmtpSink
    origin: str
    admin_email: str
    log_dir: Path


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[Local]:
    services = load_compose()["services"]
    async with own_backing("cenv") as backing:
        log_dir = ROOT / "test-output" / "e2e" / f"compose-env-{backing.run}"
        env_file = parse_env_file(generate(ENV_EXAMPLE.read_text(), {}, set(), _vapid_keypair))
        ports = {name: free_port() for name in KINDS}
        origin = f"http://127.0.0.1:{free_port()}"
        env_file["AVISOS_PUBLIC_URL"] = origin
        sink = SmtpSink().start()
        api_url = f"http://127.0.0.1:{ports['notification-api']}"
        local_addresses = {
            "AVISOS_DATABASE_URL": backing.database_url,
            "AVISOS_REDIS_URL": backing.redis_url,
            "AVISOS_AMQP_URL": backing.amqp_url,
            "AVISOS_REDIS_PREFIX": backing.redis_prefix,
            "AVISOS_API_INTERNAL_URL": api_url,
            "AVISOS_REPORTS_DIR": str(log_dir / "reports"),
            "AVISOS_SMTP_HOST": "127.0.0.1",
            "AVISOS_SMTP_PORT": str(sink.port),
            "AVISOS_SMTP_TLS": "none",
        }
        stack = Stack({}, log_dir)
        runs: dict[str, Running] = {}
        try:
            for name, (kind, port_var) in KINDS.items():
                env = service_env(services[name], env_file)
                assert env["AVISOS_ENV"] == "prod", name
                env.update({k: v for k, v in local_addresses.items() if k in env})
                env.update(
                    {k: "127.0.0.1" for k in env if k.endswith("_HOST") and k != "AVISOS_SMTP_HOST"}
                )
                env[port_var] = str(ports[name])
                runs[name] = stack.start(
                    kind, name=name, port=ports[name], wait=False, extra_env=env
                )
            admin = f"ops-admin-{uuid.uuid4().hex[:6]}@ops.e2e.avisos"
            create_admin = start_create_admin(runs["notification-api"].env, admin)
            yield Local(backing, env_file, runs, sink, origin, admin, log_dir)
            finish_create_admin(create_admin)
        finally:
            stack.stop_all()
            sink.stop()


def _vapid_keypair() -> tuple[str, str]:
    from avisos_api.cli import vapid_keypair

    return vapid_keypair()


async def test_every_service_accepts_the_compose_environment_in_prod(local: Local) -> None:
    for name, run in local.runs.items():
        if name == "dispatcher":
            continue  # no HTTP endpoint yet: ready when it consumes (below)
        await asyncio.to_thread(_wait_ready, run)
    await wait_consumers(local.backing.amqp_url, EMAIL_QUEUES, 1)
    for name, run in local.runs.items():
        assert run.process.poll() is None, f"{name} exited:\n{run.log()[-3000:]}"
        assert '"level": "error"' not in run.log(), f"{name} logged errors:\n{run.log()[-3000:]}"


def _wait_ready(run: Running) -> None:
    deadline = time.monotonic() + 60
    while True:
        if run.process.poll() is not None:
            raise AssertionError(
                f"{run.name} exited {run.process.returncode}:\n{run.log()[-3000:]}"
            )
        try:
            if httpx.get(run.url + run.spec.ready_path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{run.name} not ready:\n{run.log()[-3000:]}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
async def front(local: Local) -> AsyncIterator[str]:
    """The committed nginx.conf with the compose service names pointed at the processes."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    port = int(local.origin.rsplit(":", 1)[1])
    upstreams = {name: local.runs[name].url for name in ("notification-api", "ws-gateway", "web")}
    conf = localize_nginx(upstreams, port, local.log_dir / "proxy.log")
    prefix = local.log_dir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.DEVNULL,
    )
    try:
        yield local.origin
    finally:
        proc.terminate()
        proc.wait(10)


async def test_one_origin_in_front_of_the_prod_services(local: Local, front: str) -> None:
    for name in ("notification-api", "ws-gateway", "web", "reports"):
        await asyncio.to_thread(_wait_ready, local.runs[name])
    await wait_consumers(local.backing.amqp_url, EMAIL_QUEUES, 1)
    async with httpx.AsyncClient(base_url=front, timeout=10) as c:
        assert "<html" in (await c.get("/")).text.lower()
        me = await c.get("/api/v1/me", headers={"X-Request-ID": "cenv-me-1"})
        assert me.status_code == 401
        assert me.headers.get_list("x-request-id") == ["cenv-me-1"]  # the API's, once
        assert (await c.get("/api/internal/v1/users/x/notifications/read")).status_code == 404
    # create-admin ran in the background since the fixture started
    for _ in range(600):
        try:
            admin = await Operator.login(f"{front}/api", local.admin_email)
            break
        except AssertionError:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("admin never appeared")
    store = await admin.location()
    managers = [await admin.manager(store) for _ in range(2)]
    key = await admin.events_key()
    await admin.close()
    browsers = [await Browser.login(f"{front}/api", m) for m in managers]
    ws_url = front.replace("http://", "ws://") + "/ws"
    try:
        for b in browsers:
            await b.open(ws_url, origin=front)
        events = [order_delayed(store, f"PO-C{i}") for i in range(3)]
        for event in events:
            await publish(f"{front}/api", key, event)
        for b in browsers:
            await b.wait_for_notifications(len(events))
            assert not duplicates(b.notification_ids())
            assert set(b.source_event_ids()) == {e["id"] for e in events}
        mails = await local.sink.await_count(len(events) * len(managers), timeout_secs=30)
        assert sorted(r for m in mails for r in m.rcpt_tos) == sorted(managers * len(events))
    finally:
        for b in browsers:
            await b.close()
    # The proxy logged each event's request id (the one the ERP sent).
    logged = [json.loads(line) for line in (local.log_dir / "proxy.log").read_text().splitlines()]
    assert {f"ops-{e['id']}" for e in events} <= {line["request_id"] for line in logged}


async def test_migrate_job_runs_again_harmlessly(local: Local) -> None:
    """compose runs `migrate` at every `up` (and the k8s Job at every upgrade): with its
    exact environment, against an already migrated database, it exits 0 and changes
    nothing."""
    migrate = load_compose()["services"]["migrate"]
    env = service_env(migrate, local.env_file)
    assert env["AVISOS_ENV"] == "prod"
    env["AVISOS_DATABASE_URL"] = local.backing.database_url
    command = [sys.executable, "-m", "avisos_api.cli", *migrate["command"][1:]]
    conn = await asyncpg.connect(local.backing.database_url)
    try:
        before = await conn.fetchval("SELECT version_num FROM alembic_version")
        out = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == before
    finally:
        await conn.close()
