"""The seed API's path to dfstream's errors (``from pipeline.errors import ModelLoadError``): the
tree itself, drawn in its docstring, is ``core.errors``."""

from core.errors import (
    ChecksumError,
    ConfigError,
    DetectorError,
    DfstreamError,
    DownloadError,
    EnsembleError,
    InferenceError,
    InputError,
    InsufficientModelsError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotLoadedError,
    SourceError,
    WeightsError,
    one_line,
)

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DetectorError",
    "DfstreamError",
    "DownloadError",
    "EnsembleError",
    "InferenceError",
    "InputError",
    "InsufficientModelsError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "SourceError",
    "WeightsError",
    "one_line",
]
