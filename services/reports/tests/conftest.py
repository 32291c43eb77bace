"""Fixtures for the reports tests: settings on the run's database and vhost, seeded users,
locations and notifications, a stand-in for the API's internal endpoint, and helpers to
watch the broker."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from avisos_reports.settings import ReportsSettings
from avisos_testkit.infra import Backing

sys.path.insert(0, str(Path(__file__).parent))

from reports_kit import INTERNAL_TOKEN, InternalApiStub, Seed, seed_database


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


@pytest.fixture
async def amqp(backing: Backing) -> AsyncIterator[Any]:
    from avisos_common.amqp import connect
    from avisos_common.topology import declare_on

    await declare_on(backing.amqp_url)
    connection = await connect(backing.amqp_url)
    yield connection
    await connection.close()
