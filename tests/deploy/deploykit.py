"""What the deploy tests share: reading compose.yaml the way compose does (interpolation of
``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``), the .env files, and the settings class
behind each service (via scripts/config_reference.py)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from config_reference import SERVICE_MODULES, service_env_names, settings_class
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY = ROOT / "deploy"

#: Compose services that run Avisos code (the rest are backing services and the proxy).
AVISOS_SERVICES = tuple(SERVICE_MODULES)
#: The one-shot job that runs the notification-api image.
MIGRATE = "migrate"
BACKING = ("postgres", "redis", "rabbitmq")
SCALED = ("ws-gateway", "dispatcher", "notification-api")
#: Variables set for a service that its settings do not read, and who reads them.
OTHER_ENV = {"FORWARDED_ALLOW_IPS": "uvicorn (notification-api)"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY)$")

_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\})")


class MissingVariable(KeyError):
    """A ``${VAR:?message}`` whose variable is unset or empty: compose refuses to start."""


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def variables_used(text: str) -> dict[str, set[str]]:
    """Variable name -> the operators it is used with ('' for plain ${VAR})."""
    out: dict[str, set[str]] = {}
    for m in _VAR.finditer(text):
        if m.group("name"):
            out.setdefault(m.group("name"), set()).add(m.group("op") or "")
    return out


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string."""

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name is None:
            return "$"
        op, arg = m.group("op"), m.group("arg")
        current = env.get(name)
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op in (":-", "-"):
            if current is None or (op == ":-" and current == ""):
                return arg
            return current
        return current or ""

    return _VAR.sub(sub, value)


def service_env(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def raw_service_env(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=value lines as compose reads them (a '...' value is literal, quotes removed)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            out[key.strip()] = value
    return out


def settings_for(service: str) -> type[BaseSettings] | None:
    """The settings class of an Avisos service (the migrate job uses the API's)."""
    return settings_class("notification-api" if service == MIGRATE else service)


def known_env(service: str) -> set[str]:
    """Every variable a settings class of ``service`` reads (the migrate job: the API's)."""
    return service_env_names("notification-api" if service == MIGRATE else service)


@contextlib.contextmanager
def only_env(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """Run with exactly these AVISOS_* variables (others removed) in ``cwd`` (no .env)."""
    saved = dict(os.environ)
    old_cwd = Path.cwd()
    try:
        for key in list(os.environ):
            if key.startswith("AVISOS_"):
                del os.environ[key]
        os.environ.update(env)
        os.chdir(cwd)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(old_cwd)


def localize_nginx(upstreams: dict[str, str], port: int, access_log: Path) -> str:
    """deploy/nginx/nginx.conf with the compose service URLs replaced by ``upstreams``
    (service name -> http://127.0.0.1:port), listening on 127.0.0.1:``port``, the pid file
    in the prefix directory and the access log in ``access_log``. Nothing else changes."""
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    for name, url in upstreams.items():
        conf, n = re.subn(rf"http://{re.escape(name)}:\d+;", f"{url};", conf)
        assert n == 1, f"{name} is not an upstream of nginx.conf"
    for old, new in (
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("pid /tmp/nginx.pid;", "pid nginx.pid;"),
        ("access_log /dev/stdout avisos_json;", f"access_log {access_log} avisos_json;"),
    ):
        assert old in conf, old
        conf = conf.replace(old, new)
    return conf
