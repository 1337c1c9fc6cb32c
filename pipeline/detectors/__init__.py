"""Built-in detectors, by the name ``ModelRegistry`` knows them."""

from __future__ import annotations

from ..detector import BaseDetector
from .deepfakebench import DFBEfficientNetB4Detector, DFBMeso4Detector, DFBMesoInception4Detector, DFBXceptionDetector
from .dfdc import DFDCWinnerB7Detector
from .mesonet import Meso4Detector, MesoInception4Detector
from .torch_detector import TorchDetector

BUILTIN_DETECTORS: dict[str, type[BaseDetector]] = {
    "meso4": Meso4Detector,
    "mesoinception4": MesoInception4Detector,
    "dfb_xception": DFBXceptionDetector,
    "dfb_efficientnet_b4": DFBEfficientNetB4Detector,
    "dfb_meso4": DFBMeso4Detector,
    "dfb_meso4inception": DFBMesoInception4Detector,
    "dfdc_b7": DFDCWinnerB7Detector,
}

__all__ = [
    "BUILTIN_DETECTORS",
    "DFBEfficientNetB4Detector",
    "DFBMeso4Detector",
    "DFBMesoInception4Detector",
    "DFBXceptionDetector",
    "DFDCWinnerB7Detector",
    "Meso4Detector",
    "MesoInception4Detector",
    "TorchDetector",
]
