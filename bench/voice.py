"""What a voice model costs, per backend, on one core:

    python -m bench.voice --aasist DIR [--repeats 5]

Each variant (AASIST, AASIST-L) on each CPU backend judges 4.04 s windows of real speech (the
espeak-ng sentence of the reference inputs, tiled as the authors' evaluation tiles it) with one
thread, alone and in batches of 4 (windows of several streams judged together). Printed: seconds
of one core per window, and what a stream's voice would take of a core when a window is judged
every ``--hop`` seconds (2 s: windows overlapping by half). This is the model alone: decoding,
resampling and speech gating come on top and are measured with the audio path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.models.audio.scorer import VoiceScorer

VARIANTS = {"aasist": "AASIST.pth", "aasist_l": "AASIST-L.pth"}
BACKENDS = ("torch", "onnxruntime", "openvino")


def measure(scorer: VoiceScorer, speech: np.ndarray, batch: int, repeats: int) -> float:
    """Median seconds per window."""
    windows = [speech] * batch
    scorer.score(windows)  # warm: first calls allocate
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer.score(windows)
        times.append((time.perf_counter() - started) / batch)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.voice")
    parser.add_argument("--aasist", type=Path, required=True, help="folder with AASIST.pth, AASIST-L.pth, reference/")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hop", type=float, default=2.0, help="seconds between judged windows of one stream")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the budget a stream's voice gets: one core's share
    speech = np.load(args.aasist / "reference" / "inputs.npz")["speech_espeak"]
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DFSTREAM_MODEL_DIR"] = cache  # exports land here, not in the user's cache
        for variant, filename in VARIANTS.items():
            for backend in BACKENDS:
                scorer = VoiceScorer(variant, args.aasist / filename, backend=backend)
                one, four = measure(scorer, speech, 1, args.repeats), measure(scorer, speech, 4, args.repeats)
                share = one / args.hop
                results[f"{variant}/{backend}"] = {
                    "s_per_window": one,
                    "s_per_window_batch4": four,
                    "core_share": share,
                }
                print(
                    f"{variant:<9} {backend:<12} {one:6.3f} s a window alone, {four:6.3f} in batches of 4; "
                    f"a window every {args.hop:g} s takes {100 * share:5.1f} % of a core"
                )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
