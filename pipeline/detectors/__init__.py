"""Built-in detectors, by the name ``ModelRegistry`` knows them."""

from __future__ import annotations

from ..detector import BaseDetector
from ..preprocessing import PreprocessingConfig
from .deepfakebench import (
    DEEPFAKEBENCH_PREPROCESSING,
    DFBEfficientNetB4Detector,
    DFBMeso4Detector,
    DFBMesoInception4Detector,
    DFBXceptionDetector,
)
from .dfdc import DFDC_WINNER_PREPROCESSING, DFDCWinnerB7Detector
from .mesonet import MESONET_PREPROCESSING, Meso4Detector, MesoInception4Detector
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

# the manifest's ``profile`` names one of these
PROFILES: dict[str, PreprocessingConfig] = {
    "mesonet": MESONET_PREPROCESSING,
    "deepfakebench": DEEPFAKEBENCH_PREPROCESSING,
    "dfdc_winner": DFDC_WINNER_PREPROCESSING,
}

__all__ = [
    "BUILTIN_DETECTORS",
    "PROFILES",
    "DFBEfficientNetB4Detector",
    "DFBMeso4Detector",
    "DFBMesoInception4Detector",
    "DFBXceptionDetector",
    "DFDCWinnerB7Detector",
    "Meso4Detector",
    "MesoInception4Detector",
    "TorchDetector",
]
