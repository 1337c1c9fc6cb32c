"""Alert rules, dashboard and compose file are checked with the real tools, and every metric
they name is one dfstream exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from pipeline.monitoring.keys import END_TO_END, FACES, RUNTIME, STAGE_SPANS, Count, Kind, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from sinks.prometheus import COUNTERS, GAUGES, MQTT, SYSTEM_GAUGES, PrometheusConfig, PrometheusExporter

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "configs" / "prometheus"
DASHBOARD = REPO / "configs" / "grafana" / "dashboards" / "dfstream.json"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install {'prometheus' if name == 'promtool' else name}")
    return path


SUBJECTS = {
    Kind.STREAM: Subject.stream("cam1"),
    Kind.MODEL: Subject.model("meso4"),
    Kind.SINK: MQTT,
    Kind.STAGE: RUNTIME,
}


def _subject(kind: Kind, family) -> Subject:
    """The one subject a family names, else a subject of its kind."""
    return family.by if isinstance(family.by, Subject) else SUBJECTS[kind]


def busy_monitor() -> PerformanceMonitor:
    """A monitor holding every number the runtime and sinks record (each exported family fed once)."""
    m = PerformanceMonitor()
    for (kind, name), family in COUNTERS.items():
        m.count(_subject(kind, family), name, 3, **{label: "x" for label in family.labels})
    for (kind, name), family in GAUGES.items():
        m.set_gauge(_subject(kind, family), name, 1, **{label: "x" for label in family.labels})
    m.count(Subject.sink("jsonl"), Count.EVENTS_DROPPED, reason="outbox_full")
    m.record_inference("meso4", 0.01, images=4)
    m.record_inference("meso4", 0.02, images=1, success=False)
    for stage in (*STAGE_SPANS, END_TO_END):
        m.record_latency(stage, 0.05)
    m.record_inference(FACES, 0.03, images=2)
    return m


def exported_samples() -> str:
    exporter = PrometheusExporter(PrometheusConfig(port=0), busy_monitor())
    return generate_latest(exporter.registry).decode()


def exported_names() -> set[str]:
    names = {
        line.split("{")[0].split(" ")[0]
        for line in exported_samples().splitlines()
        if line and not line.startswith("#")
    }
    return names | {gauge[1] for gauge in SYSTEM_GAUGES}


def promql_names(text: str) -> set[str]:
    return set(re.findall(r"\b((?:dfstream|process)_[a-z0-9_]+)", text))


def test_promtool_checks_and_tests_the_alert_rules():
    promtool = tool("promtool")
    check = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS, capture_output=True, text=True
    )
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_every_alert_has_firing_and_quiet_tests():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for t in tests for case in t["alert_rule_test"]]
    for rule in rules:
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} is never shown firing"
        quiet = [c for c in mine if not c["exp_alerts"]]
        partial = [c for c in mine if c["exp_alerts"]]  # firing for one subject and not another counts as quiet too
        assert quiet or any(
            t for t in tests if any(c in partial for c in t["alert_rule_test"]) and len(t["input_series"]) > 1
        ), rule["alert"]


def test_alert_rules_and_dashboard_name_only_exported_metrics():
    exported = exported_names()
    for source in ((PROMETHEUS / "alerts.yml").read_text(), DASHBOARD.read_text()):
        unknown = promql_names(source) - exported
        assert not unknown, f"not exported by dfstream: {sorted(unknown)}"


def test_exposition_passes_promtool_lint():
    promtool = tool("promtool")
    lint = subprocess.run([promtool, "check", "metrics"], input=exported_samples(), capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_dashboard_is_provisioned_with_a_stable_uid():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "dfstream-overview"
    source = yaml.safe_load((REPO / "configs/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"] and panel["targets"], panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "frames judged",
        "dropped",
        "latency",
        "verdicts",
        "batch size",
        "inference",
        "stream up",
        "mqtt",
        "cpu",
    ):
        assert topic in titles


def test_compose_file_validates(monkeypatch):
    compose = tool("docker-compose")
    out = subprocess.run(
        [compose, "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "DFSTREAM_MQTT_PASSWORD": "x", "DFSTREAM_DB_PASSWORD": "y", "GRAFANA_ADMIN_PASSWORD": "z"},
    )
    assert out.returncode == 0, out.stderr
    unset = subprocess.run(  # no default password for Grafana: the stack refuses to start without one
        [compose, "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "DFSTREAM_MQTT_PASSWORD": "x", "DFSTREAM_DB_PASSWORD": "y"},
    )
    assert unset.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in unset.stderr
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert set(services) == {"dfstream", "postgres", "mosquitto", "prometheus", "grafana"}
    assert services["dfstream"]["command"][0] == "serve"
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    compose_file = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    exporter = compose_file["services"]["dfstream"]["networks"]["metrics"]["ipv4_address"]
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"{exporter}:9108"]
    shared = {n for n, s in services.items() if "metrics" in (s.get("networks") or [])}
    assert shared == {"dfstream", "prometheus"}  # nobody else reaches the exporter
    from dfstream.config import load_config

    monkeypatch.setenv("DFSTREAM_DB_PASSWORD", "y")
    config = load_config(REPO / "configs" / "compose.yaml")
    assert config.sinks.prometheus.port == 9108 and config.sinks.prometheus.host == exporter
    assert config.api.database.startswith("postgresql+psycopg://dfstream:y@postgres:5432/")
