"""A real local Ray cluster for the engine's scenarios, in this (loopback-only) network namespace:
a CPU head that holds the models (``dfstream_models``), two decode nodes that take streams
(``dfstream_stream_slots``) and a node advertising one GPU, where one detector is placed."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

NODE = {"object_store_memory": 150 * 2**20}


@pytest.fixture(scope="session")
def cluster():
    from ray.cluster_utils import Cluster

    from tests.mqtt_broker import USERS

    # as on Kubernetes (a Secret, envFrom): the credentials are in the nodes' own environment, which
    # their workers inherit; the engine puts none in runtime_env, where the dashboard would show them
    os.environ["DFSTREAM_MQTT_USERNAME"] = "dfstream"
    os.environ["DFSTREAM_MQTT_PASSWORD"] = USERS["dfstream"]
    started = time.monotonic()
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 4, "resources": {"dfstream_models": 4}, "include_dashboard": False, **NODE},
    )
    c.decode = [c.add_node(num_cpus=3, resources={"dfstream_stream_slots": 3}, **NODE) for _ in range(2)]
    c.gpu = c.add_node(num_cpus=2, num_gpus=1, **NODE)
    c.wait_for_nodes()
    c.start_s = time.monotonic() - started
    print(f"\ncluster of 4 nodes up in {c.start_s:.1f} s")
    yield c
    import ray as ray_

    if ray_.is_initialized():
        ray_.shutdown()
    c.shutdown()


class Verdicts:
    """A real MQTT subscriber (paho, in its own thread) that keeps every verdict with its arrival time."""

    def __init__(self, broker) -> None:  # noqa: ANN001 (tests.mqtt_broker.Mosquitto)
        import paho.mqtt.client as mqtt

        from tests.mqtt_broker import USERS

        self.lock = threading.Lock()
        self.seen: list[tuple[float, dict]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ray-test-reader")
        self.client.username_pw_set("reader", USERS["reader"])
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *_: client.subscribe("dfstream/+/verdict", qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        with self.lock:
            self.seen.append((time.monotonic(), json.loads(message.payload)))

    def of(self, stream: str, since: float = 0.0) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, v) for t, v in self.seen if v["stream"] == stream and t >= since]

    def wait(self, predicate, timeout: float, what: str) -> float:  # noqa: ANN001
        """Seconds until ``predicate()`` holds."""
        start = time.monotonic()
        while not predicate():
            assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting for {what}"
            time.sleep(0.1)
        return time.monotonic() - start

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="session")
def broker():
    from tests.mqtt_broker import Mosquitto

    b = Mosquitto().start()
    yield b
    b.close()


@pytest.fixture(scope="session")
def live_clip(tmp_path_factory) -> Path:
    """90 s of the face (long: GStreamer bursts a looping file faster than real time at each loop),
    1 s keyframes, as cameras send."""
    from stream import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("ray-media") / "live.mp4", seconds=90.0)


@pytest.fixture(scope="session")
def camera(rtsp_available, live_clip):
    from tests.conftest import RtspServer

    server = RtspServer({f"/cam{i}": live_clip for i in range(4)}).start()
    yield server
    server.stop()
