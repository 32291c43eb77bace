"""Fixtures shared by every test suite in the repository.

``backing`` gives a test session its own database (migrated to head), RabbitMQ vhost and
Redis key prefix on the real local services; they are dropped at the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from avisos_testkit.infra import Backing, drop_backing, make_backing


@pytest.fixture(scope="session")
async def backing() -> AsyncIterator[Backing]:
    b = await make_backing("t")
    try:
        yield b
    finally:
        await drop_backing(b)
