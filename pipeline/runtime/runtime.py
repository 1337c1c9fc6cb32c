"""The streaming runtime: every configured stream, judged live, verdicts to every sink.

    Source (thread) ─frames─▶ detect loop ─(frame, tracks)─▶ score loop ─verdicts─▶ outboxes ─▶ sinks
                                   │ faces batcher (all streams)   │ one batcher per detector (all streams)

The runtime owns what streams share (the face batcher, one batcher per detector, the ensemble, the
sinks' outboxes) and offers it to each ``StreamWorker`` through the ``StreamHost`` interface. Faces
and crops reach their backends only through ``submit(...)`` (``backends.py``): in-process batchers,
or, for a model the Ray engine serves from a shared pool (``runtime.deployments``), its deployment.
Streams can be added and removed while it runs (calls; the Ray engine's node runtimes).
Everything numeric goes to the PerformanceMonitor, which Prometheus reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import numpy as np

from core.errors import ConfigError, LifecycleError, one_line
from pipeline.judging.ensemble import EnsembleResult, build_ensemble
from pipeline.judging.listening import Window, voice_smoothing
from pipeline.judging.smoothing import Smoothing
from pipeline.models.audio.scorer import VoiceModel
from pipeline.models.detections import Box, Detections
from pipeline.models.detector import BaseDetector
from pipeline.models.faces.finder import FaceDetector
from pipeline.monitoring.keys import FACES, FACES_TO_SCORES, RUNTIME, Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.backends import Answers, Backends, Crop, Submit
from pipeline.runtime.batching import Batcher
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.events import Alert, Event
from pipeline.runtime.live import LiveTap
from pipeline.runtime.numbering import Counting, Numbering
from pipeline.runtime.overload import Governor
from pipeline.runtime.sink import Outbox, Sink
from pipeline.runtime.worker import StreamWorker
from stream.calls import CallHub
from stream.config import StreamConfig

log = logging.getLogger(__name__)


def share_cpu_threads(workers: int) -> None:
    """Faces and every detector run at the same time, each in its own thread: give each a share of
    the cores instead of letting every one spread over all of them (measured on 2 cores: 1 intra-op
    thread each raised a stream from 45 to 48 fps, and 24 to 29 fps with faces on every frame).
    Process-wide, so the process's owner (the command, a benchmark) decides, not the runtime."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


