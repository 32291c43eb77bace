"""deploy/k8s: valid, minimal manifests (probes, resources, grace periods, non-root,
secrets referenced not inlined, migration Job, gateway PDB, Ingress routing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import (
    AVISOS_SERVICES,
    DEPLOY,
    OTHER_ENV,
    SECRET_NAME,
    known_env,
    only_env,
    settings_for,
)

K8S = DEPLOY / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
DOCS: list[dict[str, Any]] = [
    doc
    for name in KUSTOMIZATION["resources"]
    for doc in yaml.safe_load_all((K8S / name).read_text())
    if doc
]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in DOCS if d["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")
CONFIGMAPS = of_kind("ConfigMap")


def test_kustomization_lists_every_manifest() -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == files
    assert {i["name"] for i in KUSTOMIZATION["images"]} == {f"avisos/{s}" for s in AVISOS_SERVICES}
    for doc in DOCS:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert "namespace" not in doc["metadata"], "kustomize sets the namespace"


def container(dep: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> set[str]:
    names = {e["name"] for e in c.get("env", [])}
    for source in c.get("envFrom", []):
        names |= set(CONFIGMAPS[source["configMapRef"]["name"]]["data"])
    return names


@pytest.mark.parametrize("name", AVISOS_SERVICES)
def test_deployment(name: str) -> None:
    dep = DEPLOYMENTS[name]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert 10 <= pod["terminationGracePeriodSeconds"] <= 120
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    c = container(dep)
    assert c["image"] == f"avisos/{name}"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    port = c["ports"][0]
    assert port["name"] == "http"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    # Every service with /metrics is scraped (the web app serves static files only).
    assert annotations["prometheus.io/scrape"] == ("false" if name == "web" else "true")
    # Secrets are references, never values; non-secrets come from ConfigMaps.
    for e in c.get("env", []):
        if e["name"] in OTHER_ENV:
            continue
        assert "value" not in e, f"{name}: {e['name']} inlined"
        assert e["valueFrom"]["secretKeyRef"]["name"] == "avisos-secrets"
    for source in c.get("envFrom", []):
        data = CONFIGMAPS[source["configMapRef"]["name"]]["data"]
        assert not [k for k in data if SECRET_NAME.search(k)], "secret in a ConfigMap"
    # The port the container listens on is the one the settings get.
    cm = CONFIGMAPS[f"avisos-{name}"]["data"]
    assert str(port["containerPort"]) in cm.values()
    if settings_for(name) is None:
        pytest.skip(f"{name} has no settings module yet")
    env = env_of(c) - set(OTHER_ENV)
    assert env <= known_env(name), f"{name}: unknown {sorted(env - known_env(name))}"
    cls = settings_for(name)
    secrets = cls.model_fields["secret_fields"].default if cls else ()
    for field in secrets:
        assert f"AVISOS_{field.upper()}" in env, f"{name}: required secret {field} missing"
    for needed in ("AVISOS_DATABASE_URL", "AVISOS_REDIS_URL", "AVISOS_AMQP_URL"):
        if name != "web":
            assert needed in env


def test_services_select_deployments() -> None:
    for name, svc in of_kind("Service").items():
        dep = DEPLOYMENTS[name]
        assert (
            svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        )
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert {"notification-api", "ws-gateway", "web"} <= set(of_kind("Service"))


def test_gateway_pdb_and_scale() -> None:
    pdb = of_kind("PodDisruptionBudget")["ws-gateway"]
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "ws-gateway"}
    assert pdb["spec"].get("maxUnavailable") == 1
    assert DEPLOYMENTS["ws-gateway"]["spec"]["replicas"] >= 2


def test_migration_job() -> None:
    job = of_kind("Job")["avisos-migrate"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["command"] == ["avisos-admin", "migrate"]
    assert c["image"] == "avisos/notification-api"
    assert all("valueFrom" in e for e in c["env"])
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_reports_volume_is_shared() -> None:
    pvc = of_kind("PersistentVolumeClaim")["avisos-reports"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("notification-api", "dispatcher", "reports"):
        pod = DEPLOYMENTS[name]["spec"]["template"]["spec"]
        claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims[0]["persistentVolumeClaim"]["claimName"] == "avisos-reports"


def test_ingress_routes() -> None:
    ingresses = of_kind("Ingress")
    api_path = ingresses["avisos-api"]["spec"]["rules"][0]["http"]["paths"][0]
    assert api_path["backend"]["service"]["name"] == "notification-api"
    assert (
        ingresses["avisos-api"]["metadata"]["annotations"][
            "nginx.ingress.kubernetes.io/rewrite-target"
        ]
        == "/$1"
    )
    # ingress-nginx matches the path as a PCRE prefix; Python's re agrees on this syntax.
    pattern = re.compile(api_path["path"])
    m = pattern.match("/api/v1/notifications")
    assert m and m.group(1) == "v1/notifications"
    for refused in ("/api/internal/v1/users/x", "/api/internal", "/api/metrics"):
        assert not pattern.match(refused), refused
    assert pattern.match("/api/internalize")  # only the exact segment is refused
    front = {
        p["path"]: p["backend"]["service"]["name"]
        for p in ingresses["avisos-front"]["spec"]["rules"][0]["http"]["paths"]
    }
    assert front == {"/ws": "ws-gateway", "/": "web"}


def test_kubectl_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert Counter(d["kind"] for d in built) == Counter(d["kind"] for d in DOCS)
    assert all(
        d["metadata"].get("namespace") == "avisos" for d in built if d["kind"] != "Namespace"
    )


@pytest.mark.parametrize("name", AVISOS_SERVICES)
def test_settings_accept_the_manifests_in_prod(name: str, tmp_path: Path) -> None:
    """Each Deployment's environment (ConfigMaps + the secret's required keys, filled as
    deploy/k8s/README.md says) is accepted by the service's settings in prod."""
    cls = settings_for(name)
    if cls is None:
        pytest.skip(f"{name} has no settings module yet")
    c = container(DEPLOYMENTS[name])
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(CONFIGMAPS[source["configMapRef"]["name"]]["data"])
    fake_secret = {
        "AVISOS_DATABASE_URL": "postgresql://avisos:" + "p" * 40 + "@db:5432/avisos",
        "AVISOS_REDIS_URL": "redis://:" + "r" * 40 + "@redis:6379/0",
        "AVISOS_AMQP_URL": "amqp://avisos:" + "a" * 40 + "@rabbitmq:5672/avisos",
        "AVISOS_TICKET_SECRET": "t" * 64,
        "AVISOS_INTERNAL_TOKEN": "i" * 64,
        "AVISOS_VAPID_PRIVATE_KEY": "v" * 43,
    }
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and not ref.get("optional") and e["name"] in fake_secret:
            env[e["name"]] = fake_secret[e["name"]]
        elif ref is not None and not ref.get("optional"):
            raise AssertionError(f"{name}: required secret key {e['name']} not in the README")
    assert env["AVISOS_ENV"] == "prod"
    with only_env(env, tmp_path):
        settings = cls()
    if name == "dispatcher":
        assert "sms" not in getattr(settings, "channels")  # noqa: B009 - no Twilio account here
