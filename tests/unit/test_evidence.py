"""Evidence that accumulates (``pipeline/judging/evidence.py``): Page's CUSUM against a real-face
baseline, its thresholds stated as false alarms per hour, and the smoother that labels by it."""

from __future__ import annotations

import logging
import math
from statistics import NormalDist

import numpy as np
import pytest

from core.errors import ConfigError, InputError
from pipeline.judging.evidence import (
    LEVELS,
    PACKAGED,
    PACKAGED_VOICE,
    VOICE,
    AlarmRule,
    Baseline,
    Evidence,
    RealScores,
    alarm_rule,
    false_alarms_per_hour,
    fit_real_scores,
    load_baseline,
    save_baseline,
)
from pipeline.judging.listening import VoiceConfig
from pipeline.judging.smoothing import Smoothing, SmoothingConfig, TrackSmoother

# real faces whose logit(P(fake)) is standard normal: z(p) is logit(p) itself (within ±2.58)
NORMAL = RealScores(tuple(NormalDist().inv_cdf(float(q)) for q in LEVELS), 0.0, 0.0, 0.1, 1, 60.0)


def p_of(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_a_score_maps_to_its_place_among_real_faces_bounded_by_the_fitted_quantiles():
    assert float(NORMAL.z(p_of(0.0))) == pytest.approx(0.0, abs=1e-3)
    assert float(NORMAL.z(p_of(1.5))) == pytest.approx(1.5, abs=1e-3)
    assert float(NORMAL.z(1.0)) == pytest.approx(NormalDist().inv_cdf(0.995))  # P(fake) 1: the top quantile, no more
    assert float(NORMAL.z(0.0)) == pytest.approx(NormalDist().inv_cdf(0.005))


@pytest.mark.parametrize(
    ("zs", "absolute", "alarmed_at"),
    [
        # shift 2: each z adds 2 (z - 1); the sum never goes below 0
        ([1.0, 2.0, 2.0, 2.5], [0.0, 2.0, 4.0, 7.0], 3),
        ([2.0, -1.0, 2.0, 2.0, 2.0], [2.0, 0.0, 2.0, 4.0, 6.0], 4),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], None),
    ],
)
def test_the_absolute_evidence_is_pages_cusum_by_hand(zs, absolute, alarmed_at):
    evidence = Evidence(AlarmRule(NORMAL, 2.0, absolute=5.0, change=math.inf))
    alarms = []
    for i, z in enumerate(zs):
        evidence.add(np.array([z]))
        assert evidence.absolute[0] == pytest.approx(absolute[i])
        alarms.append(bool(evidence.alarmed()[0]))
    assert (alarms.index(True) if True in alarms else None) == alarmed_at


def test_the_change_evidence_waits_for_the_tracks_own_level_then_measures_against_it():
    """20 scores (2 s at 10 Hz) at z = -1 teach the level; a jump to +1 is 2 within-track sd (between
    0: within sd 1): shift 2 adds 2 (2 - 1) = 2. The level still learns from that score (the evidence
    is under half its threshold, 3 of 6), by 1/21 of the gap: -1 + 2/21; from then on it is held, and
    each score adds 2 ((1 - level) - 1)."""
    rule = AlarmRule(NORMAL, 2.0, absolute=math.inf, change=6.0)
    evidence = Evidence(rule)
    for _ in range(20):
        evidence.add(np.array([-1.0]))
        assert evidence.change[0] == 0.0
    assert evidence.level[0] == pytest.approx(-1.0)
    changes, alarms = [], []
    for _ in range(4):
        evidence.add(np.array([1.0]))
        changes.append(float(evidence.change[0]))
        alarms.append(bool(evidence.alarmed()[0]))
    level = -1.0 + 2.0 / 21
    step = 2.0 * ((1.0 - level) - 1.0)
    assert changes == pytest.approx([2.0, 2.0 + step, 2.0 + 2 * step, 2.0 + 3 * step])
    assert alarms == [False, False, False, True]
    assert evidence.level[0] == pytest.approx(level)  # the swapped face is measured against the face before it


