"""The backup commands of docs/operations.md#backups, run for real on this run's backing
services: a custom-format pg_dump restores into an empty database with the same data, and
`rabbitmqctl export_definitions` holds the Avisos topology of the vhost."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from avisos_common import topology
from avisos_common.amqp import connect
from avisos_testkit.infra import Backing, create_database, drop_database, pg_url

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
RABBITMQCTL = "/usr/sbin/rabbitmqctl"
RABBITMQCTL_FOUND = shutil.which("rabbitmqctl") is not None or Path(RABBITMQCTL).exists()
TABLES = ("rules", "alembic_version", "users", "notifications", "outbox")


def test_runbook_names_these_commands() -> None:
    text = OPERATIONS.read_text()
    for command in ("pg_dump", "-Fc", "pg_restore", "rabbitmqctl export_definitions"):
        assert command in text


async def test_pg_dump_restores(backing: Backing, tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("PostgreSQL client tools not installed")
    dump = tmp_path / "avisos.dump"
    subprocess.run(
        ["pg_dump", "-Fc", "-f", str(dump), backing.database_url], check=True, timeout=120
    )
    target = f"{backing.database}_restore"
    await create_database(target)
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", "-d", pg_url(target), str(dump)],
            check=True,
            timeout=120,
        )
        counts = {}
        for url in (backing.database_url, pg_url(target)):
            conn = await asyncpg.connect(url)
            try:
                counts[url] = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
            finally:
                await conn.close()
        original, restored = counts.values()
        assert restored == original
        assert original["rules"] > 0 and original["alembic_version"] == 1
    finally:
        await drop_database(target)


async def test_rabbitmq_definitions_export(backing: Backing) -> None:
    exe = shutil.which("rabbitmqctl") or RABBITMQCTL
    if not RABBITMQCTL_FOUND:
        pytest.skip("rabbitmqctl not installed")
    # Declare the topology in this run's vhost, as every service does at start-up.
    connection = await connect(backing.amqp_url)
    channel = await connection.channel()
    await topology.declare_topology(channel)
    await connection.close()
    # "-": to stdout (the broker, not this user, would write a file path).
    out = subprocess.run(
        [exe, "-q", "export_definitions", "-"], check=True, capture_output=True, timeout=60
    )
    definitions = json.loads(out.stdout)
    ours = {q["name"]: q for q in definitions["queues"] if q["vhost"] == backing.vhost}
    assert topology.QUEUE_DEAD_LETTERS in ours
    for channel_name in topology.DISPATCH_CHANNELS:
        for lane in topology.LANES:
            queue = ours[topology.dispatch_queue(channel_name, lane)]
            assert queue["arguments"]["x-queue-type"] == "quorum"
    exchanges = {e["name"] for e in definitions["exchanges"] if e["vhost"] == backing.vhost}
    assert {topology.EXCHANGE_DISPATCH, topology.EXCHANGE_REALTIME, topology.EXCHANGE_DEAD} <= (
        exchanges
    )
