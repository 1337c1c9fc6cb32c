"""The streaming runtime: every configured stream, judged live, verdicts to every sink.

    Source (thread) ─frames─▶ detect loop ─(frame, tracks)─▶ score loop ─verdicts─▶ outboxes ─▶ sinks
                                   │ faces batcher (all streams)   │ one batcher per detector (all streams)

Per stream two tasks: the detect loop runs face detection (every ``detect_every`` frames) and
tracking, the score loop crops, scores, fuses and smooths; frame n+1's faces are found while
frame n is scored. The queue between them is small and blocking, so when the pipeline is behind
the pressure reaches the source, which drops its oldest frame (counted). Everything numeric goes
to the PerformanceMonitor, which Prometheus reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np

from stream import Frame, Source, SourceStatus, StreamConfig

from .batching import Batcher
from .config import RuntimeConfig
from .detections import Detections
from .detectors import BUILTIN_DETECTORS, TorchDetector
from .ensemble import EnsembleManager
from .errors import DfstreamError, InsufficientModelsError, ModelLoadError
from .events import Alert, Event, StreamState, StreamStatus, Verdict, stream_label
from .faces import FaceDetector
from .monitor import PerformanceMonitor
from .sink import Outbox, Sink
from .smoothing import TrackSmoother
from .tracking import IouTracker
from .weights import resolve_weights

log = logging.getLogger(__name__)


def load_detectors(config: RuntimeConfig) -> dict[str, TorchDetector]:
    """Build and load every configured detector; any failure stops the start (never random weights)."""
    detectors = {}
    for i, dc in enumerate(config.detectors):
        cls = BUILTIN_DETECTORS[dc.type]
        try:
            weights = str(resolve_weights(dc.weights or cls.default_weights))  # type: ignore[attr-defined]
            detector = cls(model_name=dc.name, device=dc.device, weights=weights, threshold=dc.threshold, fp16=dc.fp16)  # type: ignore[call-arg]
            detector.load_model()
        except DfstreamError as exc:
            raise ModelLoadError(f"detectors[{i}] ({dc.name}): {exc}") from exc
        detectors[dc.name] = detector  # type: ignore[assignment]
    return detectors


def _share_cpu_threads(workers: int) -> None:
    """Faces and every detector run at the same time, each in its own thread: give each a share of
    the cores instead of letting every one spread over all of them (measured on 2 cores: 1 intra-op
    thread each raised a stream from 45 to 48 fps, and 24 to 29 fps with faces on every frame)."""
    import os

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


class _RareLog:
    """Log a recurring problem at its 1st, 10th, 100th, ... occurrence: visible, never a flood
    (the exact count is in the monitor)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, key: str, message: str, *args: object) -> None:
        n = self._seen[key] = self._seen.get(key, 0) + 1
        if n == 10 ** (len(str(n)) - 1):
            log.warning(message + (f" (x{n})" if n > 1 else ""), *args)


