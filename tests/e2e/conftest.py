"""End-to-end fixtures: the Avisos services as real processes on free ports, against the
run's isolated backing services. Each test module asks for the services it needs.

Logs of every process are kept under ``test-output/e2e/<run>/`` for a person to read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from avisos_testkit.infra import Backing
from avisos_testkit.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
TICKET_SECRET = "e2e-ticket-secret-0123456789abcdef0123456789"
INTERNAL_TOKEN = "e2e-internal-token-0123456789abcdef012345678"


@pytest.fixture(scope="session")
def stack_env(backing: Backing) -> dict[str, str]:
    return {
        **backing.env(),
        "AVISOS_TICKET_SECRET": TICKET_SECRET,
        "AVISOS_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "AVISOS_LOG_LEVEL": "INFO",
        "AVISOS_RELAY_POLL_SECS": "0.2",
    }


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str], backing: Backing) -> Iterator[Stack]:
    s = Stack(stack_env, ROOT / "test-output" / "e2e" / backing.run)
    try:
        yield s
    finally:
        s.stop_all()


# --- opt-in: the same flows against `docker compose up` (AVISOS_E2E_COMPOSE=1) ----------
# pytest-docker's fixtures, pointed at compose.yaml; see compose_support.py.
sys.path.insert(0, str(Path(__file__).parent))
from compose_support import (  # noqa: E402, F401
    compose_env_file,
    compose_target,
    docker_cleanup,
    docker_compose_command,
    docker_compose_file,
    docker_compose_project_name,
    docker_setup,
)