def test_no_single_score_raises_an_alarm():
    rule = alarm_rule(NORMAL, 3.0, 0.1, 60.0)
    evidence = Evidence(rule)
    for _ in range(30):
        evidence.add(np.array([0.0]))
    evidence.add(NORMAL.z(np.array([1.0])))  # P(fake) 1.0: as far as a score can go
    assert not evidence.alarmed()[0]
    # whatever the fit: even the largest step a score can add is at most half of either threshold
    assert rule.change >= 2 * rule.shift * (rule.max_step - rule.shift / 2)
    assert rule.absolute >= 2 * rule.shift * (NormalDist().inv_cdf(0.995) - rule.shift / 2)


def _real_tracks(
    seed: int, tracks: int, seconds: float, between: float, rho: float, slow: float = 0.0, slow_rho: float = 0.0
) -> list[list[tuple[float, float]]]:
    """Real faces as the fit models them, in logit(P(fake)) of some detector: -1.5 + 0.8 z, z a
    face's level plus a fast wander and (``slow`` of the within-track variance) a slow one."""
    rng = np.random.default_rng(seed)
    steps = round(seconds / 0.1)
    level = rng.normal(0, math.sqrt(between), tracks)
    parts = [(rho, (1 - slow) * (1 - between)), (slow_rho, slow * (1 - between))]
    noise = [rng.normal(0, math.sqrt(v), tracks) for _, v in parts]
    out = [[] for _ in range(tracks)]
    for step in range(steps):
        logits = -1.5 + 0.8 * (level + noise[0] + noise[1])
        for i in range(tracks):
            out[i].append((step * 0.1, 1 / (1 + math.exp(-logits[i]))))
        noise = [r * n + math.sqrt(v * (1 - r * r)) * rng.normal(0, 1, tracks) for (r, v), n in zip(parts, noise)]
    return out


@pytest.mark.parametrize(("slow", "slow_rho"), [(0.0, 0.0), (0.6, 0.95)])
def test_calibrate_real_only_round_trip_holds_the_false_alarm_rate_on_fresh_real_faces(slow, slow_rho):
    """Fit on generated real scores (a fast wander alone, or with a slow one: an expression), pick
    the threshold for a rate, and count the alarms on fresh ones from the same process: within the
    binomial interval of what was asked (the fit's between-track share errs high, so fewer alarms
    is allowed more room than more)."""
    process = {"between": 0.3, "rho": 0.6, "slow": slow, "slow_rho": slow_rho}
    fitted = fit_real_scores(_real_tracks(1, 300, 20.0, **process))
    assert fitted.between == pytest.approx(0.3, abs=0.08)
    lags = np.array([1, 10, 20])  # 0.1 s, 1 s, 2 s
    truth = slow * slow_rho**lags + (1 - slow) * 0.6**lags
    assert fitted.correlation(lags) == pytest.approx(truth, abs=0.06)
    per_hour, track_s = 60.0, 20.0  # high enough to count in a few simulated hours
    rule = alarm_rule(fitted, 1.0, per_hour, track_s)
    fresh = _real_tracks(2, 3000, track_s, **process)
    evidence = Evidence(rule, len(fresh))
    alarmed = np.zeros(len(fresh), dtype=bool)
    for step in range(len(fresh[0])):
        evidence.add(fitted.z(np.array([track[step][1] for track in fresh])))
        alarmed |= evidence.alarmed()
    hours = len(fresh) * track_s / 3600
    expected = per_hour * hours  # 1000 tracks an hour: 333 alarms asked of 16.7 hours
    sd = math.sqrt(expected * (1 - expected / len(fresh)))
    assert expected - 4 * sd - 0.3 * expected <= alarmed.sum() <= expected + 4 * sd, (alarmed.sum(), expected)
    # and the simulation that chose it says the same of itself on another seed
    assert false_alarms_per_hour(rule, track_s) == pytest.approx(per_hour, rel=0.2)


