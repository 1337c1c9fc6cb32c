"""How much later a fake episode is labelled ``fake`` when tracks are scored at a rate instead of
on every frame, on synthetic episodes (no video: the cadence and the smoother, fed noisy scores).

    python -m bench.judging [--episodes 300]

Each episode is a 30 fps track: 6 s real (P(fake) ~ 0.2), 3 s fake (~ 0.85), 3 s real, with
per-frame noise (sd 0.15; independent, and correlated from frame to frame), and a face that jumps
three times (rescored at once). Default smoothing. For every judge config (a full rate, and a calm
track's ``min_rate_hz``): the delay from the true start to the ``fake`` label and from the true
end to leaving it, as differences against scoring every frame on the same scores; the share of
episodes labelled fake before the onset (false alarms, absolute); and the share of the detector
work left. Real media through the whole pipeline: ``bench.rtsp_latency``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pipeline.judging.cadence import Cadence, JudgeConfig, Scored
from pipeline.judging.smoothing import SmoothingConfig, TrackSmoother

FPS = 30.0


def episode(
    rng: np.random.Generator, rho: float, seconds: float = 12.0, fake: bool = True
) -> tuple[np.ndarray, float, float]:
    """Noise correlated from frame to frame by ``rho`` (AR(1)): consecutive frames of a video are
    nearly the same picture, so 0 (independent) is the worst case for scoring fewer of them.
    ``fake`` false: a real face throughout."""
    n = int(seconds * FPS)
    start, end = 6.0 + rng.uniform(0, 1 / FPS), 9.0
    t = np.arange(n) / FPS
    noise = np.empty(n)
    noise[0] = rng.normal(0, 0.15)
    for i in range(1, n):
        noise[i] = rho * noise[i - 1] + np.sqrt(1 - rho * rho) * rng.normal(0, 0.15)
    p = np.where((t >= start) & (t < end) & fake, 0.85, 0.2) + noise
    return np.clip(p, 0.0, 1.0), start, end


def run(judge: JudgeConfig, scores: np.ndarray, jumps: set[int], smoothing: SmoothingConfig) -> tuple[list[str], int]:
    cadence, smoother = Cadence(judge), TrackSmoother(smoothing)
    last: Scored | None = None
    labels, label, scored = [], "uncertain", 0
    box = np.array([100.0, 100.0, 200.0, 200.0])
    for i, p in enumerate(scores):
        t = i / FPS
        if i in jumps:
            box = box + 80.0
        if cadence.due(last, box, t):
            out = smoother.update(float(p), 0.1, t)
            label = out.label
            last, scored = cadence.scored(last, box, t, out.calm), scored + 1
        labels.append(label)
    return labels, scored


def at_rates(rates: list[float | None]) -> dict[str, JudgeConfig]:
    """Each rate alone, never skimmed, named by it ("None": every frame)."""
    return {str(rate): JudgeConfig(max_rate_hz=rate, min_rate_hz=None) for rate in rates}


# (name, config): the full rate alone, and with a calm track's floor
CONFIGS: dict[str, JudgeConfig] = {
    "every frame": JudgeConfig(max_rate_hz=None),
    "15 Hz": JudgeConfig(max_rate_hz=15, min_rate_hz=None),
    "10 Hz": JudgeConfig(max_rate_hz=10, min_rate_hz=None),
    "5 Hz": JudgeConfig(max_rate_hz=5, min_rate_hz=None),
    "2 Hz": JudgeConfig(max_rate_hz=2, min_rate_hz=None),
    "10 Hz, calm 5 Hz": JudgeConfig(max_rate_hz=10, min_rate_hz=5),
    "10 Hz, calm 3 Hz": JudgeConfig(max_rate_hz=10, min_rate_hz=3),
    "10 Hz, calm 2 Hz": JudgeConfig(max_rate_hz=10, min_rate_hz=2),
}


def first(labels: list[str], fake: bool, after: float) -> float:
    """When the label first is (or, with ``fake`` false, first is not) fake at or after ``after``."""
    for i, label in enumerate(labels):
        if i / FPS >= after and (label == "fake") == fake:
            return i / FPS
    return float("nan")


def measure(episodes: int, configs: dict[str, JudgeConfig], rho: float, seed: int = 0) -> dict:
    """``configs``' first is the reference the delays are counted against."""
    rng = np.random.default_rng(seed)
    smoothing = SmoothingConfig(method="ema")
    out: dict = {}
    base: list[tuple[float, float]] = []
    rows: dict = {name: {"onset": [], "offset": [], "work": [], "false": [], "real_work": []} for name in configs}
    for _ in range(episodes):
        scores, start, end = episode(rng, rho)
        jumps = set(rng.choice(len(scores), 3, replace=False).tolist())
        # a camera wall is mostly real faces for minutes: what one costs, and whether it is ever called fake
        real, _, _ = episode(rng, rho, seconds=60.0, fake=False)
        for k, (name, judge) in enumerate(configs.items()):
            labels, scored = run(judge, scores, jumps, smoothing)
            on, off = first(labels, True, start), first(labels, False, end)
            row = rows[name]
            if k == 0:
                base.append((on, off))
            row["onset"].append(on - base[-1][0])
            row["offset"].append(off - base[-1][1])
            row["work"].append(scored / len(scores))
            row["false"].append("fake" in labels[: int(start * FPS)])
            labels, scored = run(judge, real, set(), smoothing)
            row["real_work"].append(scored / len(real))
            row["false"][-1] |= "fake" in labels
    for rate, row in rows.items():
        onset, offset = np.array(row["onset"]) * 1000, np.array(row["offset"]) * 1000
        out[rate] = {
            "onset_later_ms_mean": round(float(np.nanmean(onset)), 1),
            "onset_later_ms_p95": round(float(np.nanpercentile(onset, 95)), 1),
            "offset_later_ms_mean": round(float(np.nanmean(offset)), 1),
            "false_alarm_share": round(float(np.mean(row["false"])), 3),
            "work_share": round(float(np.mean(row["work"])), 3),
            "real_face_work_share": round(float(np.mean(row["real_work"])), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.judging")
    parser.add_argument("--episodes", type=int, default=300)
    args = parser.parse_args()
    for rho in (0.0, 0.8):
        print(f"frame-to-frame noise correlation {rho}:")
        print(json.dumps(measure(args.episodes, CONFIGS, rho), indent=2))


if __name__ == "__main__":
    main()
