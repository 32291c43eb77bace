"""Per-run isolation on the real backing services.

Each test run gets its own PostgreSQL database (migrated with Alembic), its own RabbitMQ
vhost, and its own Redis key prefix, all named after a random run id, so that runs never
see each other's leftovers and can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import asyncpg

PG_ADMIN_URL = os.environ.get(
    "AVISOS_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_BASE = os.environ.get("AVISOS_TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")
REDIS_URL = os.environ.get("AVISOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def run_id() -> str:
    return secrets.token_hex(4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


async def create_database(name: str) -> str:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg_url(name)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def migrate(database_url: str) -> None:
    from avisos_api.migrations.runner import upgrade

    upgrade(database_url)


def _rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([exe, *args], check=True, capture_output=True, timeout=60)


def create_vhost(name: str) -> str:
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"{AMQP_BASE}/{name}"


def delete_vhost(name: str) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):
        _rabbitmqctl("delete_vhost", name)


@dataclass
class Backing:
    """The isolated backing services of one test run."""

    run: str
    database: str
    database_url: str
    vhost: str
    amqp_url: str
    redis_url: str
    redis_prefix: str

    def env(self) -> dict[str, str]:
        """Environment variables that point an Avisos service at these."""
        return {
            "AVISOS_ENV": "test",
            "AVISOS_DATABASE_URL": self.database_url,
            "AVISOS_AMQP_URL": self.amqp_url,
            "AVISOS_REDIS_URL": self.redis_url,
            "AVISOS_REDIS_PREFIX": self.redis_prefix,
        }


async def make_backing(label: str = "t") -> Backing:
    rid = run_id()
    db = f"avisos_{label}_{rid}"
    url = await create_database(db)
    await asyncio.to_thread(migrate, url)
    vhost = f"avisos-{label}-{rid}"
    amqp_url = create_vhost(vhost)
    return Backing(rid, db, url, vhost, amqp_url, REDIS_URL, f"avisos-{label}-{rid}:")


async def drop_backing(b: Backing) -> None:
    await drop_database(b.database)
    delete_vhost(b.vhost)
    import redis.asyncio as redis

    client = redis.from_url(b.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{b.redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def wait_http(url: str, timeout_secs: float = 30.0, expect: int = 200) -> None:
    """Poll ``url`` until it answers ``expect``; raise TimeoutError with the last error."""
    deadline = time.monotonic() + timeout_secs
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == expect:
                    return
                last = resp.status
        except urllib.error.HTTPError as exc:
            last = exc.code
            if exc.code == expect:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_secs}s: {last}")