class Runtime:
    def __init__(
        self,
        config: PipelineConfig,
        detectors: dict[str, BaseDetector],
        sinks: list[Sink],
        monitor: PerformanceMonitor | None = None,
        face_detector: FaceDetector | None = None,
        tap: LiveTap | None = None,
        served: Mapping[str, Submit[Any, float]] | None = None,
        numbering: Numbering | None = None,
        voices: dict[str, VoiceModel] | None = None,
        calls: CallHub | None = None,
    ):
        """``detectors``, ``voices`` (the loaded ``audio_detectors``) and ``face_detector`` run here,
        in batchers; ``served``: the models (by name) that run elsewhere instead, reached through
        their ``submit`` (the Ray engine's deployments). ``calls``: where ``whip://`` streams get
        their sessions."""
        self.config = config
        self.detectors = detectors
        self.voices = voices or {}
        self.served = dict(served or {})
        for kind, configured, loaded in (
            ("detectors", config.detectors, detectors),
            ("audio_detectors", config.audio_detectors, self.voices),
        ):
            missing = [c.name for c in configured if c.name not in loaded and c.name not in self.served]
            if missing:
                raise ConfigError(f"{kind}: {', '.join(missing)} neither loaded here nor served elsewhere")
        self.voice_ensemble = build_ensemble(config.voice.ensemble, config.audio_detectors, None)
        self.monitor = monitor or PerformanceMonitor(config.monitoring)
        self.monitor.set_gauge(RUNTIME, Gauge.MODELS_READY, len(config.detectors))
        # fusion needs only the configured weights: the detector objects only where all are here
        self.ensemble = build_ensemble(config.ensemble, config.detectors, None if self.served else detectors)
        self.face_detector = face_detector or FaceDetector(config.faces)
        self.numbering = numbering or Counting()
        self.outboxes = [
            Outbox(s, config.sinks.outbox_capacity, self._sink_dropped, config.sinks.drain_timeout_s) for s in sinks
        ]
        self.stop = asyncio.Event()
        self.tap = tap or LiveTap()  # the live view: frames are handed over only while someone watches
        self.calls = calls
        # one level for every stream: under overload they all shed the same work
        self.governor = Governor(config.overload) if config.overload.enabled else None
        self.smoothing = Smoothing.build(
            config.smoothing,
            config.faces.model,
            [d.type for d in config.detectors],
            config.ensemble.fusion_method.value,
        )
        # the voice's evidence against real speech (a baseline of its own, fitted on recordings)
        self.voice_smoothing = (
            voice_smoothing(config.voice, [d.type for d in config.audio_detectors]) if config.audio_detectors else None
        )
        self.workers = [self._worker(sc, self.stop) for sc in config.streams]
        self._ended = False
        self.added: dict[str, asyncio.Task[None]] = {}  # streams added while running, until they end
        self._stops: dict[str, asyncio.Event] = {}  # each added stream's own stop
        self.backends: Backends | None = None  # while run() runs (and after: the local batchers keep their batch sizes)

    def _worker(self, stream: StreamConfig, stop: asyncio.Event) -> StreamWorker:
        listening = bool(self.config.audio_detectors)
        config = self.config
        return StreamWorker(
            stream,
            config.faces,
            config.judge,
            self.smoothing,
            self,
            self.monitor,
            stop,
            self.tap,
            self.numbering,
            config.voice if listening else None,
            self.calls,
            self.governor,
            config.incidents,
            config.quality,
        )

    async def run(self, keep_open: bool = False) -> None:
        """Until every stream has ended or ``stop`` is set; then drain and flush the sinks. ``keep_open``
        (``dfstream serve``): until ``stop`` only, so streams can still be added (``add_stream``)."""
        opened: list[Outbox] = []
        try:
            for outbox in self.outboxes:  # a sink that fails to open closes the ones opened before it
                await outbox.__aenter__()
                opened.append(outbox)
            async with self._backends() as backends:
                self.backends = backends
                loops = [
                    asyncio.create_task(self._alerts(), name="dfstream.alerts"),
                    asyncio.create_task(self._stop_added(), name="dfstream.stop"),
                ]
                if self.governor is not None:
                    loops.append(asyncio.create_task(self.governor.run(), name="dfstream.load"))
                try:
                    await asyncio.gather(*(w.run() for w in self.workers))
                    if keep_open:
                        await self.stop.wait()
                    await asyncio.gather(*self.added.values(), return_exceptions=True)
                finally:
                    for loop in loops:
                        loop.cancel()
                    await asyncio.gather(*loops, return_exceptions=True)
                    self._ended = True
        finally:
            # side by side: one stuck sink must not add its drain timeout to the others'
            await asyncio.gather(*(outbox.__aexit__(None, None, None) for outbox in opened))

    def add_stream(self, stream: StreamConfig) -> asyncio.Task[None]:
        """Judge one more stream while running; its task ends with the stream (or ``remove_stream``)."""
        if self.backends is None or self._ended or self.stop.is_set():
            raise LifecycleError("the runtime is not running: a stream can only be added while it runs")
        if stream.id in self.added or any(w.config.id == stream.id for w in self.workers):
            raise ConfigError(f"stream {stream.id!r} exists already")
        stop = self._stops[stream.id] = asyncio.Event()
        task = asyncio.create_task(self._worker(stream, stop).run(), name=f"dfstream[{stream.id}].worker")
        self.added[stream.id] = task
        task.add_done_callback(functools.partial(self._stream_ended, stream.id))
        return task

    async def remove_stream(self, stream_id: str, timeout_s: float = 5.0) -> None:
        """Stop an added stream as ``stop`` stops them all (its last state published, its source
        closed); cancelled if it has not ended within ``timeout_s``."""
        task = self.added.get(stream_id)
        if task is None:
            return
        self._stops[stream_id].set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        except Exception:  # noqa: BLE001 -- its failure is logged where it ends (_stream_ended)
            pass

    def _stream_ended(self, stream_id: str, task: asyncio.Task[None]) -> None:
        self.added.pop(stream_id, None)
        self._stops.pop(stream_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("stream %s failed: %s", stream_id, one_line(task.exception(), with_type=True))

    async def _stop_added(self) -> None:
        await self.stop.wait()
        for stop in self._stops.values():
            stop.set()

    @contextlib.asynccontextmanager
    async def _backends(self) -> AsyncIterator[Backends]:
        """A batcher for faces and for every model loaded here; the served ones as they are."""
        fc = self.config.faces
        assert self.face_detector is not None
        async with contextlib.AsyncExitStack() as stack:
            faces = await stack.enter_async_context(
                Batcher("faces", self.face_detector.detect, fc.max_batch, fc.max_wait_ms, self._observe_faces)
            )
            models: dict[str, Submit[Crop, float]] = {}
            for dc in self.config.detectors:
                if dc.name in self.served:
                    models[dc.name] = self.served[dc.name]
                    continue
                models[dc.name] = await stack.enter_async_context(
                    Batcher(
                        dc.name, self.detectors[dc.name].score_found, dc.max_batch, dc.max_wait_ms, self._observe_model
                    )
                )
            voices: dict[str, Submit[np.ndarray, float]] = {}
            for ac in self.config.audio_detectors:
                if ac.name in self.served:
                    voices[ac.name] = self.served[ac.name]
                    continue
                voices[ac.name] = await stack.enter_async_context(
                    Batcher(ac.name, self.voices[ac.name].score, ac.max_batch, ac.max_wait_ms, self._observe_model)
                )
            yield Backends(faces, models, voices)

    # ---- StreamHost: what every StreamWorker gets ------------------------------------------------------
    async def find_faces(self, image: np.ndarray) -> Detections:
        assert self.backends is not None, "find_faces outside run()"
        return await self.backends.faces.submit(image)

    async def score_faces(
        self, image: np.ndarray, boxes: list[Box], landmarks: list[np.ndarray | None] | None = None
    ) -> list[Answers]:
        """Every model's P(fake) for every face (its landmarks, where the finder gave them, for the
        detectors whose crop is aligned); a model that fails one face is counted and named."""
        started = time.monotonic()
        assert self.backends is not None, "score_faces outside run()"
        models = self.backends.models
        names = list(models)
        answers = await asyncio.gather(
            *(
                asyncio.gather(*(models[n].submit((image, box, points)) for n in names), return_exceptions=True)
                for box, points in zip(boxes, landmarks or [None] * len(boxes))
            )
        )
        faces = [self._answers(names, per_model) for per_model in answers]
        self.monitor.record_latency(FACES_TO_SCORES, time.monotonic() - started)
        return faces

    def fuse(self, face: Answers) -> EnsembleResult:
        return self.ensemble.fuse(face.scores, face.failed)

    async def score_voice(self, window: Window) -> Answers:
        """Every voice model's P(spoof) for one window; a model that fails is counted and named."""
        assert self.backends is not None, "score_voice outside run()"
        voices = self.backends.voices
        names = list(voices)
        answers = await asyncio.gather(*(voices[n].submit(window.samples) for n in names), return_exceptions=True)
        return self._answers(names, answers)

    def _answers(self, names: list[str], answers: list[object]) -> Answers:
        """Each model's probability, or its error (counted against the model)."""
        scores: dict[str, float] = {}
        failed: dict[str, str] = {}
        for name, answer in zip(names, answers):
            if isinstance(answer, BaseException):
                failed[name] = f"{type(answer).__name__}: {answer}"
                self.monitor.count(Subject.model(name), Count.CROP_ERRORS)
            else:
                scores[name] = float(answer)  # type: ignore[arg-type]
        return Answers(scores, failed)

    def fuse_voice(self, answers: Answers) -> EnsembleResult:
        return self.voice_ensemble.fuse(answers.scores, answers.failed)

    def publish(self, event: Event) -> None:
        for outbox in self.outboxes:
            outbox.put(event)

    # ---- internals ----------------------------------------------------------------------------------
    def _sink_dropped(self, sink: str, n: int, reason: str) -> None:
        self.monitor.count(Subject.sink(sink), Count.EVENTS_DROPPED, n, reason=reason)

    def _observe_faces(self, name: str, size: int, seconds: float, ok: bool) -> None:
        self.monitor.record_inference(FACES, seconds, images=size, success=ok)

    def _observe_model(self, name: str, size: int, seconds: float, ok: bool) -> None:
        self.monitor.record_inference(Subject.model(name), seconds, images=size, success=ok)

    async def _alerts(self) -> None:
        """The monitor's threshold alerts, published as firing / resolved transitions; the report
        behind them is built in a thread, off the event loop."""
        active: dict[tuple[str, str], dict[str, Any]] = {}
        interval = min(5.0, self.config.monitoring.log_interval)
        while True:
            await asyncio.sleep(interval)
            current = {(a["type"], a["subject"]): a for a in await asyncio.to_thread(self.monitor.check_alerts)}
            for key, alert in current.items():
                if key not in active:
                    self.publish(_alert_event(alert, "firing"))
            for key, alert in active.items():
                if key not in current:
                    self.publish(_alert_event(alert, "resolved"))
            active = current


def _alert_event(alert: dict[str, Any], state: Literal["firing", "resolved"]) -> Alert:
    return Alert(
        alert["type"], alert["value"], alert["threshold"], alert["subject"], state, time.time(), alert["message"]
    )
