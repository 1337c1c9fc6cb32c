"""BaseDetector's promises (validation, timing, errors) and the registry's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import (
    ConfigError,
    InferenceError,
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotLoadedError,
)
from pipeline import DetectionResult, ModelRegistry, ModelStatus, PerformanceMonitor
from pipeline.models.config import DECLARED_TYPES
from pipeline.models.detectors import Meso4Detector, MesoInception4Detector
from pipeline.models.devices import resolve_device
from tests.fixed_detector import FixedDetector


@pytest.fixture
def detector() -> FixedDetector:
    d = FixedDetector("fixed", p=0.7)
    d.load_model()
    return d


@pytest.mark.parametrize(
    "image, message",
    [
        ("face.jpg", "must be a PIL.Image or a numpy array, got str"),
        (np.zeros((64, 64, 3), dtype=np.float32), "dtype is float32: expected uint8"),
        (np.zeros((64, 64, 2), dtype=np.uint8), "shape is (64, 64, 2): expected (height, width, 3)"),
        (np.zeros((3, 64, 64, 3), dtype=np.uint8), "shape is (3, 64, 64, 3)"),
        (np.zeros((4, 64, 3), dtype=np.uint8), "both sides must be >= 8"),
        (Image.new("CMYK", (64, 64)), "mode 'CMYK' is not supported"),
        (Image.new("I;16", (64, 64)), "mode 'I;16' is not supported"),
        (Image.new("RGB", (5, 64)), "is 5x64 pixels"),
    ],
)
def test_bad_images_get_a_clear_error(detector, image, message):
    with pytest.raises(InputError) as info:
        detector.predict(image)
    assert message in str(info.value)
    with pytest.raises(InputError):
        detector.predict_batch([np.zeros((64, 64, 3), np.uint8), image])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64, 3), np.uint8),
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        Image.new("L", (64, 64)),
        Image.new("RGBA", (64, 64)),
        Image.new("P", (64, 64)),
    ],
)
def test_convertible_images_are_accepted(detector, image):
    assert detector.predict(image).fake_probability == pytest.approx(0.7)


def test_predict_before_load_is_refused():
    with pytest.raises(ModelNotLoadedError, match="fixed: model is not loaded"):
        FixedDetector("fixed").predict(np.zeros((64, 64, 3), np.uint8))


def test_every_call_is_timed_and_reported(detector, astronaut):
    monitor = PerformanceMonitor()
    detector.attach_monitor(monitor)
    result = detector.predict(astronaut)
    assert result.inference_time > 0
    detector.predict_batch([astronaut, astronaut])
    metrics = monitor.get_model_metrics("fixed")
    assert metrics["calls"] == 3 and metrics["successes"] == 3


def test_an_unexpected_exception_becomes_an_inference_error(astronaut):
    broken = FixedDetector("broken", fail=True)
    broken.load_model()
    monitor = PerformanceMonitor()
    broken.attach_monitor(monitor)
    with pytest.raises(InferenceError, match="broken: inference failed: RuntimeError") as info:
        broken.predict(astronaut)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert monitor.get_model_metrics("broken")["failures"] == 1


def test_detection_result_probability_and_confidence():
    assert DetectionResult(is_deepfake=False, confidence=0.8, model_name="m").fake_probability == pytest.approx(0.2)
    assert DetectionResult(is_deepfake=True, confidence=0.8, model_name="m").fake_probability == pytest.approx(0.8)
    result = DetectionResult.from_probability(0.3, "m")
    assert not result.is_deepfake and result.confidence == pytest.approx(0.7)
    with pytest.raises(ValueError, match="confidence 1.5 is outside"):
        DetectionResult(is_deepfake=True, confidence=1.5, model_name="m")


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")


# ---- registry ------------------------------------------------------------------------------------
def test_builtins_are_registered():
    registry = ModelRegistry()
    assert {"meso4", "mesoinception4"} <= set(registry.get_all_status())
    assert registry.get_status("meso4") is ModelStatus.REGISTERED
    assert ModelRegistry(builtins=False).get_all_status() == {}


def test_registry_statuses_and_errors(astronaut):
    registry = ModelRegistry(builtins=False)
    registry.register_model("good", FixedDetector, p=0.2)
    registry.register_model("refuses", FixedDetector, load_ok=False)
    registry.register_model("raises", FixedDetector)
    detector = registry.load_model("good")
    assert detector.model_name == "good"  # the registry name is the result's model name
    assert registry.get_status("good") is ModelStatus.READY
    assert detector.predict(astronaut).fake_probability == pytest.approx(0.2)

    with pytest.raises(ModelLoadError, match="raises: FileNotFoundError: no such checkpoint"):
        registry.load_model("raises", model_path="raise")
    assert registry.get_status("raises") is ModelStatus.FAILED
    assert "no such checkpoint" in registry.get_error("raises")

    statuses = registry.load_all_models()  # never raises; "raises" loads fine without a path
    assert statuses == {"good": ModelStatus.READY, "refuses": ModelStatus.FAILED, "raises": ModelStatus.READY}
    assert registry.get_error("refuses") == "refuses: load_model() returned False"
    assert registry.get_model("refuses") is None

    registry.unload_model("good")
    assert registry.get_model("good") is None and registry.get_status("good") is ModelStatus.UNLOADED
    with pytest.raises(ModelNotFoundError, match="unknown model 'nope'; registered: good, raises, refuses"):
        registry.get_model("nope")
    with pytest.raises(TypeError, match="not a BaseDetector subclass"):
        registry.register_model("bad", dict)


def test_builtin_without_weights_fails_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path))
    registry = ModelRegistry()
    with pytest.raises(ModelLoadError, match="run `dfstream models pull meso4_df`"):
        registry.load_model("meso4")
    assert registry.get_status("meso4") is ModelStatus.FAILED


@pytest.mark.weights
def test_builtins_load_from_the_cache_and_batch(weights_dir, monkeypatch, face_crop, astronaut):
    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(weights_dir))
    registry = ModelRegistry()
    statuses = registry.load_all_models()
    assert statuses["meso4"] is statuses["mesoinception4"] is ModelStatus.READY
    for name in set(statuses) - {"meso4", "mesoinception4", *DECLARED_TYPES}:  # the zoo's are not in this cache
        assert statuses[name] is ModelStatus.FAILED and "dfstream models pull" in registry.get_error(name)
    for name in DECLARED_TYPES:  # declared types: nothing to load without the user's file
        assert statuses[name] is ModelStatus.FAILED and "needs its model file" in registry.get_error(name)
    for name, cls in (("meso4", Meso4Detector), ("mesoinception4", MesoInception4Detector)):
        detector = registry.get_model(name)
        assert isinstance(detector, cls)
        info = detector.get_model_info()
        assert info.input_size == (256, 256) and info.license == "Apache-2.0" and info.num_parameters > 20000
        single = [detector.predict(img).fake_probability for img in (face_crop, astronaut)]
        batch = [r.fake_probability for r in detector.predict_batch([face_crop, astronaut])]
        assert batch == pytest.approx(single, abs=1e-6)  # one forward pass gives what single calls give
