"""deploy/prometheus: the scrape config covers every service on the port it listens on,
and every alert rule is well formed, uses metrics that exist and links the runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploykit import DEPLOY, ROOT, load_compose

PROM = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
ALERTS = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
OPERATIONS = ROOT / "docs/operations.md"


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return out


def test_scrape_config_matches_compose() -> None:
    services = load_compose()["services"]
    jobs = {j["job_name"]: j for j in PROM["scrape_configs"]}
    for name in ("notification-api", "ws-gateway", "dispatcher", "reports"):
        sd = jobs[name]["dns_sd_configs"][0]
        assert sd["names"] == [name] and sd["type"] == "A"
        port = str(sd["port"])
        assert f":{port}/" in services[name]["healthcheck"]["test"][-1], name
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["rabbitmq:15692"]
    assert PROM["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "rabbitmq_prometheus" in (DEPLOY / "rabbitmq/enabled_plugins").read_text()


def test_alert_rules() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))
    source += "\n".join(p.read_text() for p in (ROOT / "libs").rglob("*.py"))
    doc_anchors = anchors(OPERATIONS.read_text())
    rules = [r for g in ALERTS["groups"] for r in g["rules"]]
    assert len(rules) >= 5
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("page", "warn")
        assert rule["annotations"]["summary"]
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("docs/operations.md#")
        assert runbook.split("#", 1)[1] in doc_anchors, f"{rule['alert']}: no such section"
        assert rule["expr"].count("(") == rule["expr"].count(")")
        # Our own metrics must exist in the code (histograms add _bucket/_count/_sum).
        for metric in re.findall(r"\b(avisos_[a-z_]+)", rule["expr"]):
            base = re.sub(r"_(bucket|count|sum|total)$", "", metric)
            assert f'"{base}' in source, f"{rule['alert']}: no metric {metric} in the code"


def test_promtool_when_available(tmp_path: Path) -> None:
    """promtool (Debian package `prometheus`) checks the config, the rules, and runs the
    rule unit tests of deploy/prometheus/alerts_test.yml."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    alerts = DEPLOY / "prometheus/alerts.yml"
    config = tmp_path / "prometheus.yml"
    text = (DEPLOY / "prometheus/prometheus.yml").read_text()
    config.write_text(text.replace("/etc/prometheus/alerts.yml", str(alerts)))
    for args in (
        ["check", "rules", str(alerts)],
        ["check", "config", str(config)],
        ["test", "rules", str(DEPLOY / "prometheus/alerts_test.yml")],
    ):
        out = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}{out.stderr}"
