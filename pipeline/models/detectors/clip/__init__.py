"""Detectors built on CLIP's image encoder: GenD, UnivFD and Effort, each loaded in the key layout
its authors ship (``towers.py`` says which implementation of the encoder takes which)."""

from __future__ import annotations

from pipeline.models.detectors.clip.effort import EFFORT_PREPROCESSING, EffortDetector
from pipeline.models.detectors.clip.gend import GEND_PREPROCESSING, GenDDetector
from pipeline.models.detectors.clip.towers import CLIP_PREPROCESSING
from pipeline.models.detectors.clip.univfd import UnivFDDetector

__all__ = [
    "CLIP_PREPROCESSING",
    "EFFORT_PREPROCESSING",
    "GEND_PREPROCESSING",
    "EffortDetector",
    "GenDDetector",
    "UnivFDDetector",
]
