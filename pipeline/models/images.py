"""Every image that enters a detector goes through here: one place that says what is accepted.

Accepted: a PIL image (RGB; L, LA, RGBA and P are converted to RGB), or a numpy array HxWx3 uint8 in
RGB order (HxW and HxWx4 uint8 are converted too). Anything else is an ``InputError`` that names
what was wrong, because a silent reinterpretation (BGR taken as RGB, floats taken as 0-255) ruins
scores without any visible failure.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from PIL import Image

from core.errors import InputError

ImageLike = Union[Image.Image, np.ndarray]

MIN_SIDE = 8
_CONVERTIBLE_MODES = {"RGB", "L", "LA", "RGBA", "P"}


def check_image(image: object) -> ImageLike:
    """Return ``image`` as RGB of the same kind (PIL stays PIL, numpy stays numpy), or raise."""
    if isinstance(image, Image.Image):
        if image.mode not in _CONVERTIBLE_MODES:
            raise InputError(f"image mode {image.mode!r} is not supported: expected RGB (or L, RGBA, P)")
        if min(image.size) < MIN_SIDE:
            raise InputError(f"image is {image.size[0]}x{image.size[1]} pixels: both sides must be >= {MIN_SIDE}")
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        return _check_array(image)
    raise InputError(f"image must be a PIL.Image or a numpy array, got {type(image).__name__}")


def to_rgb_array(image: object) -> np.ndarray:
    """Validate and return an HxWx3 uint8 RGB array (a view where possible, never a copy of an array)."""
    checked = check_image(image)
    if isinstance(checked, Image.Image):
        return np.asarray(checked)
    return checked


def _check_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise InputError(
            f"image array dtype is {array.dtype}: expected uint8 RGB (0-255); convert floats with (x * "
            "255).astype(np.uint8)"
        )
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"image array shape is {array.shape}: expected (height, width, 3)")
    if min(array.shape[:2]) < MIN_SIDE:
        raise InputError(f"image array shape is {array.shape}: both sides must be >= {MIN_SIDE}")
    return array[:, :, :3]
