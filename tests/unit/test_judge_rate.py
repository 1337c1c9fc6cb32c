"""Tracks are scored at judge.max_rate_hz, not on every frame; smoothing weighs scores by time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.judging.cadence import Cadence, Due, JudgeConfig, Scored
from pipeline.judging.smoothing import SmoothingConfig, TrackSmoother
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.runtime.runtime import Runtime
from tests.helpers import MemorySink, load_detectors, make_config, run_for

BOX = np.array([100.0, 100.0, 200.0, 200.0])


def test_a_track_is_due_when_new_when_its_time_has_come_or_when_it_moved():
    cadence = Cadence(JudgeConfig(max_rate_hz=10, rejudge_iou=0.6))
    assert cadence.due(None, BOX, 0.0)
    last = Scored(0.0, BOX)
    assert not cadence.due(last, BOX, 1 / 30)
    assert not cadence.due(last, BOX + 5, 2 / 30)  # a small move: IoU 0.82
    assert cadence.due(last, BOX + 40, 2 / 30)  # a big one: IoU 0.36
    assert cadence.due(last, BOX * 1.6, 2 / 30)  # the face came closer
    assert cadence.due(last, BOX, 3 / 30)  # 100 ms at 30 fps, stream clocks rounded
    every = Cadence(JudgeConfig(max_rate_hz=None))
    assert every.due(last, BOX, 0.0)


def test_ema_means_the_same_in_seconds_at_any_scoring_rate():
    """A step from 0.2 to 0.9: after 0.3 s the smoothed value is the same whether the track was
    scored 30 or 10 times a second."""
    config = SmoothingConfig(method="ema", alpha=0.3, min_frames=1)

    def after(rate: float) -> float:
        smoother = TrackSmoother(config)
        smoother.update(0.2, 0.0, 0.0)
        steps = round(0.3 * rate)
        return [smoother.update(0.9, 0.0, i / rate) for i in range(1, steps + 1)][-1].probability

    assert after(30) == pytest.approx(after(10)) == pytest.approx(0.2 + 0.7 * (1 - 0.7**9))


def test_window_weighs_scores_by_the_time_they_stand_for():
    smoother = TrackSmoother(SmoothingConfig(method="window", window=3, period_s=1.0, min_frames=1))
    smoother.update(0.0, 0.0, 0.0)
    smoother.update(0.0, 0.0, 0.5)  # stands for half a second
    out = smoother.update(0.9, 0.0, 2.5)  # for two; the window is (-0.5, 2.5], so the first counts 0.5 s
    assert out.probability == pytest.approx((0.5 * 0.0 + 0.5 * 0.0 + 2.0 * 0.9) / 3.0)


@pytest.mark.parametrize("rate", [10.0, None])
def test_the_stream_is_scored_at_the_rate_and_every_frame_still_gets_a_verdict(weights_dir, short_clip, rate):
    config = make_config(
        weights_dir,
        [{"id": "s", "url": str(short_clip), "pace": "asap"}],
        judge={"max_rate_hz": rate, "min_rate_hz": None},  # never skimmed: the full rate throughout
    )
    runtime = Runtime(config, load_detectors(config), [sink := MemorySink()])
    asyncio.run(run_for(runtime, None))
    verdicts = sink.verdicts("s")
    assert len(verdicts) == 60 and [v.seq for v in verdicts] == list(range(1, 61))
    scored = [v for v in verdicts if v.scored]
    crops = runtime.monitor.get_model_metrics(Subject.model("meso4"))["items"]
    assert crops == len(scored)
    carried = runtime.monitor.counter(Subject.stream("s"), Count.VERDICTS_CARRIED)
    assert carried == 60 - len(scored)
    assert runtime.monitor.gauge(Subject.stream("s"), Gauge.DEGRADED) is None  # a file read asap is never shed
    if rate is None:
        assert carried == 0
        return
    assert verdicts[0].scored and 20 <= len(scored) <= 30  # 2 s at 10 Hz, and a few for the sliding face
    last = None
    for v in verdicts:
        if v.scored:
            if last is not None:  # sooner than the rate only when the face moved
                assert v.frame_pts - last.frame_pts >= 0.09 or _iou(v.bbox, last.bbox) < 0.6
            last = v
        else:  # a carried verdict: the last score, where the face is now
            assert (v.models, v.raw_probability, v.fake_probability, v.scored_at) == (
                last.models,
                last.raw_probability,
                last.fake_probability,
                last.scored_at,
            )
            assert v.frame_seq > last.frame_seq


def _iou(a, b) -> float:
    from pipeline.models.detections import iou_matrix

    return float(iou_matrix(np.array([a]), np.array([b]))[0, 0])


def test_a_calm_track_is_skimmed_and_anything_suspicious_brings_the_full_rate_back():
    cadence = Cadence(JudgeConfig(max_rate_hz=10, min_rate_hz=2, calm_after_s=1.0))
    state = cadence.scored(None, BOX, 0.0, False)
    assert state.calm_since is None  # not yet labelled real
    t = 0.0
    while t < 1.0:  # real and low: calm from its first real score, at 10 Hz until a second has passed
        t = round(t + 0.1, 3)
        assert cadence.due(state, BOX, t) is Due.TIME
        state = cadence.scored(state, BOX, t, True)
    assert state.calm_since == 0.1 and cadence.rate_hz(state, t) == 10
    t = 1.2
    state = cadence.scored(state, BOX, t, True)
    assert cadence.skimmed(state, t) and cadence.rate_hz(state, t) == 2
    assert cadence.due(state, BOX, t + 0.1) is None and cadence.due(state, BOX, t + 0.3) is None
    assert cadence.due(state, BOX, t + 0.5) is Due.TIME  # 2 Hz
    assert cadence.due(state, BOX + 40, t + 0.1) is Due.MOVED  # a moved face: scored now ...
    moved = cadence.scored(state, BOX + 40, t + 0.1, True)
    assert cadence.skimmed(moved, t + 0.1)  # ... and still calm if its score says so
    # a score above leave or another label: calm ends, and the next is at the full rate
    for label, p in (("real", 0.45), ("fake", 0.9), ("uncertain", 0.2)):
        after = cadence.scored(state, BOX, t + 0.5, label == "real" and p <= 0.4)
        assert after.calm_since is None and cadence.rate_hz(after, t + 0.5) == 10
        assert cadence.due(after, BOX, t + 0.6) is Due.TIME


def test_every_frame_scored_means_no_skimming_and_a_floor_above_the_rate_is_refused():
    every = Cadence(JudgeConfig(max_rate_hz=None, min_rate_hz=2))
    state = Scored(0.0, BOX, calm_since=-100.0)
    assert every.due(state, BOX, 0.0) is Due.TIME and every.rate_hz(state, 0.0) is None
    never = Cadence(JudgeConfig(max_rate_hz=10, min_rate_hz=None))
    assert never.rate_hz(state, 0.0) == 10 and never.due(state, BOX, 0.05) is None
    with pytest.raises(ValueError, match=r"min_rate_hz \(20.0\) must be <= max_rate_hz \(10.0\)"):
        JudgeConfig(max_rate_hz=10, min_rate_hz=20)


def test_a_live_real_face_is_skimmed_and_judged_at_the_full_rate_the_moment_it_turns_suspicious(tmp_path):
    """The sample stream at its own pace, a detector that says real, then fake from a known time:
    the real face is judged at 2 Hz after a calm second, and the first score of the episode comes
    within the 2 Hz interval and brings the full rate back at once."""
    import json
    import time

    import tests.scripted_detector  # noqa: F401  (registers the type)
    from dfstream.config import parse_config
    from tests.helpers import load_detectors

    script = tmp_path / "script.json"
    start = time.time() + 3.5
    script.write_text(json.dumps({"base": 0.05, "fake": 0.95, "windows": [[start, start + 60]]}))
    config = parse_config(
        {
            "streams": [{"id": "s", "url": "sample://astronaut", "pace": "realtime", "loop": True}],
            "detectors": [{"name": "scripted", "type": "scripted", "weights": str(script)}],
            "judge": {"max_rate_hz": 10, "min_rate_hz": 2, "calm_after_s": 1.0, "rejudge_iou": 0.0},  # the face slides
        }
    )
    runtime = Runtime(config, load_detectors(config), [sink := MemorySink()])
    asyncio.run(run_for(runtime, 5.5))
    verdicts = [v for v in sink.verdicts("s") if v.track_id == sink.verdicts("s")[0].track_id]
    scored = [v for v in verdicts if v.scored]
    calm = [v for v in scored if v.scored_at < start and v.judge_rate_hz == 2]
    assert calm, [(round(v.scored_at - start, 2), v.judge_rate_hz) for v in scored]
    gaps = [b.scored_at - a.scored_at for a, b in zip(calm, calm[1:])]
    assert gaps and all(0.45 <= g <= 0.6 for g in gaps), gaps  # 2 Hz, a frame's rounding aside
    assert all(v.judge_rate_hz == 2 for v in verdicts if not v.scored and v.scored_at in {c.scored_at for c in calm})
    first = next(v for v in scored if v.scored_at >= start)
    assert first.scored_at - start <= 0.55 and first.judge_rate_hz == 10  # seen within the interval
    after = [v for v in scored if v.scored_at > first.scored_at]
    assert after and after[0].scored_at - first.scored_at <= 0.15  # then 10 Hz at once
    assert runtime.monitor.gauge(Subject.stream("s"), Gauge.TRACKS_SKIMMED) == 0  # fake now: none skimmed
