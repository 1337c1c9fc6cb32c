"""dfstream's judging half, and the framework API for single images.

from pipeline import ModelRegistry, EnsembleManager, UnifiedPreprocessor, PerformanceMonitor
"""

from pipeline.judging.ensemble import EnsembleConfig, EnsembleManager, EnsembleResult
from pipeline.judging.fusion import FusionMethod
from pipeline.models.detector import BaseDetector, DetectionResult, ModelInfo, ModelStatus
from pipeline.models.preprocessing import AugmentationType, PreprocessingConfig, UnifiedPreprocessor
from pipeline.models.registry import ModelRegistry
from pipeline.monitoring.monitor import MonitoringConfig, PerformanceMonitor

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
