"""``dfstream eval`` and ``dfstream calibrate``: score a labelled set the way the runtime scores a
stream (MTCNN, each detector's own crop and preprocessing, the ensemble's fusion), then report.

Per video, ``frames`` evenly spaced frames (DeepfakeBench uses 32); in each, the largest face.
Frame-level metrics treat every scored frame as a sample with its video's label; video-level
metrics first aggregate a video's frame scores (mean, the DFDC winner's confident strategy, or the
share of fake frames). Nothing is random: items are sorted, frames fixed, models in eval mode.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from core.errors import ConfigError, DfstreamError, one_line
from pipeline.evaluation.datasets import Item, spaced_frames
from pipeline.evaluation.metrics import AGGREGATIONS, classification_report, roc_curve
from pipeline.judging.ensemble import EnsembleManager
from pipeline.models.audio.config import AUDIO_TYPES, AudioDetectorConfig
from pipeline.models.config import DetectorConfig
from pipeline.models.detector import BaseDetector
from pipeline.models.faces.finder import FaceDetector
from pipeline.models.plugins import detector_types
from pipeline.models.weights import load_manifest

FUSED = "fused"


def parse_detector_spec(text: str, device: str = "auto") -> DetectorConfig:
    """``meso4_df`` (a manifest name), ``meso4`` (a type, its default weights) or
    ``meso4=path/to/Meso4_DF.h5`` (a type with that file)."""
    name, _, weights = text.partition("=")
    manifest = load_manifest()
    types = detector_types()
    if name in manifest and not weights:
        return DetectorConfig(name=name, type=manifest[name].architecture, weights=name, device=device)
    if name in types:
        return DetectorConfig(name=name, type=name, weights=weights or None, device=device)
    known = ", ".join(sorted(set(manifest) | set(types)))
    raise ConfigError(f"--detectors {text!r}: not a manifest name or a detector type (known: {known})")


def parse_audio_detector_spec(text: str, device: str = "auto") -> AudioDetectorConfig:
    """``aasist`` (a manifest name or a type: its default weights) or ``aasist_l=path/to/AASIST-L.pth``."""
    name, _, weights = text.partition("=")
    manifest = load_manifest()
    if name in manifest and manifest[name].modality == "audio" and not weights:
        return AudioDetectorConfig(name=name, type=manifest[name].architecture, weights=name, device=device)
    if name in AUDIO_TYPES:
        return AudioDetectorConfig(name=name, type=name, weights=weights or None, device=device)
    known = ", ".join(sorted({n for n, e in manifest.items() if e.modality == "audio"} | set(AUDIO_TYPES)))
    raise ConfigError(f"--audio-detectors {text!r}: not a voice model's manifest name or type (known: {known})")


@dataclass
class Scores:
    """Every scored frame, and the items that could not be scored (with why)."""

    rows: list[dict] = field(default_factory=list)  # path, label, frame, and one P(fake) per detector and fused
    skipped: list[dict] = field(default_factory=list)  # path, label, reason
    frames_without_face: int = 0
    # per detector: seconds spent scoring and crops scored, on this machine (printed, never in
    # report.json: a rerun writes the same bytes)
    timing: dict[str, list[float]] = field(default_factory=dict)

    def ms_per_crop(self, name: str) -> float | None:
        seconds, crops = self.timing.get(name, (0.0, 0))
        return 1000.0 * seconds / crops if crops else None

    def column(self, key: str) -> list:
        return [row[key] for row in self.rows]

    def by_video(self) -> list[list[dict]]:
        """The rows of each item, items in the order they were scored."""
        groups: dict[str, list[dict]] = {}
        for row in self.rows:
            groups.setdefault(row["path"], []).append(row)
        return list(groups.values())


# frames go through face detection and the detectors this many at a time: a long video is never
# held whole in memory, and progress can be told. Eval and the service use the same size, so the
# same file gets the same numbers from both.
CHUNK = 8


@dataclass(frozen=True)
class FaceScore:
    """One face of one sampled frame: each detector's P(fake) and the ensemble's fusion."""

    frame: int
    face: int  # 0: the face detector's first (largest) face
    bbox: tuple[float, float, float, float]
    models: dict[str, float]
    fake_probability: float
    uncertainty: float | None


def score_frames(
    frames: Iterable[tuple[int, np.ndarray]],
    detectors: Mapping[str, BaseDetector],
    ensemble: EnsembleManager,
    faces: FaceDetector,
    every_face: bool = False,
    progress: Callable[[int], None] | None = None,
    timing: dict[str, list[float]] | None = None,
) -> tuple[list[FaceScore], int, int]:
    """Scores of the largest face (or ``every_face``) of each frame; also the number of frames
    read and of frames without a face. ``progress(frames read)`` after each chunk; ``timing``
    gathers each detector's seconds and crops."""
    scored: list[FaceScore] = []
    read = without_face = 0
    for chunk in _chunks(frames, CHUNK):
        read += len(chunk)
        found = faces.detect([image for _, image in chunk])
        crops = []  # (frame index, face index, image, box, landmarks)
        for (index, image), detections in zip(chunk, found):
            if not len(detections):
                without_face += 1
            for k in range(len(detections) if every_face else min(1, len(detections))):
                box = tuple(float(v) for v in detections.xyxy[k])
                crops.append((index, k, image, box, detections.landmarks[k]))
        if crops:
            per_model = {}
            for name, detector in detectors.items():
                started = time.perf_counter()
                per_model[name] = detector.score_found([(image, box, points) for _, _, image, box, points in crops])
                if timing is not None:
                    spent = timing.setdefault(name, [0.0, 0])
                    spent[0] += time.perf_counter() - started
                    spent[1] += len(crops)
            for j, (index, k, _, box, _) in enumerate(crops):
                models = {name: float(values[j]) for name, values in per_model.items()}
                fused = ensemble.fuse(models)
                scored.append(FaceScore(index, k, box, models, float(fused.fake_probability), fused.uncertainty))  # type: ignore[arg-type]
        if progress is not None:
            progress(read)
    return scored, read, without_face


