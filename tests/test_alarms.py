"""Alarms a user can trust, through the real pipeline: evidence against the packaged real-face
baseline flags a face changed mid-shot with either face finder and nothing before it; one fake is
one incident, and Home Assistant's "Deepfake detected" goes on once for it over a real Mosquitto,
however its label wavers."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.onset import retouch
from pipeline import BaseDetector, DetectionResult, ModelInfo
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.runtime.runtime import Runtime
from sinks.mqtt import MqttConfig, MqttSink
from stream import make_sample_clip
from tests.helpers import MemorySink, load_detectors, make_config, mesonet_specs
from tests.mqtt_broker import Subscriber, payload_of

ONSET_S = 6.0


class Clocked(BaseDetector):
    """P(fake) by the wall clock: 0.95 inside ``windows`` (epoch seconds), 0.05 outside. Not
    registered (a registered test type would be loaded by every later registry in the process)."""

    def __init__(self) -> None:
        super().__init__("clocked", "cpu")
        self.windows: list[tuple[float, float]] = []
        self.is_model_loaded = True

    def load_model(self, model_path: str | None = None) -> bool:
        return True

    def preprocess(self, image):
        return image

    def predict(self, image) -> DetectionResult:
        now = time.time()
        fake = any(start <= now < end for start, end in self.windows)
        return DetectionResult.from_probability(0.95 if fake else 0.05, self.model_name)

    def get_model_info(self) -> ModelInfo:
        return ModelInfo(name=self.model_name, architecture="clocked")


@pytest.fixture(scope="module")
def retouched_clip(tmp_path_factory):
    """The sample face at a desk's pace, blended toward a blurred copy of itself from ONSET_S on."""
    path = tmp_path_factory.mktemp("alarms") / "retouched.mp4"
    return make_sample_clip(path, 12.0, 25, 640, 480, 20.0, retouch(round(ONSET_S * 25), 2.5, 1.0))


@pytest.mark.weights
@pytest.mark.parametrize("finder", ["blazeface", "mtcnn"])
def test_a_face_changed_mid_shot_is_flagged_once_by_the_default_evidence_and_never_before(
    weights_dir, retouched_clip, finder
):
    config = make_config(weights_dir, [{"id": "desk", "url": str(retouched_clip)}], faces={"model": finder})
    assert config.smoothing.method == "cusum"  # the default, against the packaged baseline
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    assert runtime.smoothing.rule is not None
    asyncio.run(runtime.run())
    verdicts = [v for v in sink.verdicts() if v.frame_pts is not None]
    fake = [v.frame_pts for v in verdicts if v.label == "fake"]
    assert fake and not [t for t in fake if t < ONSET_S], "no alarm before the face changed"
    # read on the clip's clock (as fast as it decodes): measured 0.4-1.0 s on the 2-core machine
    assert fake[0] - ONSET_S < 2.0
    assert {v.incident for v in verdicts if v.label == "fake"} == {1}
    assert all(v.evidence is not None for v in verdicts)
    states = [e for e in sink.events if e.kind == "state"]
    assert any(s.alarm and s.incidents[0]["subject"] == "face" for s in states)
    assert states[-1].label == "no_face" and not states[-1].alarm  # the stream ended: nothing stays alarmed
    assert runtime.monitor.counter(Subject.stream("desk"), Count.INCIDENTS, modality="face") == 1


