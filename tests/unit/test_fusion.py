"""Fusion, uncertainty and calibration against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from core.errors import EnsembleError, InsufficientModelsError
from pipeline import EnsembleConfig, EnsembleManager, FusionMethod
from pipeline.judging.calibration import PlattScaling, TemperatureScaling
from pipeline.judging.fusion import disagreement, fuse, temper, uncertainty
from tests.fixed_detector import FixedDetector

P = [0.9, 0.6, 0.2]
W = [1.0, 2.0, 1.0]


@pytest.mark.parametrize(
    "method, probability, is_fake, shares",
    [
        # (0.9·1 + 0.6·2 + 0.2·1) / 4
        (FusionMethod.WEIGHTED_AVERAGE, 0.575, True, [0.25, 0.5, 0.25]),
        # (0.9 + 0.6 + 0.2) / 3, weights ignored
        (FusionMethod.SOFT_VOTING, 1.7 / 3, True, [1 / 3, 1 / 3, 1 / 3]),
        # votes 1, 1, 0 weighted 1, 2, 1 → 3 / 4
        (FusionMethod.MAJORITY_VOTING, 0.75, True, [0.25, 0.5, 0.25]),
        # c = 0.8, 0.2, 0.6; exp(3.2)=24.5325, 2·exp(0.8)=4.4511, exp(2.4)=11.0232; sum 40.0068
        # → a = 0.61321, 0.11126, 0.27554; P = 0.55189 + 0.06676 + 0.05511
        (FusionMethod.ATTENTION_FUSION, 0.67375, True, [0.61321, 0.11126, 0.27554]),
        # the most decided model is 0.9 (c = 0.8)
        (FusionMethod.MAX_CONFIDENCE, 0.9, True, [1, 0, 0]),
        # the least decided is 0.6 (c = 0.2)
        (FusionMethod.MIN_CONFIDENCE, 0.6, True, [0, 1, 0]),
    ],
)
def test_fusion_methods(method, probability, is_fake, shares):
    fused = fuse(method, np.array(P), np.array(W), threshold=0.5, attention_temperature=0.25)
    assert fused.probability == pytest.approx(probability, abs=1e-4)
    assert fused.is_deepfake is is_fake
    assert fused.weights == pytest.approx(shares, abs=1e-4)


def test_majority_tie_is_broken_by_the_weighted_average():
    fused = fuse(FusionMethod.MAJORITY_VOTING, np.array([0.9, 0.2]), np.array([1.0, 1.0]))
    assert fused.probability == 0.5 and fused.is_deepfake  # average 0.55 >= 0.5
    fused = fuse(FusionMethod.MAJORITY_VOTING, np.array([0.6, 0.1]), np.array([1.0, 1.0]))
    assert not fused.is_deepfake  # average 0.35


def test_threshold_moves_the_decision():
    assert not fuse(FusionMethod.WEIGHTED_AVERAGE, np.array(P), np.array(W), threshold=0.6).is_deepfake


@pytest.mark.parametrize(
    "p, w, fused, threshold, expected",
    [
        # D = 2·std(0.9, 0.6) = 0.3; M = 1 - 0.25/0.5 = 0.5; U = 1 - 0.7·0.5
        ([0.9, 0.6], [1, 1], 0.75, 0.5, 0.65),
        # M = 1 - 0.05/0.7; U = 1 - 0.7·(0.05/0.7) = 0.95
        ([0.9, 0.6], [1, 1], 0.75, 0.7, 0.95),
        # models agree and are sure: D = 0, M = 0
        ([1.0, 1.0], [1, 1], 1.0, 0.5, 0.0),
        # half say 0, half say 1: D = 1
        ([0.0, 1.0], [1, 1], 0.5, 0.5, 1.0),
        # one model at the threshold: D = 0, M = 1
        ([0.5], [1], 0.5, 0.5, 1.0),
    ],
)
def test_uncertainty(p, w, fused, threshold, expected):
    assert uncertainty(np.array(p), np.array(w), fused, threshold) == pytest.approx(expected, abs=1e-9)


def test_weighted_disagreement():
    # mean = 0.25·0 + 0.75·1 = 0.75; var = 0.25·0.5625 + 0.75·0.0625 = 0.1875; D = 2·sqrt(0.1875)
    assert disagreement(np.array([0.0, 1.0]), np.array([1.0, 3.0])) == pytest.approx(2 * np.sqrt(0.1875))


def test_temperature_softens_logits():
    # logit(0.9) = ln 9; halved: ln 3 → σ = 3/4
    assert temper(np.array([0.9]), 2.0)[0] == pytest.approx(0.75)
    assert temper(np.array([0.9]), 1.0)[0] == pytest.approx(0.9)


@pytest.mark.parametrize("bad_w", [[-1.0, 1.0], [0.0, 0.0]])
def test_bad_weights_are_refused(bad_w):
    with pytest.raises(ValueError, match="weights"):
        fuse(FusionMethod.WEIGHTED_AVERAGE, np.array([0.1, 0.2]), np.array(bad_w))


# ---- calibration ---------------------------------------------------------------------------------
def _labelled(n: int, true_logit) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-true_logit(z)))).astype(int)
    return 1.0 / (1.0 + np.exp(-z)), labels


def test_platt_scaling_recovers_the_true_mapping():
    scores, labels = _labelled(40000, lambda z: 1.5 * z - 0.5)
    fitted = PlattScaling.fit(scores, labels)
    assert fitted.a == pytest.approx(1.5, abs=0.08) and fitted.b == pytest.approx(-0.5, abs=0.08)


def test_temperature_scaling_recovers_the_true_temperature():
    scores, labels = _labelled(40000, lambda z: z / 2.0)
    assert TemperatureScaling.fit(scores, labels).temperature == pytest.approx(2.0, abs=0.12)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([0.1, 0.2], [1, 1], "both real"),
        ([0.1, 1.2], [0, 1], "in \\[0, 1\\]"),
        ([0.1], [1], ">= 2"),
        ([0.1, 0.2], [0, 2], "labels 0"),
    ],
)
def test_calibration_refuses_unusable_data(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        PlattScaling.fit(np.array(scores), np.array(labels))


# ---- the manager ---------------------------------------------------------------------------------
def ensemble_of(*detectors: FixedDetector, **config) -> EnsembleManager:
    manager = EnsembleManager(EnsembleConfig(**config))
    for d in detectors:
        d.load_model()
        manager.add_model(d.model_name, d)
    return manager


def test_predict_ensemble_fuses_calibrated_models(astronaut, tmp_path):
    manager = ensemble_of(FixedDetector("a", p=0.9), FixedDetector("b", p=0.6), default_weights={"a": 1.0, "b": 3.0})
    result = manager.predict_ensemble(astronaut)
    assert result.fake_probability == pytest.approx((0.9 + 3 * 0.6) / 4)
    assert result.is_deepfake and result.ensemble_confidence == pytest.approx(result.fake_probability)
    assert result.model_weights == {"a": 0.25, "b": 0.75}
    assert set(result.model_results) == {"a", "b"} and result.inference_time > 0

    manager.set_calibrator("a", TemperatureScaling(2.0))  # 0.9 → 0.75
    assert manager.predict_ensemble(astronaut).model_scores["a"] == pytest.approx(0.75)
    manager.save_calibration(tmp_path / "calibration.json")
    fresh = ensemble_of(FixedDetector("a", p=0.9))
    fresh.load_calibration(tmp_path / "calibration.json")
    assert fresh.predict_ensemble(astronaut).fake_probability == pytest.approx(0.75)


def test_fit_calibration_through_the_manager():
    manager = ensemble_of(FixedDetector("a", p=0.9))
    scores, labels = _labelled(2000, lambda z: z)
    calibrator = manager.fit_calibration("a", scores, labels, method="temperature")
    assert manager.calibrators["a"] is calibrator


def test_a_failing_model_is_left_out_while_enough_answer(astronaut):
    manager = ensemble_of(FixedDetector("ok", p=0.8), FixedDetector("broken", fail=True), min_models=1)
    result = manager.predict_ensemble(astronaut)
    assert result.model_scores == {"ok": 0.8}
    assert "broken: inference failed: RuntimeError: CUDA error" in result.failed_models["broken"]


def test_below_min_models_is_a_clear_error(astronaut):
    manager = ensemble_of(FixedDetector("ok", p=0.8), FixedDetector("broken", fail=True), min_models=2)
    with pytest.raises(InsufficientModelsError, match="1 model\\(s\\) answered but min_models is 2; failed: broken"):
        manager.predict_ensemble(astronaut)
    with pytest.raises(InsufficientModelsError, match="no models"):
        EnsembleManager().predict_ensemble(astronaut)


def test_max_models_is_enforced():
    manager = ensemble_of(FixedDetector("a"), max_models=1)
    with pytest.raises(EnsembleError, match="max_models=1"):
        manager.add_model("b", FixedDetector("b"))


def test_uncertainty_can_be_switched_off(astronaut):
    result = ensemble_of(FixedDetector("a", p=0.9), enable_uncertainty=False).predict_ensemble(astronaut)
    assert result.uncertainty is None


@pytest.mark.parametrize(
    "config, message",
    [
        ({"fusion_method": "attention_fusion", "enable_attention": False}, "needs enable_attention"),
        ({"min_models": 3, "max_models": 2}, "min_models \\(3\\) is greater than max_models"),
        ({"temperature": 0}, "temperature"),
        ({"default_weights": {"a": -1}}, "default_weights must be >= 0"),
        ({"confidence_threshold": 1.0}, "confidence_threshold"),
        ({"fusion_method": "median"}, "fusion_method"),
        ({"temprature": 1.0}, "temprature"),
    ],
)
def test_invalid_ensemble_config(config, message):
    with pytest.raises(ValidationError, match=message):
        EnsembleConfig(**config)


def test_all_methods_run_through_the_manager(astronaut):
    for method in FusionMethod:
        result = ensemble_of(
            FixedDetector("a", p=0.9), FixedDetector("b", p=0.3), fusion_method=method
        ).predict_ensemble(astronaut)
        assert 0.0 <= result.fake_probability <= 1.0 and result.fusion_method is method
