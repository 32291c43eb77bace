"""Run Avisos services as real processes: used by the end-to-end tests and ``make run``.

Each service is started with ``python -m <package>`` and ``AVISOS_*`` environment
variables, on a port of its own, and is considered up when its readiness endpoint answers
200. :meth:`Stack.stop` sends SIGTERM (graceful shutdown) and SIGKILL only after a grace
period; :meth:`Stack.kill` sends SIGKILL at once, to test crashes.

A service module registers how it is started in :data:`SERVICES`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from avisos_testkit.infra import free_port, wait_http


@dataclass(frozen=True)
class ServiceSpec:
    module: str
    #: Environment variable that sets the port the service listens on (None: no port).
    port_env: str | None
    ready_path: str = "/readyz"
    args: tuple[str, ...] = ()


SERVICES: dict[str, ServiceSpec] = {
    "api": ServiceSpec("avisos_api", "AVISOS_API_PORT"),
    "relay": ServiceSpec("avisos_api", None, args=("relay",)),
    "gateway": ServiceSpec("avisos_gateway", "AVISOS_GATEWAY_PORT"),
    "dispatcher": ServiceSpec("avisos_dispatcher", "AVISOS_METRICS_PORT"),
    "reports": ServiceSpec("avisos_reports", "AVISOS_REPORTS_PORT"),
    "web": ServiceSpec("avisos_web", "AVISOS_WEB_PORT", ready_path="/healthz"),
}


@dataclass
class Running:
    name: str
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    port: int | None
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Stack:
    """A set of service processes sharing one environment (backing services, secrets)."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, Running] = {}
        self._counter = 0

    def start(
        self,
        kind: str,
        *,
        name: str | None = None,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout_secs: float = 40.0,
    ) -> Running:
        spec = SERVICES[kind]
        self._counter += 1
        name = name or (kind if kind not in self.running else f"{kind}-{self._counter}")
        env = {**os.environ, **self.env, **(extra_env or {})}
        if spec.port_env is not None:
            port = port or free_port()
            env[spec.port_env] = str(port)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", spec.module, *spec.args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        run = Running(name, spec, process, port, log_path, env)
        self.running[name] = run
        if wait:
            self.wait_ready(run, timeout_secs)
        return run

    def wait_ready(self, run: Running, timeout_secs: float = 40.0) -> None:
        if run.port is None:
            time.sleep(0.5)
            if run.process.poll() is not None:
                raise RuntimeError(f"{run.name} exited at start:\n{run.log()[-4000:]}")
            return
        deadline = time.monotonic() + timeout_secs
        while True:
            if run.process.poll() is not None:
                raise RuntimeError(
                    f"{run.name} exited with {run.process.returncode}:\n{run.log()[-4000:]}"
                )
            try:
                wait_http(run.url + run.spec.ready_path, timeout_secs=1.0)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{run.name} not ready:\n{run.log()[-4000:]}") from None

    def stop(self, name: str, grace_secs: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_secs``; return the exit code."""
        run = self.running.pop(name)
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            try:
                run.process.wait(grace_secs)
            except subprocess.TimeoutExpired:
                os.killpg(run.process.pid, signal.SIGKILL)
                run.process.wait(5)
        return run.process.returncode

    def kill(self, name: str) -> None:
        """SIGKILL at once: a crash, with no chance to clean up."""
        run = self.running.pop(name)
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait(5)

    def stop_all(self) -> None:
        for name in list(reversed(self.running)):
            self.stop(name)