def test_a_continuous_fake_whose_label_dips_is_one_incident_and_one_on_in_home_assistant(
    mosquitto, creds, weights_dir, face_clip
):
    """A detector that calls the face fake for 3 s, real for 0.4 s, fake for 2.5 s (its P(fake) by
    the wall clock), on a stream played at its own pace: the label leaves fake and comes back, the
    incident stays open through the dip and closes ``quiet_s`` after the last fake; Home
    Assistant's binary sensor (its value_template applied to each state message) is on once. One
    detector alone has no packaged baseline: the ema's labels, said once."""
    config = make_config(
        weights_dir,
        [{"id": "cam1", "url": str(face_clip), "pace": "realtime", "loop": True}],
        incidents={"quiet_s": 1.5},
    )
    config = config.model_copy(update={"detectors": config.detectors[:1]})
    clocked = Clocked()

    async def scenario() -> list:
        async with Subscriber(mosquitto) as sub:
            memory = MemorySink()
            mqtt = MqttSink(MqttConfig(port=mosquitto.port, verdict_interval_s=0.0))
            runtime = Runtime(config, {config.detectors[0].name: clocked}, [memory, mqtt])
            assert runtime.smoothing.rule is None  # the ema's labels
            task = asyncio.create_task(runtime.run())
            while not memory.verdicts():  # the face is tracked: the episode from now
                await asyncio.sleep(0.05)
            start = time.time() + 0.5
            clocked.windows = [(start, start + 3.0), (start + 3.4, start + 5.9)]
            await asyncio.sleep(5.9 + 0.5 + 1.5 + 1.5)
            runtime.stop.set()
            await asyncio.wait_for(task, 30)
            await sub.wait_for(lambda: "offline" in sub.on("/available"))
            discovery = next(payload_of(m) for m in sub.messages if "binary_sensor" in str(m.topic))
            assert discovery["value_template"] == "{{ 'ON' if value_json.alarm else 'OFF' }}"
            labels = [v.label for v in memory.verdicts() if v.scored]
            return [payload_of(m) for m in sub.messages if str(m.topic) == "dfstream/cam1/state"], labels, runtime

    states, labels, runtime = asyncio.run(scenario())
    episodes = sum(1 for a, b in zip(["real", *labels], labels) if b == "fake" and a != "fake")
    assert episodes >= 2, "the label left fake during the dip (else this test shows nothing)"
    sensor = ["ON" if s["alarm"] else "OFF" for s in states]  # Home Assistant's template, per message
    turned_on = sum(1 for a, b in zip(["OFF", *sensor], sensor) if a == "OFF" and b == "ON")
    assert turned_on == 1 and sensor[-1] == "OFF"
    opened = {i["id"] for s in states for i in s["incidents"]}
    assert opened == {1}
    cam = Subject.stream("cam1")
    assert runtime.monitor.counter(cam, Count.INCIDENTS, modality="face") == 1
    assert runtime.monitor.gauge(cam, Gauge.INCIDENTS_OPEN) == 0


@pytest.mark.weights
def test_faces_too_poor_to_judge_are_uncertain_with_the_reason_and_counted(weights_dir, face_clip):
    """Every face of the sample clip is smaller than a 10,000 px minimum: none is scored, each says why."""
    config = make_config(weights_dir, [{"id": "cam", "url": str(face_clip)}], quality={"min_face_px": 10000})
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(runtime.run())
    verdicts = sink.verdicts()
    assert verdicts and {(v.label, v.unjudged, v.scored) for v in verdicts} == {("uncertain", "too_small", False)}
    assert {(v.fake_probability, v.uncertainty, v.incident) for v in verdicts} == {(0.5, 1.0, None)}  # nothing known
    cam = Subject.stream("cam")
    assert runtime.monitor.counter(cam, Count.FACES_UNJUDGED, reason="too_small") == len(verdicts)


@pytest.mark.weights
def test_calibrate_real_only_fits_a_baseline_from_a_folder_that_the_runtime_then_alarms_by(
    weights_dir, face_clip, tmp_path, capsys
):
    """A site's own footage, no labels: the baseline file it writes is the one smoothing.baseline
    reads; fitted for one face finder, it is refused for another, in one line."""
    from core.errors import ConfigError
    from dfstream.cli import main
    from pipeline.judging.evidence import load_baseline

    (tmp_path / "lobby").mkdir()
    (tmp_path / "lobby" / "cam.mp4").write_bytes(face_clip.read_bytes())
    out = tmp_path / "baseline.json"
    meso = mesonet_specs(weights_dir)
    assert main(["calibrate", "--real-only", str(tmp_path / "lobby"), "--detectors", *meso, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 real source(s), 0 labelled fake(s)" in printed and "thresholds, change / absolute" in printed
    baseline = load_baseline(out)
    assert set(baseline.real) == {"blazeface"} and baseline.real["blazeface"].seconds > 5
    assert baseline.fits(["meso4", "mesoinception4"], "weighted_average")
    config = make_config(weights_dir, [{"id": "cam", "url": str(face_clip)}], smoothing={"baseline": str(out)})
    runtime = Runtime(config, load_detectors(config), [MemorySink()])
    assert runtime.smoothing.rule is not None and runtime.smoothing.rule.real == baseline.real["blazeface"]
    other = config.model_copy(update={"faces": config.faces.model_copy(update={"model": "mtcnn"})})
    with pytest.raises(ConfigError, match=r"smoothing.baseline .*with blazeface; these are .* with mtcnn"):
        Runtime(other, load_detectors(other), [MemorySink()])
