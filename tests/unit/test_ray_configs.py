"""The Ray deployment examples (configs/ray/) hold together, checked offline: the dfstream config
parses, every Ray resource it asks for is one the KubeRay cluster's groups advertise, and there is
room for what it starts at its minimum."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from dfstream.config import load_config
from tests.helpers import REPO

RAY = REPO / "configs" / "ray"


@pytest.fixture
def config(monkeypatch):
    for name in ("DFSTREAM_CAMERA_USER", "DFSTREAM_CAMERA_PASSWORD"):
        monkeypatch.setenv(name, "x")
    return load_config(RAY / "cluster.yaml")


def advertised(params: dict) -> dict[str, float]:
    resources = json.loads(yaml.safe_load(params["resources"])) if "resources" in params else {}
    return {"CPU": float(params.get("num-cpus", 0)), "GPU": float(params.get("num-gpus", 0)), **resources}


@pytest.fixture
def groups() -> dict[str, tuple[dict[str, float], int, dict]]:
    cluster = yaml.safe_load((RAY / "raycluster.yaml").read_text())
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    head = cluster["spec"]["headGroupSpec"]
    found = {"head": (advertised(head["rayStartParams"]), 1, head["template"])}
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        found[group["groupName"]] = (advertised(group["rayStartParams"]), group["replicas"], group["template"])
    return found


def test_the_cluster_runs_the_ray_version_dfstream_pins(groups):
    pinned = re.search(r'ray = \["ray\[serve\]==([0-9.]+)"\]', (REPO / "pyproject.toml").read_text()).group(1)
    assert yaml.safe_load((RAY / "raycluster.yaml").read_text())["spec"]["rayVersion"] == pinned


def test_the_config_is_a_ray_config(config):
    assert config.runtime.engine == "ray" and config.sinks.prometheus is not None


def test_the_autoscaler_is_on_and_the_decode_group_can_grow(groups):
    cluster = yaml.safe_load((RAY / "raycluster.yaml").read_text())
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    decode = next(g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "decode")
    assert decode["maxReplicas"] > decode["replicas"] and "dfstream_stream_slots" in groups["decode"][0]


def test_every_resource_the_config_asks_for_is_advertised_with_room_for_its_minimum(config, groups):
    rt = config.runtime
    wants = [(rt.streams.num_cpus, 0.0, rt.streams.resources, len(config.streams))]
    for d in config.detectors:
        if d.name in rt.deployments:  # a shared pool; the others run in the node runtimes
            section = rt.deployments[d.name]
            wants.append((section.num_cpus, section.gpus(d.device), section.resources, section.min_replicas))
    free = {name: {k: v * n for k, v in ads.items()} for name, (ads, n, _) in groups.items()}
    for cpus, gpus, resources, count in wants:
        need = {"CPU": cpus, "GPU": gpus, **resources}
        for _ in range(count):  # first fit, as Ray places them
            group = next(
                (g for g, left in free.items() if all(left.get(k, 0.0) >= v for k, v in need.items() if v)), None
            )
            assert group is not None, f"no group has {need} left; free: {free}"
            for k, v in need.items():
                free[group][k] = free[group].get(k, 0.0) - v


def test_gpu_groups_ask_kubernetes_for_the_gpus_they_advertise(groups):
    for name, (ads, _, template) in groups.items():
        limits = template["spec"]["containers"][0]["resources"]["limits"]
        assert float(limits.get("nvidia.com/gpu", 0)) == ads["GPU"], name
        assert float(limits["cpu"]) == ads["CPU"], name


def test_the_apply_job_applies_the_mounted_config():
    job = yaml.safe_load((RAY / "apply-job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["ray", "apply"]
    mount = container["volumeMounts"][0]["mountPath"]
    assert container["args"][2].startswith(mount + "/")


def test_dfstream_ray_refuses_a_config_for_the_local_engine(capsys):
    from dfstream.cli import main

    assert main(["ray", "status", str(REPO / "configs" / "demo.yaml")]) == 2
    assert "runtime.engine is 'local'; dfstream ray needs runtime: {engine: ray}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("runtime.engine=spark", "runtime.engine: Input should be 'local' or 'ray'"),
        (
            "runtime.address=headnode",
            "runtime.address: address 'headnode': expected auto, local, ray://host:port or host:port",
        ),
        (
            "runtime.deployments={meso4: {min_replicas: 3, max_replicas: 2}}",
            "runtime.deployments: max_replicas (2) is below min_replicas (3)",
        ),
        ("runtime.nodes.lost_after_s=1", "runtime.nodes: lost_after_s (1.0) must be at least 3 heartbeats (1.5)"),
        # the first Ray design's sections: what to do now
        (
            "runtime.faces={num_cpus: 2}",
            "runtime: faces (the first Ray design's): faces are found in each node runtime now; remove it",
        ),
        (
            "runtime.streams.max_restarts=3",
            "runtime: streams.max_restarts (the first Ray design's): the controller starts a lost node's streams",
        ),
        (
            "runtime.deployments={meso5: {num_gpus: 1}}",
            "config: runtime.deployments.meso5: no detector named 'meso5' (have meso4, mesoinception4)",
        ),
    ],
)
def test_bad_runtime_sections_are_one_line_naming_the_field(override, message, capsys):
    from dfstream.cli import main

    assert main(["check", str(REPO / "configs" / "demo.yaml"), "--set", override]) == 2
    assert f"dfstream: error: {message}" in capsys.readouterr().err


def test_serve_refuses_the_ray_engine_saying_what_to_do_instead():
    from core.errors import ConfigError
    from dfstream.config import load_config
    from dfstream.wiring import serve

    config = load_config(REPO / "configs" / "demo.yaml", ["runtime.engine=ray"])
    with pytest.raises(ConfigError, match="dfstream ray apply"):
        serve(config)


def test_the_cluster_keeps_its_dashboard_and_its_secrets_to_itself(groups, monkeypatch):
    """The dashboard's Jobs API runs code unauthenticated, and it shows every actor's runtime_env."""
    from dfstream.ray.engine import forwarded_env

    head = yaml.safe_load((RAY / "raycluster.yaml").read_text())["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    for name, (_, _, template) in groups.items():
        for container in template["spec"]["containers"]:
            assert {"secretRef": {"name": "dfstream-secrets"}} in container["envFrom"], name
    policy = yaml.safe_load((RAY / "networkpolicy.yaml").read_text())
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["podSelector"]["matchLabels"] == {
        "ray.io/cluster": "dfstream"
    }
    opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert opened == {10001, 9108}  # Ray Client for the apply Job, metrics for Prometheus; never 8265
    monkeypatch.setenv("DFSTREAM_MQTT_PASSWORD", "secret")
    monkeypatch.setenv("DFSTREAM_CAMERA_PASSWORD", "secret")
    monkeypatch.setenv("DFSTREAM_MODEL_DIR", "/models")
    assert forwarded_env() == {"DFSTREAM_MODEL_DIR": "/models"}
