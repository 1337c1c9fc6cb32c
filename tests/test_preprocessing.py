"""Each preprocessing option does what it says, shown on a real photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pipeline import AugmentationType, PreprocessingConfig, UnifiedPreprocessor


def prep(**options) -> UnifiedPreprocessor:
    return UnifiedPreprocessor(PreprocessingConfig(**options))


def test_input_size_is_height_width(astronaut):
    tensor = prep(input_size=(120, 200)).preprocess(astronaut)
    assert tuple(tensor.shape) == (3, 120, 200) and tensor.dtype.is_floating_point


def test_normalize_applies_mean_and_std(astronaut):
    raw = prep(normalize=False, input_size=(64, 64)).preprocess(astronaut)
    assert 0.0 <= raw.min() and raw.max() <= 1.0
    normalized = prep(normalize=True, mean=(0.5, 0.4, 0.3), std=(0.1, 0.2, 0.25), input_size=(64, 64)).preprocess(
        astronaut
    )
    expected = (raw.numpy() - np.array([0.5, 0.4, 0.3]).reshape(3, 1, 1)) / np.array([0.1, 0.2, 0.25]).reshape(3, 1, 1)
    assert np.allclose(normalized.numpy(), expected, atol=1e-5)


def test_bgr_order_swaps_channels_and_their_statistics(astronaut):
    rgb = prep(input_size=(64, 64), normalize=False).prepare(astronaut)
    bgr = prep(input_size=(64, 64), normalize=False, channel_order="BGR").prepare(astronaut)
    assert np.array_equal(bgr, rgb[:, :, ::-1])
    t_rgb = prep(input_size=(64, 64)).preprocess(astronaut)
    t_bgr = prep(input_size=(64, 64), channel_order="BGR").preprocess(astronaut)
    assert np.allclose(t_bgr.numpy(), t_rgb.numpy()[::-1], atol=1e-5)  # mean/std follow the channels


def test_batch_equals_singles(astronaut):
    p = prep(input_size=(64, 64))
    batch = p.preprocess_batch([astronaut, astronaut[::2, ::2]])
    assert tuple(batch.shape) == (2, 3, 64, 64)
    assert np.allclose(batch[1].numpy(), p.preprocess(astronaut[::2, ::2]).numpy())


def test_face_detection_crops_the_face_with_margin(astronaut):
    p = prep(enable_face_detection=True, face_crop_margin=0.1)
    boxes, probs = p.detect_faces(astronaut)
    assert len(boxes) == 1 and probs[0] > 0.99
    x1, y1, x2, y2 = boxes[0]
    assert 160 < x1 < 200 and 50 < y1 < 80 and 250 < x2 < 290 and 150 < y2 < 190  # the astronaut's face
    crop, box = p.crop_face(astronaut)
    w, h = x2 - x1, y2 - y1
    assert crop.shape[1] == pytest.approx(1.2 * w, abs=3) and crop.shape[0] == pytest.approx(1.2 * h, abs=3)
    # with no face in sight the whole image is used
    sky = np.full((200, 200, 3), 120, np.uint8)
    assert p.crop_face(sky)[1] is None and p.crop_face(sky)[0].shape == sky.shape


def test_noise_reduction_removes_noise(astronaut):
    rng = np.random.default_rng(0)
    clean = astronaut[100:228, 100:228]
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    denoised = prep(enable_noise_reduction=True, noise_reduction_strength=0.2, input_size=(128, 128)).prepare(noisy)
    error = lambda img: np.abs(img.astype(float) - clean).mean()
    assert error(denoised) < 0.7 * error(noisy)


def test_histogram_equalization_spreads_luminance(astronaut):
    dull = (astronaut // 4 + 96).astype(np.uint8)  # contrast squeezed into 96..159
    out = prep(enable_histogram_equalization=True, input_size=(512, 512)).prepare(dull)
    luma = lambda img: cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert luma(out).std() > 2 * luma(dull).std()


def test_sharpening_raises_edge_energy_with_strength(astronaut):
    edges = lambda img: cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    base = edges(prep(input_size=(512, 512)).prepare(astronaut))
    mild = edges(prep(enable_sharpening=True, sharpening_strength=0.5, input_size=(512, 512)).prepare(astronaut))
    strong = edges(prep(enable_sharpening=True, sharpening_strength=1.5, input_size=(512, 512)).prepare(astronaut))
    assert base < mild < strong


@pytest.mark.parametrize("kind", list(AugmentationType))
def test_augmentation_varies_and_is_reproducible(astronaut, kind):
    make = lambda: prep(augment=True, augmentation_type=kind, augmentation_seed=5, input_size=(128, 128))
    first, second = make(), make()
    a = [first.prepare(astronaut) for _ in range(4)]
    b = [second.prepare(astronaut) for _ in range(4)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # same seed, same images
    assert not all(np.array_equal(a[0], x) for x in a[1:])  # but each call differs
    plain = prep(input_size=(128, 128)).prepare(astronaut)
    assert all(not np.array_equal(plain, x) for x in a)


def test_advanced_augmentation_degrades_more_than_basic(astronaut):
    plain = prep(input_size=(128, 128)).prepare(astronaut).astype(float)

    def mean_change(kind):
        p = prep(augment=True, augmentation_type=kind, augmentation_seed=1, input_size=(128, 128))
        return np.mean([np.abs(p.prepare(astronaut) - plain).mean() for _ in range(20)])

    assert mean_change(AugmentationType.ADVANCED) > mean_change(AugmentationType.BASIC)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"input_size": (0, 224)}, "both sides must be >= 8"),
        ({"std": (0.2, 0.0, 0.2)}, "every channel must be > 0"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"noise_reduction_strength": 0}, "noise_reduction_strength"),
        ({"interpolation": "lanczos9"}, "interpolation"),
        ({"face_crop_margins": 0.1}, "face_crop_margins"),
    ],
)
def test_invalid_preprocessing_config(options, message):
    with pytest.raises(ValidationError, match=message):
        PreprocessingConfig(**options)
