"""Graceful overload, the arithmetic: the governor's level from how late frames are, what each level
sheds, and the judge rate a track gets under it."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.judging.cadence import Cadence, Due, JudgeConfig
from pipeline.runtime.overload import (
    CALM_WINDOWS,
    LOWER_STEP,
    RAISE_STEP,
    Governor,
    OverloadConfig,
    Shedding,
)
from stream.source import EvenDrop


def stepped(governor: Governor, lateness_s: float, frames: int = 20) -> float:
    for _ in range(frames):
        governor.lateness(lateness_s)
    return governor.adjust()


def test_frames_later_than_the_target_raise_the_level_and_prompt_frames_lower_it_slowly():
    governor = Governor(OverloadConfig(target_ms=150))
    assert stepped(governor, 0.160) == pytest.approx(RAISE_STEP * 0.160 / 0.150)  # a step, for a bit late ...
    assert stepped(governor, 0.140) == pytest.approx(RAISE_STEP * 0.160 / 0.150)  # under the target, not prompt: held
    assert stepped(governor, 0.160) == pytest.approx(2 * RAISE_STEP * 0.160 / 0.150)
    governor = Governor(OverloadConfig(target_ms=150))
    assert stepped(governor, 3.0) == pytest.approx(3 * RAISE_STEP)  # ... up to three far behind
    governor = Governor(OverloadConfig(target_ms=150))
    stepped(governor, 0.150 * 2)
    assert stepped(governor, 0.130) == pytest.approx(2 * RAISE_STEP)  # between PROMPT of the target and it: held
    for _ in range(CALM_WINDOWS - 1):
        assert stepped(governor, 0.020) == pytest.approx(2 * RAISE_STEP)  # prompt, but not for long enough yet
    assert stepped(governor, 0.020) == pytest.approx(2 * RAISE_STEP - LOWER_STEP)
    for _ in range(100):
        stepped(governor, 0.020)
    assert governor.level == 0.0  # and no lower
    for _ in range(100):
        stepped(governor, 5.0)
    assert governor.level == 2.0  # nor higher


def test_the_p90_decides_not_one_late_frame():
    governor = Governor(OverloadConfig(target_ms=150))
    for _ in range(95):
        governor.lateness(0.010)
    for _ in range(5):
        governor.lateness(2.0)  # 5 % of the frames late: the machine keeps up
    assert governor.adjust() == 0.0


def test_a_source_dropping_frames_for_a_full_queue_raises_the_level_whatever_the_lateness():
    governor = Governor(OverloadConfig())
    governor.dropped(3)
    assert stepped(governor, 0.010) == pytest.approx(RAISE_STEP)
    assert stepped(governor, 0.100) == pytest.approx(RAISE_STEP)  # the drops were counted once


def test_a_burst_of_drops_starts_the_calm_count_again():
    governor = Governor(OverloadConfig())
    stepped(governor, 0.4)
    for _ in range(CALM_WINDOWS - 1):
        stepped(governor, 0.01)
    governor.dropped(1)
    level = stepped(governor, 0.01)
    for _ in range(CALM_WINDOWS - 1):
        assert stepped(governor, 0.01) == level
    assert stepped(governor, 0.01) == pytest.approx(level - LOWER_STEP)


def test_switched_off_it_never_sheds():
    governor = Governor(OverloadConfig(enabled=False))
    governor.dropped(10)
    assert stepped(governor, 9.0) == 0.0


def test_rates_fall_geometrically_to_their_floors_then_frames_are_dropped():
    assert Shedding(0.0).rate(10, 2) == 10
    assert Shedding(0.5).rate(10, 2) == pytest.approx(10 * 0.2**0.5)  # 4.47 Hz
    assert Shedding(1.0).rate(10, 2) == pytest.approx(2)
    assert Shedding(1.7).rate(10, 2) == pytest.approx(2)  # past 1 the rates stay at their floors
    assert Shedding(0.5).rate(1.5, 2) == 1.5  # a rate already under its floor is never raised
    assert Shedding(1.0).drop == 0.0
    assert Shedding(1.5, max_drop=0.75).drop == pytest.approx(0.375)
    assert Shedding(2.0, max_drop=0.75).drop == pytest.approx(0.75)


@pytest.mark.parametrize("share", [0.1, 0.25, 0.375, 0.75])
def test_frames_are_dropped_evenly_not_in_bursts(share):
    drop = EvenDrop()
    dropped = [drop(share) for _ in range(800)]
    assert abs(sum(dropped) - share * 800) <= 1
    kept_runs = np.diff(np.flatnonzero(dropped))  # frames between two drops: never more than one apart in length
    assert kept_runs.max() - kept_runs.min() <= 1
    assert not drop(0.0)


def test_under_overload_a_track_is_judged_at_the_lowered_rate_a_moved_box_waits_and_a_new_track_never_does():
    cadence = Cadence(JudgeConfig(max_rate_hz=10, min_rate_hz=2))
    box = np.array([0, 0, 100, 100], float)
    moved = np.array([60, 0, 160, 100], float)
    state = cadence.scored(None, box, 0.0, False)  # suspicious: at the full rate
    assert cadence.due(state, box, 0.1) is Due.TIME
    cadence.shed(4.0, share=0.5)
    assert cadence.rate_hz(state, 0.1) == 4.0
    assert cadence.due(state, box, 0.1) is None
    assert cadence.due(state, box, 0.25) is Due.TIME
    assert cadence.due(state, moved, 0.1) is None  # a move waits half the lowered interval ...
    assert cadence.due(state, moved, 0.13) is Due.MOVED  # ... then is scored
    assert cadence.due(None, box, 0.1) is Due.NEW
    calm = cadence.scored(None, box, 0.0, True)
    calm = cadence.scored(calm, box, 1.0, True)
    assert cadence.rate_hz(calm, 1.0) == 2.0  # a calm track stays at its floor
    cadence.shed(1.0, share=1.0)
    assert cadence.rate_hz(calm, 1.0) == 1.0 and cadence.rate_hz(state, 0.1) == 1.0
    cadence.shed(None, share=0.0)
    assert cadence.rate_hz(state, 0.1) == 10 and cadence.due(state, moved, 0.01) is Due.MOVED


def test_every_frame_scored_stays_every_frame_scored():
    cadence = Cadence(JudgeConfig(max_rate_hz=None))
    cadence.shed(2.0, share=1.0)
    state = cadence.scored(None, np.zeros(4), 0.0, True)
    assert cadence.due(state, np.zeros(4), 0.001) is Due.TIME and cadence.rate_hz(state, 0.0) is None
