"""compose.yaml, read statically: health checks, start order, scale-out by design, volumes,
secrets only from .env, and every variable a service gets is one its settings know."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import (
    AVISOS_SERVICES,
    BACKING,
    COMPOSE,
    ENV_EXAMPLE,
    MIGRATE,
    OTHER_ENV,
    ROOT,
    SCALED,
    SECRET_NAME,
    MissingVariable,
    interpolate,
    known_env,
    load_compose,
    only_env,
    parse_env_file,
    raw_service_env,
    service_env,
    settings_for,
    variables_used,
)
from gen_env import generate
from pydantic import ValidationError

from avisos_common.settings import SettingsError

# Compose interpolates values only; comments may mention ${VAR} freely.
COMPOSE_TEXT = "\n".join(
    line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")
)
SERVICES: dict[str, Any] = load_compose()["services"]
EXAMPLE = parse_env_file(ENV_EXAMPLE.read_text())


def generated_env() -> dict[str, str]:
    """What `make env` writes (fixed fake VAPID pair: no crypto needed here)."""
    text = generate(ENV_EXAMPLE.read_text(), {}, set(), lambda: ("p" * 43, "P" * 87))
    return parse_env_file(text)


def test_every_service_is_there() -> None:
    expected = {*BACKING, *AVISOS_SERVICES, MIGRATE, "proxy"}
    assert expected <= set(SERVICES)
    assert "rabbitmq_management" in (ROOT / "deploy/rabbitmq/enabled_plugins").read_text()
    assert SERVICES["rabbitmq"]["image"].endswith("-management")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_long_running_services_have_health_checks(name: str) -> None:
    service = SERVICES[name]
    if name == MIGRATE:
        assert service.get("restart") == "no", "the migration job must run once"
        return
    check = service.get("healthcheck")
    assert check and not check.get("disable"), f"{name} has no health check"
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    if name in AVISOS_SERVICES:
        # Readiness (dependencies reachable), not just liveness, gates the dependants.
        path = check["test"][-1]
        assert path.endswith(("/readyz", "/healthz")), path
        assert name == "web" or path.endswith("/readyz")


def test_start_order() -> None:
    assert SERVICES[MIGRATE]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in AVISOS_SERVICES:
        deps = SERVICES[name].get("depends_on", {})
        assert all(
            d["condition"] in ("service_healthy", "service_completed_successfully")
            for d in deps.values()
        ), name
        if name == "web":
            continue  # static files only: needs nothing
        assert deps[MIGRATE] == {"condition": "service_completed_successfully"}, name
        for backing in BACKING:
            assert deps[backing] == {"condition": "service_healthy"}, (name, backing)
    proxy = SERVICES["proxy"]["depends_on"]
    for upstream in ("web", "notification-api", "ws-gateway"):
        assert proxy[upstream] == {"condition": "service_healthy"}


def test_scale_out_by_design() -> None:
    """`--scale ws-gateway=3 --scale dispatcher=2` needs no fixed names or host ports."""
    for name, service in SERVICES.items():
        assert "container_name" not in service, name
    for name in (*AVISOS_SERVICES, MIGRATE):
        assert "ports" not in SERVICES[name], f"{name} publishes a host port"
    for name in BACKING:
        for port in SERVICES[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} exposed beyond localhost"
    assert [str(p) for p in SERVICES["proxy"]["ports"]] == ["${AVISOS_HTTP_PORT:-8080}:8080"]
    for name in SCALED:
        assert "hostname" not in SERVICES[name]


def test_named_volumes() -> None:
    declared = set(load_compose()["volumes"])
    assert {"db", "redis", "rabbitmq", "reports"} <= declared

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for v in SERVICES[name].get("volumes", []):
            source, target = str(v).split(":")[:2]
            out[source] = target
        return out

    assert mounts("postgres")["db"] == "/var/lib/postgresql/data"
    assert mounts("redis")["redis"] == "/data"
    assert mounts("rabbitmq")["rabbitmq"] == "/var/lib/rabbitmq"
    env = generated_env()
    for name in ("notification-api", "dispatcher", "reports"):
        target = mounts(name)["reports"]
        configured = service_env(SERVICES[name], env).get("AVISOS_REPORTS_DIR", target)
        assert configured == target, f"{name} writes reports outside the shared volume"
    assert str(SERVICES["dispatcher"]["volumes"][0]).endswith(":ro")
    for name, service in SERVICES.items():
        for v in service.get("volumes", []):
            source = str(v).split(":")[0]
            if not source.startswith("."):
                assert source in declared, f"{name} mounts undeclared volume {source}"
            else:
                assert (ROOT / source).exists(), f"{name} mounts missing file {source}"


def test_env_example_lists_exactly_the_variables_compose_uses() -> None:
    used = set(variables_used(COMPOSE_TEXT))
    assert used == set(EXAMPLE), (
        f"only in compose.yaml: {sorted(used - set(EXAMPLE))}; "
        f"only in .env.example: {sorted(set(EXAMPLE) - used)}"
    )


def test_secrets_come_from_env_and_are_required() -> None:
    """Every secret is a ${VAR:?...} reference (compose refuses to start without it), except
    the credentials of optional channels, and no secret value is written inline."""
    optional = {"AVISOS_SMTP_USERNAME", "AVISOS_SMTP_PASSWORD", "AVISOS_TWILIO_AUTH_TOKEN"}
    used = variables_used(COMPOSE_TEXT)
    for var, ops in used.items():
        if SECRET_NAME.search(var) and var not in optional:
            assert ops == {":?"}, f"{var} is used with {ops}: make it required (:?)"
    for name, service in SERVICES.items():
        for key, value in raw_service_env(service).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:[?-][^}]*\}", value), f"{name}.{key} inline"
    # URLs embed the passwords by reference only.
    for value in re.findall(r"\w+://[^\s]+", COMPOSE_TEXT):
        if "@" in value:
            assert re.search(r":\$\{[A-Z_]+:\?", value), value


def test_placeholders_refused_before_anything_runs() -> None:
    """Without .env compose stops at the first required secret; with .env.example's
    placeholders the services stop (AVISOS_ENV=prod)."""
    with pytest.raises(MissingVariable):
        service_env(SERVICES["notification-api"], {})
    for name in ("notification-api", "ws-gateway", "dispatcher", "reports"):
        cls = settings_for(name)
        assert cls is not None
        env = service_env(SERVICES[name], EXAMPLE)
        assert env["AVISOS_ENV"] == "prod"
        with only_env(env, ROOT / "deploy"), pytest.raises(ValidationError) as caught:
            cls()
        assert isinstance(caught.value.errors()[0]["ctx"]["error"], SettingsError)
        assert "placeholder" in str(caught.value)


@pytest.mark.parametrize("name", [*AVISOS_SERVICES, MIGRATE])
def test_every_variable_is_known_to_the_service(name: str) -> None:
    if settings_for(name) is None:
        pytest.skip(f"{name} has no settings module yet")
    unknown = {k for k in raw_service_env(SERVICES[name]) if k.startswith("AVISOS_")}
    unknown -= known_env(name)
    assert not unknown, f"{name} does not read {sorted(unknown)}"
    others = {k for k in raw_service_env(SERVICES[name]) if not k.startswith("AVISOS_")}
    assert others <= set(OTHER_ENV), f"{name}: {sorted(others)} read by nobody"


@pytest.mark.parametrize("name", [*AVISOS_SERVICES, MIGRATE])
def test_services_start_with_generated_secrets(name: str, tmp_path: Path) -> None:
    """The settings class accepts the compose environment filled from `make env` in prod:
    every required secret is set and real."""
    cls = settings_for(name)
    if cls is None:
        pytest.skip(f"{name} has no settings module yet")
    env = service_env(SERVICES[name], generated_env())
    with only_env(env, tmp_path):
        settings = cls()
    assert getattr(settings, "env", "prod") == "prod"
    for field in getattr(settings, "secret_fields", ()):
        assert f"AVISOS_{field.upper()}" in env, f"{name}: secret {field} not set"


def test_ports_agree_with_health_checks_and_proxy() -> None:
    env = generated_env()
    nginx = (ROOT / "deploy/nginx/nginx.conf").read_text()
    ports = {
        "notification-api": "AVISOS_API_PORT",
        "ws-gateway": "AVISOS_GATEWAY_PORT",
        "web": "AVISOS_WEB_PORT",
    }
    for name, var in ports.items():
        port = service_env(SERVICES[name], env)[var]
        assert f":{port}/" in SERVICES[name]["healthcheck"]["test"][-1]
        assert f"http://{name}:{port};" in nginx
    origins = service_env(SERVICES["ws-gateway"], env)["AVISOS_ALLOWED_ORIGINS"]
    assert origins == service_env(SERVICES["notification-api"], env)["AVISOS_PUBLIC_URL"]


def test_interpolation_helper_follows_compose_rules() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("a$$b", {}) == "a$b"
    with pytest.raises(MissingVariable):
        interpolate("${A:?need A}", {"A": ""})


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def test_docker_compose_config_when_available(tmp_path: Path) -> None:
    """`docker compose config` where the compose plugin exists (this machine has only the
    docker client without the plugin, so it is skipped here)."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("docker compose plugin not installed (no Docker engine on this machine)")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in generated_env().items()))
    out = subprocess.run(
        [*cli, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr


def test_twilio_callback_url_is_the_api_route() -> None:
    from avisos_api.api.routes import webhooks

    path = next(r.path for r in webhooks.router.routes if r.path.endswith("/twilio/status"))  # type: ignore[attr-defined]
    env = generated_env()
    for name in ("notification-api", "dispatcher"):
        url = service_env(SERVICES[name], env)["AVISOS_TWILIO_STATUS_CALLBACK_URL"]
        assert url == f"{env['AVISOS_PUBLIC_URL']}/api{path}", name


def test_backing_ports_override_is_local_only() -> None:
    override = yaml.safe_load((ROOT / "deploy/compose/backing-ports.yaml").read_text())
    assert set(override["services"]) == set(BACKING)
    for name, service in override["services"].items():
        assert set(service) == {"ports"}, name
        for port in service["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_dispatcher_channels_match_configured_providers(tmp_path: Path) -> None:
    """The dispatcher cannot start with "sms" in its channels and no Twilio account
    (avisos_dispatcher.sms.make_client): the default must leave sms out, and adding the
    account plus "sms" must work."""
    from avisos_dispatcher.settings import DispatcherSettings

    env = generated_env()
    with only_env(service_env(SERVICES["dispatcher"], env), tmp_path):
        default = DispatcherSettings()
    assert "sms" not in default.channels and not default.twilio_account_sid
    assert set(default.channels) == {"email", "push"}
    env |= {
        "AVISOS_CHANNELS": '["email","sms","push"]',
        "AVISOS_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "AVISOS_TWILIO_AUTH_TOKEN": "t" * 32,
        "AVISOS_TWILIO_FROM": "+34600000000",
    }
    with only_env(service_env(SERVICES["dispatcher"], env), tmp_path):
        with_sms = DispatcherSettings()
    assert with_sms.channels == ["email", "sms", "push"]


def test_system_screen_urls_name_real_services_and_ports() -> None:
    """AVISOS_SERVICE_READY_URLS (the API's admin System screen) points at compose services
    on the ports their health checks use."""
    env = service_env(SERVICES["notification-api"], generated_env())
    urls = dict(part.split("=", 1) for part in env["AVISOS_SERVICE_READY_URLS"].split(","))
    assert set(urls) == {"ws-gateway", "dispatcher", "reports", "web"}
    for name, url in urls.items():
        m = re.fullmatch(rf"http://{name}:(\d+)/readyz", url)
        assert m, url
        assert f":{m.group(1)}/" in SERVICES[name]["healthcheck"]["test"][-1], name
