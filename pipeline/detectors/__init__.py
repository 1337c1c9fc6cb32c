"""Built-in detectors, by the name ``ModelRegistry`` knows them."""

from __future__ import annotations

from ..detector import BaseDetector
from .mesonet import Meso4Detector, MesoInception4Detector
from .torch_detector import TorchDetector

BUILTIN_DETECTORS: dict[str, type[BaseDetector]] = {
    "meso4": Meso4Detector,
    "mesoinception4": MesoInception4Detector,
}

__all__ = ["BUILTIN_DETECTORS", "Meso4Detector", "MesoInception4Detector", "TorchDetector"]