class _StreamCounters:
    """Source counters into the monitor: one set of numbers."""

    def __init__(self, monitor: PerformanceMonitor, stream_id: str):
        self.monitor, self.stream_id = monitor, stream_id

    def count(self, key: str, n: int = 1) -> None:
        self.monitor.count(self.stream_id, key, n, kind="stream")

    def gauge(self, key: str, value: float) -> None:
        self.monitor.set_gauge(self.stream_id, key, value, kind="stream")


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        detectors: dict[str, TorchDetector],
        sinks: list[Sink],
        monitor: PerformanceMonitor | None = None,
        face_detector: FaceDetector | None = None,
    ):
        self.config = config
        self.detectors = detectors
        _share_cpu_threads(len(detectors) + 1)
        self.monitor = monitor or PerformanceMonitor(config.monitoring)
        self.monitor.set_gauge("runtime", "models_ready", len(detectors), kind="stage")
        self.ensemble = EnsembleManager(config.ensemble.to_ensemble_config(config.detectors))
        for name, detector in detectors.items():
            self.ensemble.add_model(name, detector)
        if config.ensemble.calibration:
            self.ensemble.load_calibration(config.ensemble.calibration)
        self.face_detector = face_detector or FaceDetector(config.faces)
        self.outboxes = [Outbox(s, config.sinks.outbox_capacity, self._sink_dropped) for s in sinks]
        self.workers = [StreamWorker(self, sc) for sc in config.streams]
        self.faces: Batcher | None = None
        self.batchers: dict[str, Batcher] = {}
        self.stop = asyncio.Event()

    async def run(self) -> None:
        """Until every stream has ended or ``stop`` is set; then drain and flush the sinks."""
        for outbox in self.outboxes:
            await outbox.start()
        fc = self.config.faces
        async with contextlib.AsyncExitStack() as stack:
            self.faces = await stack.enter_async_context(
                Batcher("faces", self.face_detector.detect, fc.max_batch, fc.max_wait_ms, self._observe_batch)
            )
            for dc in self.config.detectors:
                detector = self.detectors[dc.name]
                self.batchers[dc.name] = await stack.enter_async_context(
                    Batcher(dc.name, detector.score_crops, dc.max_batch, dc.max_wait_ms, self._observe_batch)
                )
            alerts = asyncio.create_task(self._alerts(), name="dfstream.alerts")
            try:
                await asyncio.gather(*(w.run() for w in self.workers))
            finally:
                alerts.cancel()
                await asyncio.gather(alerts, return_exceptions=True)
        # side by side: one stuck sink must not add its timeout to the others'
        timeout = self.config.sinks.drain_timeout_s
        left = await asyncio.gather(*(outbox.aclose(timeout) for outbox in self.outboxes))
        for outbox, n in zip(self.outboxes, left):
            if n:
                self.monitor.count(f"sink:{outbox.sink.name}", "dropped:shutdown", n, kind="stage")

    def publish(self, event: Event) -> None:
        for outbox in self.outboxes:
            outbox.put(event)

    def _sink_dropped(self, sink: str) -> None:
        self.monitor.count(f"sink:{sink}", "dropped:outbox_full", kind="stage")

    def _observe_batch(self, name: str, size: int, seconds: float, ok: bool) -> None:
        self.monitor.record_inference(name, seconds, images=size, success=ok, kind="stage" if name == "faces" else "model")

    async def _alerts(self) -> None:
        """The monitor's threshold alerts, published as firing / resolved transitions."""
        active: dict[tuple[str, str], dict[str, Any]] = {}
        interval = min(5.0, self.config.monitoring.log_interval)
        while True:
            await asyncio.sleep(interval)
            current = {(a["type"], a["subject"]): a for a in self.monitor.check_alerts()}
            for key, alert in current.items():
                if key not in active:
                    self.publish(Alert(alert["type"], alert["value"], alert["threshold"], alert["subject"], "firing", time.time(), alert["message"]))
            for key, alert in active.items():
                if key not in current:
                    self.publish(Alert(alert["type"], alert["value"], alert["threshold"], alert["subject"], "resolved", time.time(), alert["message"]))
            active = current


