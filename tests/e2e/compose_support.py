"""The end-to-end tests against `docker compose up` instead of processes (opt-in).

Set ``AVISOS_E2E_COMPOSE=1`` on a machine with a Docker engine and the compose plugin.
pytest-docker then builds the images, starts compose.yaml under its own project name with
a generated env file (real random secrets, a free host port for the proxy), waits for
every health check (``up --wait``), and tears it all down with its volumes afterwards.

Tests take :func:`compose_target` and reach Avisos only the way a browser and an ERP do:
through the proxy's one origin (``/api``, ``/ws``). The fixtures below override
pytest-docker's own fixtures of the same names; tests/e2e/conftest.py re-exports them.
Without the variable every test that asks for them is skipped with the reason.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENABLED = os.environ.get("AVISOS_E2E_COMPOSE") == "1"
SKIP_REASON = (
    "AVISOS_E2E_COMPOSE=1 not set: these tests need a Docker engine with the compose "
    "plugin (the development machine of this repository has none); the compose "
    "environment runs as processes in test_compose_env.py, scale-out and shutdown in "
    "test_scale_out.py and test_shutdown.py"
)
PROJECT = "avisos-e2e"
STARTUP_TIMEOUT_SECS = 600.0


@dataclass(frozen=True)
class ComposeTarget:
    """URLs of the compose stack, as seen from the host."""

    origin: str  # http://127.0.0.1:<proxy port>; also AVISOS_PUBLIC_URL
    compose: list[str]  # the docker compose command with -f/-p/--env-file

    @property
    def api_url(self) -> str:
        return f"{self.origin}/api"

    @property
    def ws_url(self) -> str:
        return self.origin.replace("http://", "ws://", 1) + "/ws"

    def run(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            [*self.compose, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
        assert out.returncode == 0, f"docker compose {' '.join(args)}:\n{out.stderr}"
        return out.stdout

    def create_admin(self, email: str, password: str) -> None:
        self.run(
            "exec", "-T", "-e", f"AVISOS_ADMIN_PASSWORD={password}",
            "notification-api", "avisos-admin", "create-admin", email,
        )  # fmt: skip

    def scale(self, service: str, replicas: int) -> None:
        self.run("up", "-d", "--wait", "--no-recreate", "--scale", f"{service}={replicas}")

    def replicas(self, service: str) -> int:
        return len(self.run("ps", "-q", service).split())


def _require() -> None:
    if not ENABLED:
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def compose_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make env` output plus a free proxy port and the matching public URL."""
    _require()
    sys.path.insert(0, str(ROOT / "deploy"))
    from gen_env import main as gen_env

    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from avisos_testkit.infra import free_port

    path = tmp_path_factory.mktemp("compose") / ".env"
    gen_env(["--template", str(ROOT / ".env.example"), "--output", str(path)])
    port = free_port()
    lines = [
        line
        for line in path.read_text().splitlines()
        if not line.startswith(("AVISOS_HTTP_PORT=", "AVISOS_PUBLIC_URL="))
    ]
    lines += [f"AVISOS_HTTP_PORT={port}", f"AVISOS_PUBLIC_URL=http://127.0.0.1:{port}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def docker_compose_command(compose_env_file: Path) -> str:
    return f"docker compose --env-file {shlex.quote(str(compose_env_file))}"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "compose.yaml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return PROJECT


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up --build --wait --wait-timeout 600 -d"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v --remove-orphans"]


@pytest.fixture(scope="session")
def compose_target(docker_services: Any, compose_env_file: Path) -> ComposeTarget:
    """The running compose stack (started by pytest-docker's ``docker_services``)."""
    _require()
    port = docker_services.port_for("proxy", 8080)
    origin = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{origin}/api/v1/me", timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    docker_services.wait_until_responsive(answers, timeout=STARTUP_TIMEOUT_SECS, pause=1.0)
    compose = [
        "docker", "compose", "--env-file", str(compose_env_file),
        "-f", str(ROOT / "compose.yaml"), "-p", PROJECT,
    ]  # fmt: skip
    return ComposeTarget(origin, compose)
