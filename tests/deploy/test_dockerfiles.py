"""deploy/<service>/Dockerfile: uv from the lock with a dependency layer of its own,
a non-root user, a HEALTHCHECK, an entry point that exists; and the dependency layer
really installs from nothing but the manifests (replayed with uv, offline)."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploykit import AVISOS_SERVICES, DEPLOY, ROOT, known_env

SERVICE_DIRS = {name: ROOT / "services" / name for name in AVISOS_SERVICES}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse(path: Path) -> list[Stage]:
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            parts = arg.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 else None))
        elif stages:
            stages[-1].instructions.append((op, " ".join(arg.split())))
    return stages


def package(service: str) -> dict[str, object]:
    data = tomllib.loads((SERVICE_DIRS[service] / "pyproject.toml").read_text())
    project = data["project"]
    assert isinstance(project, dict)
    return project


def workspace_members() -> list[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[str] = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members += sorted(
            str(Path(p).relative_to(ROOT))
            for p in glob.glob(str(ROOT / pattern))
            if (Path(p) / "pyproject.toml").exists()
        )
    return members


@pytest.mark.parametrize("service", AVISOS_SERVICES)
def test_dockerfile(service: str) -> None:
    stages = parse(DEPLOY / service / "Dockerfile")
    pkg = str(package(service)["name"])
    build = next(s for s in stages if s.name == "build")
    runs = build.all("RUN")
    deps = [r for r in runs if "--no-install-workspace" in r]
    full = [r for r in runs if "uv sync" in r and "--no-install-workspace" not in r]
    assert len(deps) == 1 and len(full) == 1
    for cmd in (deps[0], full[0]):
        assert "uv sync --frozen" in cmd and f"--package {pkg}" in cmd and "--no-dev" in cmd
    # The dependency layer comes before any source is copied.
    order = [(op, arg) for op, arg in build.instructions if op in ("COPY", "RUN")]
    dep_at = order.index(("RUN", deps[0]))
    before = [arg for op, arg in order[:dep_at] if op == "COPY" and "--from" not in arg]
    for copy in before:
        sources = copy.split()[:-1]
        assert all(s.endswith(("pyproject.toml", "uv.lock")) for s in sources), copy
    copied = {Path(a.split()[0]).parent.as_posix() for a in before}
    assert set(workspace_members()) <= copied, "uv needs every member's pyproject.toml"
    # Every COPY source exists in the build context (the repository root).
    for stage in stages:
        for copy in stage.all("COPY"):
            if "--from" in copy:
                continue
            for source in [w for w in copy.split() if not w.startswith("--")][:-1]:
                assert (ROOT / source).exists(), f"{service}: COPY {source} does not exist"

    runtime = stages[-1]
    users = runtime.all("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as root"
    assert runtime.all("HEALTHCHECK"), "no HEALTHCHECK"
    health = runtime.all("HEALTHCHECK")[-1]
    assert "avisos-probe" in health and "/healthz" in health
    port = runtime.all("EXPOSE")[-1]
    assert f"127.0.0.1:{port}/" in health

    # CMD is an entry point of this package.
    cmd = runtime.all("CMD")[-1]
    scripts = package(service).get("scripts", {})
    assert isinstance(scripts, dict)
    assert eval(cmd)[0] in scripts, f"{cmd} is not in [project.scripts] of {pkg}"  # noqa: S307

    # ENV AVISOS_* are variables the service reads, and the port one matches EXPOSE.
    env = dict(kv.split("=", 1) for e in runtime.all("ENV") for kv in shlex.split(e) if "=" in kv)
    avisos = {k: v for k, v in env.items() if k.startswith("AVISOS_")}
    if known := _known(service):
        assert set(avisos) <= known, f"{service}: unknown {sorted(set(avisos) - known)}"
    assert port in avisos.values(), f"{service}: no AVISOS_*PORT={port}"


def _known(service: str) -> set[str] | None:
    from deploykit import settings_for

    return known_env(service) if settings_for(service) is not None else None


def test_dockerignore_keeps_secrets_and_venvs_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", "**/.venv", ".git", "var"):
        assert pattern in ignored


def test_probe_script(tmp_path: Path) -> None:
    probe = DEPLOY / "probe.py"
    out = subprocess.run(["python3", str(probe), "http://127.0.0.1:1/healthz"], timeout=10)
    assert out.returncode == 1
    assert subprocess.run(["python3", str(probe)], timeout=10).returncode == 2


def test_dependency_layer_installs_from_manifests_alone(tmp_path: Path) -> None:
    """Replays the build stage's COPY/RUN steps with uv (offline, from the local cache):
    the first sync must work with only the manifests, the second must install the
    service's entry point. One image (~4 s); the others differ only in --package, which
    test_dockerfile checks."""
    service = "notification-api"
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not on PATH")
    build = next(s for s in parse(DEPLOY / service / "Dockerfile") if s.name == "build")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"), "UV_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    ctx = tmp_path / "src"
    ctx.mkdir()
    for op, arg in build.instructions:
        if op == "COPY" and "--from" not in arg:
            *sources, dest = arg.split()
            for source in sources:
                src = ROOT / source
                target = ctx / dest if dest != "./" else ctx
                if src.is_dir():
                    shutil.copytree(
                        src,
                        ctx / dest,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("tests", "__pycache__", ".venv"),
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, target / src.name)
        elif op == "RUN" and "uv sync" in arg:
            cmd = arg[arg.index("uv sync") :].split()
            out = subprocess.run(
                [uv, *cmd[1:]], cwd=ctx, env=env, capture_output=True, text=True, timeout=120
            )
            if out.returncode != 0 and "offline" in out.stderr.lower():
                pytest.skip(f"a package is not in the local uv cache: {out.stderr[-300:]}")
            assert out.returncode == 0, f"{arg}\n{out.stderr}"
    entry = eval(parse(DEPLOY / service / "Dockerfile")[-1].all("CMD")[-1])[0]  # noqa: S307
    assert (tmp_path / "venv" / "bin" / entry).exists()


def test_uv_image_matches_the_uv_that_locks() -> None:
    """uv.lock is written by the workspace's uv; the image's uv must be as new (an older
    one may not read the lock's revision)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not on PATH")
    local = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    major_minor = tuple(int(x) for x in local.stdout.split()[1].split(".")[:2])
    for service in AVISOS_SERVICES:
        base = next(s.base for s in parse(DEPLOY / service / "Dockerfile") if s.name == "uv")
        tag = tuple(int(x) for x in base.rsplit(":", 1)[1].split(".")[:2])
        assert tag >= major_minor, f"{service}: {base} is older than uv {local.stdout.strip()}"
