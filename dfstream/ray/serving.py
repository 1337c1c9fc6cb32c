"""Shared model pools: a Ray Serve deployment for each detector or voice model named in
``runtime.deployments`` (a GPU pool that every node runtime's streams use, say), batched across the
cluster with ``@serve.batch``. Every other model runs in each node runtime (``nodes``).

What travels: to a detector only the region around a face its preprocessing reads (its own crop
margin, plus ``SLACK``), never a whole frame. The replica runs the very code the local runtime's
batchers run (``BaseDetector.score_found``) in one worker thread (it is thread-confined), so scores
are the same numbers on both engines. A call that does not answer within ``CALL_TIMEOUT_S`` fails
(counted, and named in the verdict's ``failed_models``); after a failure the pool is skipped for
``AWAY_S`` before it is tried again, so a lost replica costs a stream its scores, never its pace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import ray
from ray import serve

from core.errors import BackendUnavailableError
from core.lifecycle import State
from dfstream.config import DeploymentConfig
from dfstream.ray.metrics import Reporter
from pipeline.models.audio.config import AudioDetectorConfig
from pipeline.models.config import DetectorConfig
from pipeline.models.preprocessing import margin_window
from pipeline.monitoring.keys import Subject
from pipeline.monitoring.monitor import MonitoringConfig, PerformanceMonitor
from pipeline.runtime.backends import Crop

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 2.0
AWAY_S = 1.0
SLACK = 0.05  # beyond the detector's own margin: the region always holds the crop it cuts
ALIGNED_REACH = 0.6  # an upright aligned face (margin 0.15) spans about 2 box widths: 0.5 each side, and some


def detector_app(name: str) -> str:
    return f"dfstream-detector-{name}"


def voice_app(name: str) -> str:
    return f"dfstream-voice-{name}"


def _threads(num_cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(num_cpus)))


class _Replica:
    """What every replica shares: one inference thread (the models are thread-confined), its own
    monitor and the reporter that sends it to the hub, and the batch size its config says."""

    def _start(
        self,
        name: str,
        subject: Subject,
        batched: Any,  # the @serve.batch method
        max_batch: int,
        max_wait_ms: float,
        namespace: str,
        interval_s: float,
    ) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dfstream[{name}].infer")
        self.monitor = PerformanceMonitor(MonitoringConfig())
        self.subject = subject
        batched.set_max_batch_size(max_batch)
        batched.set_batch_wait_timeout_s(max_wait_ms / 1000.0)
        self.reporter = Reporter(namespace, f"{name}/{_replica_id()}", self.monitor, interval_s)

    async def _infer(self, fn: Any, items: list[Any]) -> Any:
        """``fn(items)`` in the inference thread, timed into the monitor."""
        if self.reporter.state is State.NEW:  # no block to live in: entered with the first request
            await self.reporter.__aenter__()
        start = time.perf_counter()
        ok = False
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.pool, fn, items)
            ok = True
            return result
        finally:
            self.monitor.record_inference(self.subject, time.perf_counter() - start, images=len(items), success=ok)

    def process(self) -> dict[str, Any]:
        """Where this replica runs: the benchmark sums memory per node from it."""
        import os

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


class DetectorPool(_Replica):
    """One detector: P(fake) for face regions, exactly as the local batcher scores full frames."""

    def __init__(self, detector: dict[str, Any], num_cpus: float, offline: bool, namespace: str, interval_s: float):
        from pipeline.models.registry import ModelRegistry
        from pipeline.models.weights import ensure_available, load_manifest

        _threads(num_cpus)
        self.config = DetectorConfig.model_validate(detector)
        if self.config.weights in load_manifest():
            ensure_available([self.config.weights], offline, log.info)
        self.detector = ModelRegistry().load_configured([self.config])[self.config.name]
        c = self.config
        self._start(c.name, Subject.model(c.name), self.score, c.max_batch, c.max_wait_ms, namespace, interval_s)

    def crop_rule(self) -> tuple[float, str]:
        """(margin, rounding) of the crop this detector cuts around a box."""
        preprocessor = getattr(self.detector, "preprocessor", None)
        if preprocessor is None:
            return 0.0, "outward"
        config = preprocessor.config
        # an aligned crop reaches past the box it is found in (a face turned, the template's margin):
        # the region sent is cut with at least ALIGNED_REACH of the box on each side
        margin = max(config.face_crop_margin, ALIGNED_REACH) if config.face_crop_align else config.face_crop_margin
        return margin, config.face_crop_rounding

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def score(self, crops: list[Crop]) -> list[float]:
        return [float(s) for s in await self._infer(self.detector.score_found, crops)]


class VoicePool(_Replica):
    """One voice model: P(spoof) for 16 kHz windows, exactly as the local batcher scores them."""

    def __init__(self, voice: dict[str, Any], num_cpus: float, offline: bool, namespace: str, interval_s: float):
        from pipeline.models.audio.config import AudioDetectorConfig
        from pipeline.models.audio.loading import load_voice_models
        from pipeline.models.weights import ensure_available, load_manifest

        _threads(num_cpus)
        self.config = AudioDetectorConfig.model_validate(voice)
        if self.config.weights_name in load_manifest():
            ensure_available([self.config.weights_name], offline, log.info)
        self.model = load_voice_models([self.config])[self.config.name]
        c = self.config
        self._start(c.name, Subject.model(c.name), self.score, c.max_batch, c.max_wait_ms, namespace, interval_s)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.0)
    async def score(self, windows: list[np.ndarray]) -> list[float]:
        return [float(s) for s in await self._infer(self.model.score, windows)]


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_tag
    except Exception:  # outside a replica (tests of the class itself)
        return "local"


def deployment_options(section: DeploymentConfig, device: str, max_batch: int, name: str) -> dict[str, Any]:
    """Serve's options for one deployment. ``max_ongoing_requests`` is at least the batch size:
    Serve's default of 5 would silently cap every batch at 5."""
    options: dict[str, Any] = {
        "name": name,
        "max_ongoing_requests": max(2 * max_batch, 8),
        "ray_actor_options": {
            "num_cpus": section.num_cpus,
            "num_gpus": section.gpus(device),
            "resources": dict(section.resources),
        },
        # a replica that fails its health check is replaced; keep the checks brisk so a lost node shows soon
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
        "graceful_shutdown_timeout_s": 2.0,
    }
    if section.max_replicas > section.min_replicas:
        options["autoscaling_config"] = {
            "min_replicas": section.min_replicas,
            "max_replicas": section.max_replicas,
            "target_ongoing_requests": section.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = section.min_replicas
    return options


def scorer_app(detector: DetectorConfig, section: DeploymentConfig, offline: bool, namespace: str, interval_s: float):  # noqa: ANN201
    options = deployment_options(section, detector.device, detector.max_batch, "DetectorPool")
    return (
        serve.deployment(DetectorPool)
        .options(**options)
        .bind(detector.model_dump(mode="json"), section.num_cpus, offline, namespace, interval_s)
    )


def voice_model_app(
    voice: AudioDetectorConfig, section: DeploymentConfig, offline: bool, namespace: str, interval_s: float
):  # noqa: ANN201
    options = deployment_options(section, voice.device, voice.max_batch, "VoicePool")
    return (
        serve.deployment(VoicePool)
        .options(**options)
        .bind(voice.model_dump(mode="json"), section.num_cpus, offline, namespace, interval_s)
    )


# ---- the node runtime's side: the same submit(...) seam as the local batchers ------------------------
class Guarded:
    """``submit`` through a remote backend with a deadline, skipping it for a while after a failure."""

    def __init__(self, name: str, inner: RemoteScorer | RemoteVoice):
        self.name, self.inner = name, inner
        self.away_until = 0.0

    async def submit(self, item: Any) -> Any:
        now = time.monotonic()
        if now < self.away_until:
            raise BackendUnavailableError(
                f"{self.name}: deployment unavailable, retried in {self.away_until - now:.1f} s"
            )
        try:
            return await asyncio.wait_for(self.inner.submit(item), CALL_TIMEOUT_S)
        except Exception as exc:
            self.away_until = time.monotonic() + AWAY_S
            if isinstance(exc, TimeoutError):
                raise BackendUnavailableError(f"{self.name}: no answer within {CALL_TIMEOUT_S} s") from None
            raise


class RemoteScorer:
    """Sends the region around the face the detector's crop comes from, the box moved into it."""

    def __init__(self, handle):  # noqa: ANN001 (a Serve DeploymentHandle)
        self.handle = handle
        self.rule: tuple[float, str] | None = None  # the detector's (margin, rounding), asked once

    async def submit(self, item: Crop) -> float:
        if self.rule is None:
            self.rule = tuple(await self.handle.crop_rule.remote())
        margin, rounding = self.rule
        image, box, landmarks = item
        left, top, right, bottom = margin_window(image.shape, box, margin + SLACK, rounding)
        region = np.ascontiguousarray(image[top:bottom, left:right])
        moved = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
        points = None if landmarks is None else np.asarray(landmarks) - (left, top)
        return await self.handle.score.remote((region, moved, points))


class RemoteVoice:
    """Sends a window (at most 64,600 float32 samples, 258 kB) to a voice model's deployment."""

    def __init__(self, handle):  # noqa: ANN001
        self.handle = handle

    async def submit(self, window: np.ndarray) -> float:
        return await self.handle.score.remote(np.ascontiguousarray(window, dtype=np.float32))
