"""How good the faces behind each score were: adds to ``bench.alarm_scores``' files each scored
face's size, sharpness and brightness (``pipeline.judging.quality.measure``, on the same frame and
box the runtime scored), so ``bench.alarms --quality`` can replay the alarms with faces too poor to
judge left out and say what each gate removes from the false alarms and costs in detection.

    python -m bench.alarm_quality --devset DEVSET/video --scores SCORES
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np

from pipeline.judging.quality import measure


def measure_video(path: Path, tracks: dict[str, list]) -> None:
    """Appends (size, sharpness, brightness) to every score of ``tracks``, in place."""
    wanted: dict[float, list[list]] = {}
    for track in tracks.values():
        for score in track:
            wanted.setdefault(round(score[0], 4), []).append(score)
    times = np.array(sorted(wanted))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is None or not len(times):
                continue
            nearest = times[np.argmin(np.abs(times - frame.time))]
            if abs(nearest - frame.time) > 0.5 / float(stream.average_rate or 30):
                continue
            image = frame.to_ndarray(format="rgb24")
            for score in wanted[float(nearest)]:
                if len(score) == 4:
                    q = measure(image, tuple(score[3]))
                    score.append([round(q.size, 1), round(q.sharpness, 1), round(q.brightness, 1)])
    for track in tracks.values():
        for score in track:
            if len(score) == 4:
                score.append(None)  # its frame was not found again: judged as good


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, required=True)
    parser.add_argument("--scores", type=Path, required=True)
    args = parser.parse_args()
    for path in sorted(args.scores.glob("*.json")):
        data = json.loads(path.read_text())
        for i, video in enumerate(data["videos"].values()):
            measure_video(args.devset / video["path"], video["tracks"])
            print(f"{path.name}: {i + 1}/{len(data['videos'])}", flush=True)
        data["meta"]["quality"] = True
        path.write_text(json.dumps(data))


if __name__ == "__main__":
    main()
