"""Secrets and exposure: metrics and health listen on loopback unless told otherwise, and the MQTT
password never shows in logs (even at INFO, even when the broker refuses it) or in `dfstream check`.
Clear-text passwords in a config file are warned about (tests/test_config.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import pytest
import yaml

from pipeline.monitoring.monitor import PerformanceMonitor
from sinks import PrometheusConfig, PrometheusExporter
from tests.mqtt_broker import USERS

SECRET = USERS["dfstream"]


def listening_addresses(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def other_local_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def test_metrics_and_health_listen_on_loopback_by_default(figures):
    exporter = PrometheusExporter(PrometheusConfig(port=0), PerformanceMonitor()).start()
    try:
        assert listening_addresses(exporter.port) == {"127.0.0.1"}
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=2):
            pass
        outside = other_local_address()
        if outside is not None:
            with pytest.raises(OSError), socket.create_connection((outside, exporter.port), timeout=2):
                pass
        figures(bound=sorted(listening_addresses(exporter.port)), refused_on=outside)
    finally:
        exporter.close()


def dfstream(*args: str, password: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DFSTREAM_MQTT_USERNAME": "dfstream", "DFSTREAM_MQTT_PASSWORD": password}
    return subprocess.run(
        [sys.executable, "-m", "dfstream", *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


@pytest.mark.weights
@pytest.mark.parametrize("password", [SECRET, "wrong-but-still-secret-7f3a"])
def test_the_mqtt_password_never_reaches_logs_or_check(weights_dir, short_clip, mosquitto, tmp_path, password, figures):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "streams": [{"id": "clip", "url": str(short_clip), "pace": "asap"}],
                "detectors": [{"name": "meso4", "type": "meso4", "weights": str(weights_dir / "Meso4_DF.h5")}],
                "sinks": {
                    "mqtt": {"port": mosquitto.port, "retry_initial_s": 0.1, "retry_max_s": 0.2, "flush_timeout_s": 1.0}
                },
            }
        )
    )
    check = dfstream("check", str(config), password=password)
    run = dfstream("-v", "run", str(config), password=password)
    assert check.returncode == 0 and run.returncode == 0, check.stderr + run.stderr
    output = check.stdout + check.stderr + run.stdout + run.stderr
    figures(log_lines=len(run.stderr.splitlines()), refused="Not authorized" in run.stderr)
    assert password not in output
    if password != SECRET:
        assert "Not authorized" in run.stderr  # the error is there, the password is not
