"""Image preprocessing shared by every detector: face crop → enhancement → augmentation → resize → tensor.

Each detector declares a ``PreprocessingConfig`` (its input size, interpolation, normalisation,
colour order); the same object serves single images in a notebook and batches in the runtime.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import torch
from pydantic import ConfigDict, Field, field_validator, model_validator

from core.strict import StrictModel
from pipeline.models.detections import Box
from pipeline.models.faces.finder import FaceDetector, FacesConfig
from pipeline.models.faces.landmarks import align_matrix
from pipeline.models.images import ImageLike, to_rgb_array

_INTERPOLATION = {
    # INTER_NEAREST_EXACT samples pixel centres like PIL's NEAREST, which Keras' load_img uses;
    # plain INTER_NEAREST is shifted by half a pixel and changes MesoNet's scores.
    "nearest": cv2.INTER_NEAREST_EXACT,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


class AugmentationType(str, enum.Enum):
    """BASIC: flips and mild photometric/geometric jitter. ADVANCED: BASIC plus the degradations
    deepfakes meet in the wild (JPEG recompression, blur, sensor noise, colour shifts)."""

    BASIC = "basic"
    ADVANCED = "advanced"


class PreprocessingConfig(StrictModel):
    model_config = ConfigDict(frozen=True)

    input_size: tuple[int, int] = (224, 224)  # (height, width) of the model input
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    normalize: bool = True  # pixels are always scaled to [0, 1]; this then applies (x - mean) / std
    interpolation: Literal["nearest", "bilinear", "bicubic", "area"] = "bilinear"
    # stretch: resize to input_size whatever the aspect; longest_side_pad: scale the longest side
    # to the input size keeping the aspect (area when shrinking, bicubic when enlarging, whatever
    # ``interpolation`` says), then pad with black to a centred square (the DFDC winner's rule)
    resize_mode: Literal["stretch", "longest_side_pad"] = "stretch"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    augment: bool = False
    augmentation_type: AugmentationType = AugmentationType.BASIC
    augmentation_seed: int | None = None
    enable_face_detection: bool = False
    face_crop_margin: float = Field(0.2, ge=0.0, le=2.0)  # fraction of the box width/height added on each side
    # outward: the grown box rounded outwards; integer: the box truncated to whole pixels first and
    # the margin truncated too (the DFDC winner's int(box), w // 3)
    face_crop_rounding: Literal["outward", "integer"] = "outward"
    # aligned: the face turned upright and scaled onto a five-point template (eyes, nose tip, mouth:
    # ArcFace's, as DeepfakeBench aligns its training faces), ``face_crop_margin`` of it on each side,
    # where the face finder gives landmarks (both do); the box crop where it does not
    face_crop_align: bool = False
    face_min_size: int = Field(20, ge=8)
    enable_noise_reduction: bool = False
    noise_reduction_strength: float = Field(0.1, gt=0.0, le=1.0)
    enable_histogram_equalization: bool = False
    enable_sharpening: bool = False
    sharpening_strength: float = Field(1.0, gt=0.0, le=10.0)

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError(f"input_size {value}: both sides must be >= 8")
        return value

    @model_validator(mode="after")
    def _positive_std(self) -> PreprocessingConfig:
        if min(self.std) <= 0:
            raise ValueError(f"std {self.std}: every channel must be > 0")
        return self


class UnifiedPreprocessor:
    """Apply a ``PreprocessingConfig`` to RGB images (PIL or numpy HxWx3 uint8).

    ``prepare`` returns the final uint8 image (what the model sees, before scaling), ``preprocess``
    the CxHxW float tensor, ``preprocess_batch`` an NxCxHxW tensor.
    """

    def __init__(self, config: PreprocessingConfig | None = None):
        self.config = config or PreprocessingConfig()
        self._rng = np.random.default_rng(self.config.augmentation_seed)
        self._faces: FaceDetector | None = None
        self._faces_lock = threading.Lock()
        mean = torch.tensor(self.config.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.config.std, dtype=torch.float32).view(3, 1, 1)
        if self.config.channel_order == "BGR":
            mean, std = mean.flip(0), std.flip(0)
        self._mean, self._std = mean, std

    # ---- public surface -------------------------------------------------------------------
    def preprocess(self, image: ImageLike) -> torch.Tensor:
        return self._to_tensor(self.prepare(image)[None])[0]

    def preprocess_batch(self, images: Sequence[ImageLike]) -> torch.Tensor:
        return self._to_tensor(np.stack([self.prepare(image) for image in images]))

    def prepare(self, image: ImageLike) -> np.ndarray:
        """Face crop, enhancement, augmentation and resize; returns HxWx3 uint8 in ``channel_order``."""
        cfg = self.config
        array = to_rgb_array(image)
        if cfg.enable_face_detection:
            array, _ = self.crop_face(array)
        if cfg.enable_noise_reduction:
            array = reduce_noise(array, cfg.noise_reduction_strength)
        if cfg.enable_histogram_equalization:
            array = equalize_histogram(array)
        if cfg.enable_sharpening:
            array = sharpen(array, cfg.sharpening_strength)
        if cfg.augment:
            array = self._augment(array)
        array = self.resize(array)
        if cfg.channel_order == "BGR":
            array = array[:, :, ::-1]
        return np.ascontiguousarray(array)

    def resize(self, array: np.ndarray) -> np.ndarray:
        height, width = self.config.input_size
        if self.config.resize_mode == "longest_side_pad":
            return _longest_side_pad(array, height, width)
        if array.shape[:2] == (height, width):
            return array
        return cv2.resize(array, (width, height), interpolation=_INTERPOLATION[self.config.interpolation])

    def detect_faces(self, image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """MTCNN boxes (N, 4) as x1, y1, x2, y2 and their probabilities (N,); empty when no face."""
        array = to_rgb_array(image)
        with self._faces_lock:
            if self._faces is None:  # built on first use: MTCNN costs a second and most users never crop
                self._faces = FaceDetector(
                    FacesConfig(
                        model="mtcnn",
                        min_face_size=self.config.face_min_size,
                        min_probability=0.0,
                        max_faces=1000,
                        detect_max_side=None,
                        device="cpu",
                    )
                )
            found = self._faces.detect([array])[0]
        return found.xyxy, found.scores

    def crop_face(self, image: ImageLike) -> tuple[np.ndarray, Box | None]:
        """Crop the largest face with ``face_crop_margin``; the whole image and None when there is none."""
        array = to_rgb_array(image)
        boxes, _ = self.detect_faces(array)
        if len(boxes) == 0:
            return array, None
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        x1, y1, x2, y2 = (float(v) for v in boxes[int(np.argmax(areas))])
        return self.crop(array, (x1, y1, x2, y2)), (x1, y1, x2, y2)

    def crop(self, array: np.ndarray, box: Box, landmarks: np.ndarray | None = None) -> np.ndarray:
        """The face ``box`` of ``array`` cut the way this profile's model was trained on: aligned on
        its ``landmarks`` (eyes, nose tip, mouth centre) when the profile says so and the face
        finder gave them (not None, not NaN), else the box grown by the margin."""
        if self.config.face_crop_align and landmarks is not None and bool(np.isfinite(landmarks).all()):
            return crop_aligned(array, landmarks, self.config.face_crop_margin)
        return crop_with_margin(array, box, self.config.face_crop_margin, self.config.face_crop_rounding)

    # ---- internals --------------------------------------------------------------------------
    def _to_tensor(self, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        if self.config.normalize:
            tensor = (tensor - self._mean) / self._std
        return tensor.contiguous()

    def _augment(self, array: np.ndarray) -> np.ndarray:
        rng = self._rng
        out = array
        if rng.random() < 0.5:
            out = out[:, ::-1]
        out = _jitter_brightness_contrast(out, rng, 0.1)
        out = _random_shift_scale(out, rng, max_shift=0.05, max_scale=0.05, max_angle=0.0)
        if self.config.augmentation_type is AugmentationType.ADVANCED:
            out = _random_shift_scale(out, rng, max_shift=0.0, max_scale=0.0, max_angle=10.0)
            out = _jitter_hue_saturation(out, rng)
            if rng.random() < 0.5:
                out = _jpeg(out, int(rng.integers(40, 96)))
            if rng.random() < 0.3:
                out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(rng.uniform(0.3, 1.5)))
            if rng.random() < 0.3:
                noise = rng.normal(0.0, rng.uniform(2.0, 8.0), out.shape)
                out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out)


def _longest_side_pad(array: np.ndarray, height: int, width: int) -> np.ndarray:
    size = min(height, width)
    h, w = array.shape[:2]
    if max(h, w) != size:
        scale = size / max(h, w)
        new_w, new_h = (size, int(h * scale)) if w > h else (int(w * scale), size)  # truncated, as the reference does
        interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        array = cv2.resize(array, (max(new_w, 1), max(new_h, 1)), interpolation=interpolation)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = array.shape[:2]
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = array
    return out


def crop_with_margin(array: np.ndarray, box: Box, margin: float, rounding: str = "outward") -> np.ndarray:
    """Crop ``box`` grown by ``margin`` x its width/height on each side, clamped to the image."""
    left, top, right, bottom = margin_window(array.shape[:2], box, margin, rounding)
    if right - left < 2 or bottom - top < 2:
        return array
    return array[top:bottom, left:right]


ALIGNED_SIDE = 256  # px: the aligned crop's side before the model's resize (DeepfakeBench's frames)


def crop_aligned(array: np.ndarray, landmarks: np.ndarray, margin: float) -> np.ndarray:
    """The face whose (4, 2) ``landmarks`` are given, turned and scaled onto the template
    (``faces.landmarks.TEMPLATE``) in an ``ALIGNED_SIDE`` square; outside the image is black."""
    matrix = align_matrix(landmarks, ALIGNED_SIDE, margin)
    return cv2.warpAffine(array, matrix, (ALIGNED_SIDE, ALIGNED_SIDE), flags=cv2.INTER_LINEAR)


def margin_window(
    shape: tuple[int, ...], box: Box, margin: float, rounding: str = "outward"
) -> tuple[int, int, int, int]:
    """The pixels (left, top, right, bottom) that ``crop_with_margin`` cuts from an image of ``shape``."""
    height, width = shape[:2]
    if rounding == "integer":
        x1, y1, x2, y2 = (int(v) for v in box)
        pad_w, pad_h = int((x2 - x1) * margin + 1e-9), int((y2 - y1) * margin + 1e-9)  # 1e-9: 99 * (1/3) is 32.999...
        return max(0, x1 - pad_w), max(0, y1 - pad_h), min(width, x2 + pad_w), min(height, y2 + pad_h)
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left = int(max(0, np.floor(x1 - margin * w)))
    top = int(max(0, np.floor(y1 - margin * h)))
    right = int(min(width, np.ceil(x2 + margin * w)))
    bottom = int(min(height, np.ceil(y2 + margin * h)))
    return left, top, right, bottom


def reduce_noise(array: np.ndarray, strength: float) -> np.ndarray:
    """Non-local means; strength 0.1 gives h = 10, OpenCV's usual setting for photos."""
    h = 100.0 * strength
    return cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(array), None, h, h, 7, 21)


