"""Fixtures for the reports tests: settings on the run's database and vhost, seeded users,
locations and notifications, a stand-in for the API's internal endpoint, and helpers to
watch the broker."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from avisos_reports.settings import ReportsSettings
from avisos_testkit.infra import Backing

sys.path.insert(0, str(Path(__file__).parent))

from reports_kit import Seed, seed_database

INTERNAL_TOKEN = "internal-token-for-tests-0123456789abcdef"


class InternalApiStub:
    """A tiny HTTP server standing in for ``POST /internal/v1/notifications``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 201
        self.event = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "json": body}
                )
                stub.event.set()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"created": 1}')

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def api_stub() -> Iterator[InternalApiStub]:
    stub = InternalApiStub()
    yield stub
    stub.close()


@pytest.fixture(scope="session")
def reports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="session")
def rsettings(backing: Backing, reports_dir: Path, api_stub: InternalApiStub) -> ReportsSettings:
    return ReportsSettings(
        env="test",
        database_url=backing.database_url,
        amqp_url=backing.amqp_url,
        reports_dir=reports_dir,
        api_internal_url=api_stub.url,
        internal_token=SecretStr(INTERNAL_TOKEN),
        reports_heartbeat_secs=0.2,
        reports_lease_stale_secs=1.0,
        reports_requeue_after_secs=3600.0,
        reports_max_attempts=2,
        reports_fetch_rows=500,
    )


@pytest.fixture(scope="session")
def seed(backing: Backing) -> Seed:
    with psycopg.connect(backing.database_url, autocommit=True) as conn:
        return seed_database(conn, dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
def db(backing: Backing) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(backing.database_url, autocommit=True) as conn:
        yield conn


def new_job(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    kind: str,
    params: dict[str, Any],
    *,
    email_copy: bool = False,
    status: str = "queued",
) -> uuid.UUID:
    job_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO report_jobs (id, requested_by, kind, params, email_copy, status)
           VALUES (%s, %s, %s, %s::jsonb, %s, %s)""",
        (job_id, user_id, kind, json.dumps(params), email_copy, status),
    )
    return job_id


@pytest.fixture
async def amqp(backing: Backing) -> AsyncIterator[Any]:
    from avisos_common.amqp import connect
    from avisos_common.topology import declare_on

    await declare_on(backing.amqp_url)
    connection = await connect(backing.amqp_url)
    yield connection
    await connection.close()