def test_a_baseline_needs_enough_real_scores_and_keeps_to_its_file(tmp_path):
    with pytest.raises(InputError, match="at least 50 scores of real faces"):
        fit_real_scores([[(0.0, 0.2), (0.1, 0.3)]])
    real = fit_real_scores(_real_tracks(3, 10, 10.0, 0.2, 0.5))
    baseline = Baseline(("meso4", "mesoinception4"), "weighted_average", {"blazeface": real}, "generated")
    save_baseline(baseline, tmp_path / "b.json")
    again = load_baseline(tmp_path / "b.json")
    kept = again.real["blazeface"]
    assert kept.quantiles == pytest.approx(real.quantiles, abs=1e-5) and (kept.between, kept.rho) == (
        real.between,
        real.rho,
    )
    assert again.fits(["mesoinception4", "meso4"], "weighted_average")
    (tmp_path / "bad.json").write_text('{"detectors": ["x"], "fusion": "max", "finders": {"blazeface": {}}}')
    with pytest.raises(ConfigError, match="real-face baseline .*bad.json"):
        load_baseline(tmp_path / "bad.json")


def test_the_packaged_baseline_fits_the_default_mesonets_with_both_face_finders():
    baseline = load_baseline(PACKAGED)
    assert baseline.fits(["meso4", "mesoinception4"], "weighted_average")
    assert set(baseline.real) == {"blazeface", "mtcnn"} and "originals" in baseline.fitted_on
    smoothing = Smoothing.build(SmoothingConfig(), "mtcnn", ["meso4", "mesoinception4"], "weighted_average")
    assert smoothing.rule is not None and smoothing.rule.change < smoothing.rule.absolute


def test_other_detectors_without_a_baseline_get_the_ema_labels_said_once_and_a_named_baseline_must_fit(
    tmp_path, caplog
):
    with caplog.at_level(logging.WARNING):
        smoothing = Smoothing.build(SmoothingConfig(), "blazeface", ["xception"], "weighted_average")
    assert smoothing.rule is None and smoothing.config.method == "ema"
    assert "dfstream calibrate --real-only" in caplog.text
    with pytest.raises(ConfigError, match=r"smoothing.baseline .*fitted for meso4\+mesoinception4"):
        Smoothing.build(SmoothingConfig(baseline=str(PACKAGED)), "blazeface", ["xception"], "weighted_average")


def test_a_config_from_before_with_ema_thresholds_still_loads_and_labels_as_it_did():
    config = SmoothingConfig.model_validate({"method": "ema", "alpha": 0.3, "enter": 0.7, "leave": 0.4})
    smoothing = Smoothing.build(config, "blazeface", ["meso4", "mesoinception4"], "weighted_average")
    assert smoothing.rule is None
    smoother = smoothing.track()
    labels = [smoother.update(p, 0.0, i / 30).label for i, p in enumerate([0.9] * 40)]
    assert labels[-1] == "fake" and smoother.update(0.9, 0.0, 40 / 30).evidence is None


def test_the_smoother_labels_by_evidence_holds_through_a_dip_and_leaves_once_it_is_spent():
    rule = AlarmRule(NORMAL, 2.0, absolute=math.inf, change=6.0)
    smoother = TrackSmoother(SmoothingConfig(min_frames=1), rule)
    t, labels = 0.0, []
    for z in [-1.0] * 20 + [1.0] * 4 + [-0.5] * 2 + [1.0] * 2 + [-1.0] * 20:
        out = smoother.update(p_of(z), 0.0, t)
        labels.append((out.label, out.calm, out.evidence))
        t += 0.1
    assert [label for label, _, _ in labels[:20]] == ["real"] * 20 and all(calm for _, calm, _ in labels[:20])
    assert labels[22][0] == "real" and not labels[21][1]  # evidence on its way: no longer calm
    assert labels[23][0] == "fake" and labels[23][2] == 1.0  # the fourth score past the level
    assert [label for label, _, _ in labels[23:28]] == ["fake"] * 5  # a dip of two scores: still fake
    assert labels[-1][0] == "real"  # spent: evidence back to 0 against the held level
    first_real = next(i for i in range(23, len(labels)) if labels[i][0] == "real")
    assert labels[first_real][2] == 0.0


def test_cusum_without_its_rule_is_refused():
    with pytest.raises(ConfigError, match="needs its alarm rule"):
        TrackSmoother(SmoothingConfig())


