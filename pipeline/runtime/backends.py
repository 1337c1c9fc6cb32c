"""Where faces are found and crops are scored, behind one seam: ``submit(item) -> result``.

The runtime's own backends are in-process dynamic batchers (``batching.Batcher``), one for faces
and one per detector, fed by every stream; a model the Ray engine serves from a shared pool (a Ray
Serve deployment, batched across the cluster) is reached through the same seam. Workers, fusion,
smoothing and sinks never know which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from pipeline.models.detections import Box, Detections

T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

# a full frame, a face's box in it and its landmarks ((4, 2): eyes, nose tip, mouth centre; None
# where the finder gave none): what ``BaseDetector.score_found`` takes
Crop = tuple[np.ndarray, Box, np.ndarray | None]


class Submit(Protocol[T_contra, R_co]):
    async def submit(self, item: T_contra) -> R_co: ...


@dataclass(frozen=True)
class Backends:
    faces: Submit[np.ndarray, Detections]  # a full-resolution frame in, its faces in full-resolution pixels out
    models: dict[str, Submit[Crop, float]]  # per detector name: P(fake) of one face
    voices: dict[str, Submit[np.ndarray, float]] = field(default_factory=dict)  # per voice model: P(spoof) of a window


@dataclass(frozen=True)
class Answers:
    """Every model's answer for one input (a face, a voice window): the probability from those that
    answered, the error of the others."""

    scores: dict[str, float]
    failed: dict[str, str]
