"""Built-in detectors. Each registers itself by name (``@register("meso4")``) when its module is
imported; ``pipeline.models`` imports this package, so a new ``ModelRegistry`` knows them all."""

from __future__ import annotations

from pipeline.models.detectors.clip import (
    CLIP_PREPROCESSING,
    EFFORT_PREPROCESSING,
    GEND_PREPROCESSING,
    EffortDetector,
    GenDDetector,
    UnivFDDetector,
)
from pipeline.models.detectors.declared import OnnxDetector, TorchScriptDetector
from pipeline.models.detectors.deepfakebench import (
    DEEPFAKEBENCH_PREPROCESSING,
    DFBEfficientNetB4Detector,
    DFBMeso4Detector,
    DFBMesoInception4Detector,
    DFBXceptionDetector,
)
from pipeline.models.detectors.dfdc import DFDC_WINNER_PREPROCESSING, DFDCWinnerB7Detector
from pipeline.models.detectors.hugging_face import HuggingFaceDetector
from pipeline.models.detectors.mesonet import MESONET_PREPROCESSING, Meso4Detector, MesoInception4Detector
from pipeline.models.detectors.torch_detector import TorchDetector
from pipeline.models.preprocessing import PreprocessingConfig

# the manifest's ``profile`` names one of these
PROFILES: dict[str, PreprocessingConfig] = {
    "mesonet": MESONET_PREPROCESSING,
    "deepfakebench": DEEPFAKEBENCH_PREPROCESSING,
    "dfdc_winner": DFDC_WINNER_PREPROCESSING,
    "clip": CLIP_PREPROCESSING,
    "effort": EFFORT_PREPROCESSING,
    "gend": GEND_PREPROCESSING,  # CLIP's, aligned on the landmarks
}

__all__ = [
    "PROFILES",
    "DFBEfficientNetB4Detector",
    "DFBMeso4Detector",
    "DFBMesoInception4Detector",
    "DFBXceptionDetector",
    "DFDCWinnerB7Detector",
    "Meso4Detector",
    "EffortDetector",
    "GenDDetector",
    "HuggingFaceDetector",
    "MesoInception4Detector",
    "OnnxDetector",
    "TorchScriptDetector",
    "TorchDetector",
    "UnivFDDetector",
]