def test_the_voice_is_alarmed_by_evidence_against_the_packaged_real_speech_baseline():
    """AASIST calls most real studio speech spoof (P ~ 1, as it does espeak-ng): against the real
    recordings it was fitted on, a voice it calls spoof with certainty is alarmed only after minutes of
    it, never in a few windows; a voice model without a baseline gets the ema's labels, said once."""
    baseline = load_baseline(PACKAGED_VOICE)
    assert baseline.fits(["aasist"], "weighted_average") and set(baseline.real) == {VOICE}
    voice = VoiceConfig()
    assert (voice.smoothing.method, voice.smoothing.period_s) == ("cusum", 2.0)
    smoothing = Smoothing.build(voice.smoothing, VOICE, ["aasist"], "weighted_average", PACKAGED_VOICE)
    assert smoothing.rule is not None and smoothing.rule.real == baseline.real[VOICE]
    smoother = smoothing.track()
    labels = [smoother.update(1.0, 0.0, 2.0 * i).label for i in range(1, 301)]  # ten minutes of windows
    first = labels.index("fake")
    assert 60 <= 2.0 * (first + 1) <= 600 and labels[first:] == ["fake"] * (300 - first)
    speech = VoiceConfig().smoothing
    calm = Smoothing.build(speech, VOICE, ["aasist"], "weighted_average", PACKAGED_VOICE).track()
    assert {calm.update(p, 0.0, 2.0 * i).label for i, p in enumerate([0.2, 0.9, 0.5, 1.0] * 75, 1)} <= {
        "uncertain",
        "real",
    }


def test_a_voice_section_from_before_keeps_the_voices_window_and_a_named_baseline_must_fit():
    voice = VoiceConfig.model_validate({"smoothing": {"enter": 0.8}})  # a file from before: fields over the voice's
    assert (voice.smoothing.method, voice.smoothing.period_s, voice.smoothing.enter) == ("cusum", 2.0, 0.8)
    assert VoiceConfig.model_validate({"smoothing": {"method": "ema"}}).smoothing.alpha == 0.6
    with pytest.raises(ConfigError, match=r"smoothing.baseline .*fitted for aasist .* with voice"):
        Smoothing.build(
            voice.smoothing.model_copy(update={"baseline": str(PACKAGED_VOICE)}),
            VOICE,
            ["aasist_l"],
            "weighted_average",
            PACKAGED_VOICE,
        )


def test_a_voice_model_without_the_packaged_baseline_is_labelled_by_the_ema_said_once(caplog):
    with caplog.at_level(logging.WARNING):
        smoothing = Smoothing.build(VoiceConfig().smoothing, VOICE, ["aasist_l"], "weighted_average", PACKAGED_VOICE)
    assert smoothing.rule is None and smoothing.config.method == "ema"
    assert "baseline of real speech" in caplog.text and "dfstream calibrate --real-only" in caplog.text


def test_a_swap_after_a_calm_stretch_is_measured_against_the_level_of_the_time_before_it():
    """A calm track is scored twice a second: its level is the mean of its scores by the time they
    stand for, so a face swapped after six calm seconds is flagged as soon as after six seconds
    scored ten times a second (by count, its few scores let the new face into its level)."""
    rule = AlarmRule(NORMAL, 2.0, absolute=math.inf, change=12.0)

    def scores_to_alarm(before_hz: float) -> int:
        evidence = Evidence(rule)
        for _ in range(round(6 * before_hz)):
            evidence.add(np.array([-1.0]), 10.0 / before_hz)  # each calm score stands for its 0.1 s periods
        for n in range(1, 100):
            evidence.add(np.array([0.8]))
            if evidence.alarmed()[0]:
                return n
        return 100

    assert scores_to_alarm(2.0) == scores_to_alarm(10.0) <= 10  # 17 by count


def test_a_baseline_from_before_the_slow_wander_loads_as_one_ar1():
    data = fit_real_scores(_real_tracks(3, 10, 10.0, 0.2, 0.5)).to_dict()
    del data["slow"], data["slow_rho"]
    old = RealScores.from_dict(data)
    assert (old.slow, old.slow_rho) == (0.0, 0.0) and old.correlation(np.array([2]))[0] == pytest.approx(old.rho**2)
