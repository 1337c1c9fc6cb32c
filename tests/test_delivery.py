"""The whole path with real parts: the runtime and Prometheus (/metrics scraped and parsed while the
pipeline runs). Broker failures under load are in tests/reliability/test_broker_faults.py."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from pipeline.models.faces.finder import FaceDetector
from pipeline.monitoring.keys import END_TO_END, FACES, Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.runtime import Runtime
from sinks import PrometheusConfig, PrometheusExporter
from tests.helpers import MemorySink, load_detectors, make_config, run_for, scrape

pytestmark = pytest.mark.weights


def status(port: int, path: str) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_metrics_move_while_the_pipeline_runs(weights_dir, face_clip):
    config = make_config(weights_dir, [{"id": "cam1", "url": str(face_clip), "pace": "realtime"}])
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(PrometheusConfig(port=0), monitor).start()
    assert exporter.config.host == "127.0.0.1"
    try:
        assert status(exporter.port, "/healthz") == 200 and status(exporter.port, "/readyz") == 503

        async def scenario():
            runtime = Runtime(config, load_detectors(config), [], monitor)
            task = asyncio.create_task(runtime.run())
            await asyncio.sleep(2.5)
            first, ready = scrape(exporter.port), status(exporter.port, "/readyz")
            await asyncio.sleep(1.5)
            second = scrape(exporter.port)
            runtime.stop.set()
            await task
            return first, ready, second

        first, ready, second = asyncio.run(scenario())
    finally:
        exporter.close()
    assert ready == 200
    for name in (
        "dfstream_frames_decoded_total{stream=cam1}",
        "dfstream_verdicts_total{label=real,stream=cam1}",
        "dfstream_end_to_end_latency_seconds_count{}",
        "dfstream_detector_batch_size_count{detector=meso4}",
    ):
        assert second[name] > first[name] > 0, name
    assert first["dfstream_stream_up{stream=cam1}"] == 1 and first["dfstream_models_ready{}"] == 2
    assert "dfstream_end_to_end_latency_seconds_bucket{le=0.15}" in first
    assert first["dfstream_stream_expected_fps{stream=cam1}"] == pytest.approx(30)
    assert second["process_resident_memory_bytes{}"] > 50e6


class FailingFaces(FaceDetector):
    """The real MTCNN, failing every other batch the way a CUDA or driver error would."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        if self.calls % 2 == 0:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().detect(images)


def test_face_detection_errors_are_counted_on_metrics(weights_dir, short_clip):
    """Each frame whose face detection failed is counted under its stream, and the stream goes on."""
    config = make_config(
        weights_dir, [{"id": "cam1", "url": str(short_clip), "pace": "asap"}], faces={"detect_every": 1}
    )
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(PrometheusConfig(port=0), monitor).start()
    sink = MemorySink()
    try:
        runtime = Runtime(config, load_detectors(config), [sink], monitor, face_detector=FailingFaces(config.faces))
        asyncio.run(run_for(runtime, None))
        metrics = scrape(exporter.port)
    finally:
        exporter.close()
    failed = metrics["dfstream_face_errors_total{stream=cam1}"]
    assert failed == monitor.counter(Subject.stream("cam1"), Count.FACE_ERRORS) >= 20  # about every other of 60 frames
    assert metrics["dfstream_frames_processed_total{stream=cam1}"] == 60 and len(sink.verdicts("cam1")) > 20


def test_streams_named_like_stages_keep_their_own_numbers(weights_dir, short_clip):
    """A stream called ``faces`` or ``runtime`` is a stream: its numbers neither merge into the face
    stage's nor clobber the runtime's."""
    streams = [{"id": name, "url": str(short_clip), "pace": "asap"} for name in ("faces", "runtime", "end_to_end")]
    config = make_config(weights_dir, streams)
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(PrometheusConfig(port=0), monitor).start()
    try:
        runtime = Runtime(config, load_detectors(config), [], monitor)
        asyncio.run(run_for(runtime, None))
        metrics = scrape(exporter.port)
    finally:
        exporter.close()
    for name in ("faces", "runtime", "end_to_end"):
        assert metrics[f"dfstream_frames_decoded_total{{stream={name}}}"] == 60, name
        assert monitor.get_model_metrics(name, kind="stream")["kind"] == "stream"
    assert metrics["dfstream_models_ready{}"] == 2
    face_batches = monitor.histograms(FACES)[1]
    assert face_batches.total == 3 * 60 / 3  # every 3rd frame of each stream went to MTCNN: nothing else in that series
    assert metrics["dfstream_end_to_end_latency_seconds_count{}"] == monitor.get_model_metrics(END_TO_END)["calls"] > 0
