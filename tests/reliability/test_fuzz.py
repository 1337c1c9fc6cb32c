"""Property-based fuzzing (hypothesis) of what comes from outside or goes outside: configuration
files, --set overrides, and the MQTT payloads built from events. A config either parses or fails
with ConfigError lines naming what was wrong — never another exception; a payload is either valid
JSON matching its schema or refused before it reaches the outbox."""

from __future__ import annotations

import asyncio
import copy
import json
import math
from pathlib import Path

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from dfstream.config import apply_override, load_config, parse_config
from pipeline.runtime.events import Alert, StreamState, StreamStatus, Verdict, VoiceVerdict
from sinks.mqtt import MqttConfig, MqttSink

SCHEMAS = Path(__file__).resolve().parents[2] / "configs" / "schemas"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

BASE = {
    "streams": [{"id": "cam1", "url": "rtsp://127.0.0.1:8554/cam1", "fps": 15}, {"id": "f", "url": "clip.mp4"}],
    "faces": {"detect_every": 3, "detect_max_side": 640},
    "detectors": [{"name": "meso4", "type": "meso4"}, {"name": "inc", "type": "mesoinception4", "max_batch": 4}],
    "ensemble": {"method": "weighted_average", "min_models": 1},
    "smoothing": {"method": "ema", "alpha": 0.3, "enter": 0.7, "leave": 0.4},
    "sinks": {"jsonl": {"path": "-"}, "mqtt": {"port": 1883}, "prometheus": {"port": 9108}},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


def containers(node, path=()):
    """Every dict and list in the config with its path, the root included."""
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        if isinstance(child, (dict, list)):
            yield from containers(child, (*path, key))


def assert_one_line_per_problem(error: ConfigError) -> None:
    lines = str(error).splitlines()
    assert lines and all(line.strip() and "Traceback" not in line for line in lines)


@FUZZ
@given(data=st.data())
def test_a_mutated_config_parses_or_fails_with_config_error(data):
    config = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        path, node = data.draw(st.sampled_from(list(containers(config))))
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if isinstance(node, dict) and node and action != "add":
            key = data.draw(st.sampled_from(sorted(node, key=str)))
            if action == "delete":
                del node[key]
            else:
                node[key] = data.draw(json_values)
        elif isinstance(node, list) and node and action != "add":
            node[data.draw(st.integers(0, len(node) - 1))] = data.draw(json_values)
        elif isinstance(node, dict):
            node[data.draw(st.text(max_size=12))] = data.draw(json_values)
        else:
            node.append(data.draw(json_values))
    try:
        parse_config(config)
    except ConfigError as error:
        assert_one_line_per_problem(error)


@FUZZ
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_file_text_loads_or_fails_with_config_error(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_config(path)
    except ConfigError as error:
        assert_one_line_per_problem(error)


@FUZZ
@given(
    override=st.text(max_size=60),
    yaml_value=json_values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
)
def test_any_override_applies_or_fails_with_config_error(override, yaml_value):
    for text in (override, f"{override}={yaml_value}", f"streams.0.{override}={yaml_value}"):
        data = copy.deepcopy(BASE)
        try:
            apply_override(data, text)
            parse_config(data)
        except ConfigError as error:
            assert_one_line_per_problem(error)


# ---- MQTT payloads ---------------------------------------------------------------------------------
stream_ids = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z")
unit = st.floats(0, 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
times = st.floats(0, 4e9)
verdicts = st.builds(
    Verdict,
    stream=stream_ids,
    track_id=st.integers(1, 2**31),
    seq=st.integers(1, 2**31),
    ts=times,
    frame_seq=st.integers(0, 2**40),
    frame_pts=st.none() | st.floats(0, 1e7),
    label=st.sampled_from(["real", "fake", "uncertain"]),
    label_since=times,
    fake_probability=unit,
    raw_probability=unit,
    uncertainty=unit,
    models=st.dictionaries(st.text(min_size=1, max_size=20), unit, max_size=4),
    bbox=st.tuples(finite, finite, finite, finite),
    faces_in_frame=st.integers(1, 64),
    latency_ms=st.floats(0, 1e7),
    failed_models=st.lists(st.text(max_size=20), max_size=3).map(tuple),
)
states = st.builds(
    StreamState,
    stream=stream_ids,
    label=st.sampled_from(["no_face", "real", "fake", "uncertain"]),
    tracks=st.dictionaries(st.integers(0, 2**31), st.sampled_from(["real", "fake", "uncertain"]), max_size=5),
    fake_probability=st.none() | unit,
    updated_at=times,
    voice=st.none() | st.sampled_from(["no_audio", "no_speech", "real", "fake", "uncertain"]),
    spoof_probability=st.none() | unit,
)
voices = st.builds(
    VoiceVerdict,
    stream=stream_ids,
    seq=st.integers(1, 2**31),
    ts=times,
    label=st.sampled_from(["real", "fake", "uncertain", "no_speech"]),
    label_since=times,
    spoof_probability=st.none() | unit,
    raw_probability=st.none() | unit,
    uncertainty=st.none() | unit,
    models=st.dictionaries(st.text(min_size=1, max_size=20), unit, max_size=3),
    speech=unit,
    window_start_pts=st.none() | st.floats(0, 1e7),
    window_end_pts=st.none() | st.floats(0, 1e7),
    window_s=st.floats(0, 4.04),
    window_end_ts=times,
    latency_ms=st.floats(0, 1e7),
    failed_models=st.lists(st.text(max_size=20), max_size=3).map(tuple),
)
alerts = st.builds(
    Alert,
    type=st.text(max_size=30),
    value=finite,
    threshold=finite,
    subject=st.text(max_size=30),
    state=st.sampled_from(["firing", "resolved"]),
    ts=times,
    message=st.text(max_size=200),
    labels=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
)
statuses = st.builds(
    StreamStatus,
    stream=stream_ids,
    status=st.sampled_from(["online", "reconnecting", "offline"]),
    reason=st.none() | st.text(max_size=100),
    ts=times,
)


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


SCHEMA_BY_TOPIC = {
    "verdict": schema("verdict"),
    "state": schema("state"),
    "alerts": schema("alert"),
    "status": schema("status"),
    "config": schema("ha_discovery"),
    "voice": schema("voice"),
}


def published(event) -> list:
    sink = MqttSink(MqttConfig(verdict_interval_s=0))  # never started: messages stay in its outbox
    asyncio.run(sink.publish(event))
    return sink.queued()


@FUZZ
@given(event=verdicts | voices | states | alerts | statuses)
def test_every_payload_is_json_that_matches_its_schema(event):
    for message in published(event):
        kind = message.topic.rsplit("/", 1)[-1]
        text = message.payload.decode("utf-8")
        payload = text if kind == "status" else json.loads(text)
        jsonschema.validate(payload, SCHEMA_BY_TOPIC[kind])


@FUZZ
@given(
    event=verdicts,
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    where=st.sampled_from(["fake_probability", "latency_ms", "bbox", "models"]),
)
def test_a_non_finite_number_never_leaves_as_a_payload(event, bad, where):
    import dataclasses

    value = {"bbox": (bad, 0.0, 1.0, 1.0), "models": {"m": bad}}.get(where, bad)
    broken = dataclasses.replace(event, **{where: value})
    sink = MqttSink(MqttConfig(verdict_interval_s=0, discovery=False))
    try:
        asyncio.run(sink.publish(broken))
    except ValueError as error:
        assert "Out of range float values are not JSON compliant" in str(error)
    else:
        raise AssertionError("a NaN/inf payload was accepted")
    assert not any(m.topic.endswith("/verdict") for m in sink.queued())