class StreamWorker:
    """One stream's whole path from source to verdict (the unit that could become a Ray actor)."""

    def __init__(self, runtime: Runtime, config: StreamConfig):
        self.runtime = runtime
        self.config = config
        faces = runtime.config.faces
        self.tracker = IouTracker(faces.iou_threshold, faces.max_missed)
        self.smoothers: dict[int, TrackSmoother] = {}
        self.track_labels: dict[int, str] = {}
        self.track_probabilities: dict[int, float] = {}
        self.state: str | None = None
        self.verdict_seq = 0
        self.frames_seen = 0
        self.live = config.live
        self.rare = _RareLog()

    async def run(self) -> None:
        monitor = self.runtime.monitor
        monitor.set_gauge(self.config.id, "up", 0)
        source = Source(self.config, on_status=self._on_status, counters=_StreamCounters(monitor, self.config.id))
        async with source:
            stopper = asyncio.create_task(self._stop_on_request(source))
            queue: asyncio.Queue = asyncio.Queue(maxsize=2)
            try:
                await asyncio.gather(self._detect(source, queue), self._score(queue))
            finally:
                stopper.cancel()
            # drained: the stream shows no face any more, then (leaving the block) goes offline
            self.track_labels.clear()
            self._publish_state()

    async def _stop_on_request(self, source: Source) -> None:
        await self.runtime.stop.wait()
        source.request_stop()

    async def _detect(self, source: Source, queue: asyncio.Queue) -> None:
        runtime, every = self.runtime, self.runtime.config.faces.detect_every
        try:
            async for frame in source:
                index = self.frames_seen
                self.frames_seen += 1
                runtime.monitor.set_gauge(self.config.id, "queue_depth", source.qsize())
                if index % every == 0:
                    try:
                        found = await runtime.faces.submit(frame.image)  # type: ignore[union-attr]
                    except Exception as exc:
                        runtime.monitor.count(self.config.id, "errors:faces")
                        self.rare("faces", "%s: face detection failed: %s", self.config.id, exc)
                        found = Detections.empty()
                    tracked, closed = self.tracker.update(found, index)
                    runtime.monitor.count(self.config.id, "faces_detected", len(found))
                    runtime.monitor.record_latency("decode_to_faces", time.monotonic() - frame.arrival_mono, kind="stage")
                else:
                    tracked, closed = self.tracker.carry(index), []
                await queue.put((frame, tracked, closed))
        finally:
            await queue.put(None)

    async def _score(self, queue: asyncio.Queue) -> None:
        while (item := await queue.get()) is not None:
            frame, tracked, closed = item
            for track_id in closed:
                self.smoothers.pop(track_id, None)
                self.track_labels.pop(track_id, None)
                self.track_probabilities.pop(track_id, None)
            if len(tracked):
                await self._judge(frame, tracked)
            self.runtime.monitor.count(self.config.id, "frames_processed")
            self._publish_state()

    async def _judge(self, frame: Frame, tracked: Detections) -> None:
        runtime = self.runtime
        height, width = frame.image.shape[:2]
        boxes = np.clip(tracked.xyxy, 0, [width, height, width, height])
        names = list(runtime.batchers)
        started = time.monotonic()
        submissions = [
            runtime.batchers[name].submit((frame.image, tuple(float(v) for v in box))) for box in boxes for name in names
        ]
        answers = await asyncio.gather(*submissions, return_exceptions=True)
        scored = time.monotonic()
        runtime.monitor.record_latency("faces_to_scores", scored - started, kind="stage")
        for j, track_id in enumerate(tracked.track_ids):
            scores: dict[str, float] = {}
            failed: dict[str, str] = {}
            for k, name in enumerate(names):
                answer = answers[j * len(names) + k]
                if isinstance(answer, BaseException):
                    failed[name] = f"{type(answer).__name__}: {answer}"
                    runtime.monitor.count(name, "errors", kind="model")
                else:
                    scores[name] = float(answer)
            try:
                fused = runtime.ensemble.fuse(scores, failed)
            except InsufficientModelsError as exc:
                runtime.monitor.count(self.config.id, "verdicts_skipped")
                self.rare("no_verdict", "%s: no verdict for track %d: %s", self.config.id, track_id, exc)
                continue
            self._emit(frame, int(track_id), boxes[j], len(tracked), fused, failed)
        runtime.monitor.record_latency("scores_to_verdict", time.monotonic() - scored, kind="stage")

    def _emit(self, frame: Frame, track_id: int, box: np.ndarray, faces: int, fused: Any, failed: dict[str, str]) -> None:
        runtime = self.runtime
        # smoothing runs on stream time for files read asap, on arrival time for live input
        t = frame.pts if (not self.live and frame.pts is not None) else frame.arrival_mono
        smoother = self.smoothers.setdefault(track_id, TrackSmoother(runtime.config.smoothing))
        smoothed = smoother.update(fused.fake_probability, fused.uncertainty or 0.0, t)
        now = time.monotonic()
        latency = now - frame.arrival_mono
        self.verdict_seq += 1
        verdict = Verdict(
            stream=self.config.id,
            track_id=track_id,
            seq=self.verdict_seq,
            ts=time.time(),
            frame_seq=frame.seq,
            frame_pts=frame.pts,
            label=smoothed.label,
            label_since=frame.arrival_ts - (t - smoothed.label_since),
            fake_probability=round(smoothed.probability, 6),
            raw_probability=round(fused.fake_probability, 6),
            uncertainty=round(smoothed.uncertainty, 6),
            models={k: round(v, 6) for k, v in fused.model_scores.items()},
            bbox=tuple(float(v) for v in box),  # type: ignore[arg-type]
            faces_in_frame=faces,
            latency_ms=round(latency * 1000.0, 2),
            failed_models=tuple(sorted(failed)),
        )
        self.track_labels[track_id] = smoothed.label
        self.track_probabilities[track_id] = smoothed.probability
        runtime.monitor.record_latency("end_to_end", latency, kind="stage")
        runtime.monitor.count(self.config.id, f"verdicts:{smoothed.label}")
        runtime.publish(verdict)

    def _publish_state(self) -> None:
        live = set(self.tracker.track_ids)
        labels = {tid: label for tid, label in self.track_labels.items() if tid in live}
        label = stream_label(labels)
        self.runtime.monitor.set_gauge(self.config.id, "active_tracks", len(labels))
        if label != self.state:
            self.state = label
            top = max((p for tid, p in self.track_probabilities.items() if tid in labels), default=None)
            self.runtime.publish(StreamState(self.config.id, label, labels, None if top is None else round(top, 6), time.time()))  # type: ignore[arg-type]

    def _on_status(self, stream_id: str, status: SourceStatus, reason: str | None) -> None:
        self.runtime.monitor.set_gauge(stream_id, "up", 1 if status is SourceStatus.ONLINE else 0)
        self.runtime.publish(StreamStatus(stream_id, status.value, reason, time.time()))
