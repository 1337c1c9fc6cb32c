"""Time to flag a face swapped mid-shot, through the whole pipeline: each FaceForensics++ fake
spliced into its original at the same frame (the fakes are frame for frame their original's scene),
re-encoded as a camera sends it (H.264, a keyframe a second), then decoded, the face found and
tracked, judged at the judge's rate, smoothed and labelled, with the old defaults and the new, with
BlazeFace and with MTCNN.

    python -m bench.alarm_splices --devset DEVSET/video [--methods Deepfakes] [--configs old new]
        [--finders blazeface mtcnn] [--out bench/alarm_splices_results.json]

Read as fast as it decodes, so the judge rate and the smoothing run on the clip's clock: the figures
are stream seconds from the cut to the first ``fake`` verdict (the same as live, minus the
processing latency, ``bench.rtsp_latency``); "before" counts splices labelled fake before the cut
(a false alarm on the original's part).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from bench.alarm_scores import detectors, load_labels
from bench.rtsp_latency import Collect, new_runtime
from bench.stages import weights_argument
from dfstream.config import parse_config

OLD = {"method": "ema", "alpha": 0.3, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.5}
CONFIGS = {"old": ("old (ema, enter 0.7)", OLD), "new": ("new (cusum, the defaults)", {})}


def frames(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 30)
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], rate


def splice(original: Path, fake: Path, cut_s: float, out: Path) -> float:
    """The original up to ``cut_s``, the fake from there (resized to the original's size when it
    differs); returns the cut's time in the spliced clip."""
    before, rate = frames(original)
    after, _ = frames(fake)
    cut = round(cut_s * rate)
    height, width = before[0].shape[:2]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size, stream.codec_context.max_b_frames = round(rate), 0
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(min(len(before), len(after))):
            image = before[i] if i < cut else after[i]
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return cut / rate


def judge(clips: dict[str, tuple[Path, float]], finder: str, smoothing: dict, weights: Path) -> dict[str, object]:
    """Per clip: seconds from the cut to the first fake verdict, "before", or "never"."""
    ids = {f"s{i}": name for i, name in enumerate(clips)}
    config = parse_config(
        {
            "streams": [{"id": sid, "url": str(clips[name][0]), "pace": "asap"} for sid, name in ids.items()],
            "faces": {"model": finder},
            "detectors": detectors(weights),
            "smoothing": smoothing,
        }
    )
    sink = Collect()
    asyncio.run(new_runtime(config, sink).run())
    out: dict[str, object] = {}
    for sid, name in ids.items():
        cut = clips[name][1]
        fake = [v.frame_pts for v in sink.verdicts if v.stream == sid and v.label == "fake" and v.frame_pts is not None]
        if any(t < cut for t in fake):
            out[name] = "before"
        else:
            out[name] = round(min(fake) - cut, 3) if fake else "never"
    return out


def summary(flags: dict[str, object]) -> dict:
    timed = sorted(v for v in flags.values() if isinstance(v, float))
    return {
        "splices": len(flags),
        "flagged": len(timed),
        "within_1s": sum(t <= 1.0 for t in timed),
        "before_cut": sum(v == "before" for v in flags.values()),
        "median_s": round(float(np.median(timed)), 3) if timed else None,
        "worst_s": round(max(timed), 3) if timed else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, required=True, help="the development set's video folder (labels.csv)")
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--methods", nargs="+", default=["Deepfakes", "FaceSwap", "Face2Face", "NeuralTextures"])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--finders", nargs="+", choices=["blazeface", "mtcnn"], default=["blazeface", "mtcnn"])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("alarm_splices_results.json"),
        help="written anew, keeping the entries of configs and finders not run this time",
    )
    args = parser.parse_args()
    videos = load_labels(args.devset)
    originals = {Path(v["path"]).stem: v for v in videos if v["label"] == "real"}
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        clips: dict[str, tuple[Path, float]] = {}
        for video in videos:
            method = video["path"].split("/manipulate/")[-1].split("/")[0] if "/manipulate/" in video["path"] else None
            if method not in args.methods:
                continue
            a, _, b = Path(video["path"]).stem.partition("_")
            original = next(
                (
                    originals[n]
                    for n in (a, b)
                    if n in originals and abs(originals[n]["seconds"] - video["seconds"]) < 0.05
                ),
                None,
            )
            if original is None:
                continue
            name = f"{method}/{Path(video['path']).stem}"
            out = Path(tmp) / f"{method}_{Path(video['path']).stem}.mp4"
            cut = splice(args.devset / original["path"], args.devset / video["path"], original["seconds"] / 2, out)
            clips[name] = (out, cut)
        print(f"{len(clips)} spliced clips", flush=True)
        for finder in args.finders:
            for label, smoothing in (CONFIGS[c] for c in args.configs):
                flags = judge(clips, finder, smoothing, args.weights)
                results.setdefault(finder, {})[label] = {"summary": summary(flags), "clips": flags}
                print(f"{finder} {label}: {json.dumps(summary(flags))}", flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
