"""Tracks are scored at judge.max_rate_hz, not on every frame; smoothing weighs scores by time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.judging.cadence import Cadence, JudgeConfig, Scored
from pipeline.judging.smoothing import SmoothingConfig, TrackSmoother
from pipeline.monitoring.keys import Count, Subject
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
        weights_dir, [{"id": "s", "url": str(short_clip), "pace": "asap"}], judge={"max_rate_hz": rate}
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
