"""dfstream's judging half, and the framework API for single images.

    from pipeline import ModelRegistry, EnsembleManager, UnifiedPreprocessor, PerformanceMonitor
"""

from .detector import BaseDetector, DetectionResult, ModelInfo, ModelStatus
from .ensemble import EnsembleConfig, EnsembleManager, EnsembleResult
from .fusion import FusionMethod
from .monitor import MonitoringConfig, PerformanceMonitor
from .preprocessing import AugmentationType, PreprocessingConfig, UnifiedPreprocessor
from .registry import ModelRegistry

__all__ = [
    "AugmentationType",
    "BaseDetector",
    "DetectionResult",
    "EnsembleConfig",
    "EnsembleManager",
    "EnsembleResult",
    "FusionMethod",
    "ModelInfo",
    "ModelRegistry",
    "ModelStatus",
    "MonitoringConfig",
    "PerformanceMonitor",
    "PreprocessingConfig",
    "UnifiedPreprocessor",
]
