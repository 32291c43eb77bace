"""Fixtures of the gateway tests: one shared gateway process and world per module."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gwkit import GatewayProcess, World

from avisos_testkit.infra import Backing, free_port


@pytest.fixture(scope="session")
async def world(backing: Backing) -> AsyncIterator[World]:
    w = await World.open(backing)
    try:
        yield w
    finally:
        await w.close()


@pytest.fixture(scope="session")
def api_stub_port() -> int:
    """Where the stand-in of the API's internal endpoints listens (see test_read_state)."""
    return free_port()


@pytest.fixture(scope="session")
async def gateway(backing: Backing, api_stub_port: int) -> AsyncIterator[GatewayProcess]:
    """A gateway shared by the tests that do not need their own."""
    gw = await GatewayProcess(
        backing,
        AVISOS_PING_INTERVAL_SECS="0.5",
        AVISOS_RATE_LIMIT_PER_SEC="5",
        AVISOS_RATE_LIMIT_BURST="10",
        AVISOS_API_INTERNAL_URL=f"http://127.0.0.1:{api_stub_port}",
    ).start()
    try:
        yield gw
    finally:
        await gw.stop()