def _chunks(frames: Iterable[tuple[int, np.ndarray]], size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    chunk: list[tuple[int, np.ndarray]] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_items(
    items: list[Item],
    detectors: Mapping[str, BaseDetector],
    ensemble: EnsembleManager,
    faces: FaceDetector,
    frames: int,
    progress: Callable[[int, int], None] | None = None,
) -> Scores:
    scores = Scores()
    for done, item in enumerate(items, start=1):
        try:
            found, read, without_face = score_frames(
                spaced_frames(item, frames), detectors, ensemble, faces, timing=scores.timing
            )
            scores.frames_without_face += without_face
            if not found:
                raise ConfigError("no face in any sampled frame" if read else "no frame could be decoded")
        except (
            DfstreamError,
            av.error.FFmpegError,
            OSError,
            ValueError,
            IndexError,
        ) as exc:  # one bad file is a line in the report
            scores.skipped.append({"path": str(item.path), "label": item.label, "reason": one_line(exc)})
        else:
            for face in found:
                scores.rows.append(
                    {
                        "path": str(item.path),
                        "label": item.label,
                        "frame": face.frame,
                        **face.models,
                        FUSED: face.fake_probability,
                    }
                )
        if progress is not None:
            progress(done, len(items))
    return scores


def report(scores: Scores, names: list[str]) -> dict:
    """Metrics per detector and fused, per frame and per video under each aggregation."""
    videos = scores.by_video()
    video_labels = [rows[0]["label"] for rows in videos]
    result: dict = {
        "items_scored": len(videos),
        "frames_scored": len(scores.rows),
        "frames_without_face": scores.frames_without_face,
        "skipped": scores.skipped,
        "models": {},
    }
    for name in [*names, FUSED]:
        entry = {"frame": classification_report(scores.column("label"), scores.column(name)), "video": {}}
        for strategy, aggregate in AGGREGATIONS.items():
            entry["video"][strategy] = classification_report(
                video_labels, [aggregate([r[name] for r in rows]) for rows in videos]
            )
        result["models"][name] = entry
    return result


def write_outputs(out: Path, result: dict, scores: Scores, names: list[str], meta: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json", out / "frame_scores.csv", out / "roc_frame.png", out / "roc_video.png"]
    (out / "report.json").write_text(json.dumps({**meta, **result}, indent=2, sort_keys=True))
    with open(out / "frame_scores.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "frame", *names, FUSED])
        writer.writeheader()
        writer.writerows(scores.rows)
    models = [*names, FUSED]
    frame_aucs = {n: result["models"][n]["frame"]["auc"] for n in models}
    plot_roc(
        out / "roc_frame.png",
        "frame level",
        {n: (scores.column("label"), scores.column(n)) for n in models},
        frame_aucs,
    )
    videos = scores.by_video()
    video = {
        n: ([rows[0]["label"] for rows in videos], [AGGREGATIONS["mean"]([r[n] for r in rows]) for rows in videos])
        for n in models
    }
    video_aucs = {n: result["models"][n]["video"]["mean"]["auc"] for n in models}
    plot_roc(out / "roc_video.png", "video level (mean of frames)", video, video_aucs)
    return written


def plot_roc(
    path: Path, title: str, curves: dict[str, tuple[list[int], list[float]]], aucs: dict[str, float | None]
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (labels, values) in curves.items():
        fpr, tpr = roc_curve(labels, values)
        auc = aucs[name]
        axes.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})" if auc is not None else f"{name} (AUC n/a)")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(
        xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, {title}", xlim=(0, 1), ylim=(0, 1.01)
    )
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})  # no version stamp: the same run gives the same bytes
    plt.close(figure)