def equalize_histogram(array: np.ndarray) -> np.ndarray:
    """Equalise luminance only (YCrCb), so colours do not shift."""
    ycrcb = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2YCrCb)
    ycrcb[:, :, 0] = cv2.equalizeHist(ycrcb[:, :, 0])
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def sharpen(array: np.ndarray, strength: float) -> np.ndarray:
    """Unsharp mask: image + strength x (image - Gaussian blur)."""
    blurred = cv2.GaussianBlur(array, (0, 0), sigmaX=1.0)
    return cv2.addWeighted(array, 1.0 + strength, blurred, -strength, 0)


def _jitter_brightness_contrast(array: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    alpha = rng.uniform(1 - amount, 1 + amount)
    beta = rng.uniform(-amount, amount) * 255
    return cv2.convertScaleAbs(np.ascontiguousarray(array), alpha=alpha, beta=beta)


def _jitter_hue_saturation(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[:, :, 0] = (hsv[:, :, 0] + int(rng.integers(-5, 6))) % 180
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * rng.uniform(0.8, 1.2), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _random_shift_scale(
    array: np.ndarray, rng: np.random.Generator, max_shift: float, max_scale: float, max_angle: float
) -> np.ndarray:
    height, width = array.shape[:2]
    angle = rng.uniform(-max_angle, max_angle)
    scale = 1.0 + rng.uniform(-max_scale, max_scale)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[:, 2] += (rng.uniform(-max_shift, max_shift) * width, rng.uniform(-max_shift, max_shift) * height)
    return cv2.warpAffine(np.ascontiguousarray(array), matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)


def _jpeg(array: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(array[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1] if ok else array
