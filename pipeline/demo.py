"""The main job of the README: the MesoNet ensemble on a generated sample clip, end to end.

Decode (PyAV) → MTCNN faces → four MesoNet detectors (both architectures, both training sets),
batched per frame → weighted-average fusion with uncertainty → one JSON line per frame, then a
performance summary from the PerformanceMonitor.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import numpy as np

from stream import iter_file_frames, make_sample_clip

from .detectors import Meso4Detector, MesoInception4Detector
from .detectors.mesonet import MESONET_PREPROCESSING
from .ensemble import EnsembleConfig, EnsembleManager
from .errors import DfstreamError, WeightsError
from .monitor import MonitoringConfig, PerformanceMonitor
from .preprocessing import UnifiedPreprocessor, crop_with_margin
from .registry import ModelRegistry
from .weights import find_weights, load_manifest, model_dir, pull, source_url

DEMO_MODELS = {
    "meso4_df": Meso4Detector,
    "meso4_f2f": Meso4Detector,
    "mesoinception4_df": MesoInception4Detector,
    "mesoinception4_f2f": MesoInception4Detector,
}


def ensure_weights(offline: bool, out: TextIO) -> dict[str, Path]:
    """A verified file per demo model: found locally, else pulled (sha256-checked) unless offline."""
    manifest = load_manifest()
    paths = {}
    for name in DEMO_MODELS:
        entry = manifest[name]
        found = find_weights(entry)
        if found is None:
            if offline:
                raise WeightsError(f"{name} is not in {model_dir()} and --offline was given: run `dfstream models pull {name}`")
            print(f"fetching {name} ({entry.size} bytes, license {entry.license}) from {source_url(entry)}", file=out)
            try:
                found = pull(entry)
            except WeightsError as exc:
                raise WeightsError(
                    f"{exc}. Without internet access, put the MesoNet .h5 files (github.com/DariusAf/MesoNet, "
                    f"weights/) in {model_dir()}, or name their folder in DFSTREAM_MODEL_PATH"
                ) from exc
        paths[name] = found
    return paths


def run_demo(input_path: str | None, device: str, offline: bool, out: TextIO = sys.stdout) -> int:
    weights = ensure_weights(offline, sys.stderr)
    registry = ModelRegistry(builtins=False)
    for name, cls in DEMO_MODELS.items():
        registry.register_model(name, cls, weights=str(weights[name]), device=device)
    statuses = registry.load_all_models()
    failed = {n: registry.get_error(n) for n, s in statuses.items() if s.value == "failed"}
    if len(failed) == len(statuses):
        raise DfstreamError(f"no model loaded: {failed}")

    monitor = PerformanceMonitor(MonitoringConfig(enable_gpu_monitoring=device != "cpu"))
    ensemble = EnsembleManager(EnsembleConfig(), monitor=monitor)
    for name, detector in registry.loaded_models().items():
        ensemble.add_model(name, detector)
    faces = UnifiedPreprocessor(MESONET_PREPROCESSING)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(input_path) if input_path else make_sample_clip(Path(tmp) / "sample.mp4")
        probabilities = []
        frames = 0
        for frame in iter_file_frames(path, stream_id=path.stem):
            frames += 1
            monitor.start_timer("faces")
            boxes, scores = faces.detect_faces(frame.image)
            monitor.end_timer("faces", kind="stage")
            crops = [crop_with_margin(frame.image, tuple(b), MESONET_PREPROCESSING.face_crop_margin) for b in boxes]
            results = ensemble.predict_ensemble_batch(crops) if crops else []
            for box, score, result in zip(boxes, scores, results):
                probabilities.append(result.fake_probability)
                record = {
                    "stream": frame.stream_id,
                    "seq": frame.seq,
                    "pts": frame.pts,
                    "bbox": [round(float(v), 1) for v in box],
                    "face_score": round(float(score), 4),
                    "label": "fake" if result.is_deepfake else "real",
                    "fake_probability": round(result.fake_probability, 4),
                    "uncertainty": round(result.uncertainty, 4) if result.uncertainty is not None else None,
                    "models": {k: round(v, 4) for k, v in result.model_scores.items()},
                }
                print(json.dumps(record), file=out)
            if not crops:
                print(json.dumps({"stream": frame.stream_id, "seq": frame.seq, "pts": frame.pts, "label": "no_face"}), file=out)

    report = monitor.get_performance_report()
    print(f"\n{frames} frames, {len(probabilities)} faces judged by {len(ensemble.models)} models", file=out)
    if probabilities:
        print(f"mean P(fake) {np.mean(probabilities):.3f}, frames judged fake: {sum(p >= 0.5 for p in probabilities)}", file=out)
    for name, m in {**report["stages"], **report["models"]}.items():
        lat = m["latency_ms"]
        print(f"  {name:<20} {m['items']:>5} items  {m['throughput_per_s'] or 0:8.1f}/s  p50 {lat['p50']:7.1f} ms  p95 {lat['p95']:7.1f} ms", file=out)
    for alert in monitor.check_alerts(report):
        print(f"  alert: {alert['message']}", file=out)
    for name, error in failed.items():
        print(f"  model {name} failed to load: {error}", file=out)
    return 0
