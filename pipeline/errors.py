"""The errors dfstream raises, as one tree you can catch by meaning.

    DfstreamError
    ├── ConfigError                  invalid configuration (field path in the message)
    ├── InputError (ValueError)      an image or frame the detectors cannot take
    ├── DetectorError
    │   ├── ModelNotFoundError (KeyError)   unknown model name
    │   ├── ModelLoadError                  weights missing, corrupt or mismatched
    │   ├── ModelNotLoadedError             predict before load_model
    │   └── InferenceError                  a forward pass failed
    ├── EnsembleError
    │   └── InsufficientModelsError         fewer models answered than min_models
    ├── WeightsError
    │   ├── DownloadError                   fetching a weights file failed
    │   └── ChecksumError                   its sha256 does not match the manifest
    └── SourceError                         a stream cannot be opened or read

Lower-level errors (h5py, torch, urllib, PyAV) are translated at the boundary with
``raise ... from exc`` so the cause stays attached.
"""

from __future__ import annotations

from stream.errors import DfstreamError, SourceError, one_line

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
]  # fmt: skip


class ConfigError(DfstreamError):
    pass


class InputError(DfstreamError, ValueError):
    pass


class DetectorError(DfstreamError):
    pass


class ModelNotFoundError(DetectorError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(DetectorError):
    pass


class ModelNotLoadedError(DetectorError):
    pass


class InferenceError(DetectorError):
    pass


class EnsembleError(DfstreamError):
    pass


class InsufficientModelsError(EnsembleError):
    pass


class WeightsError(DfstreamError):
    pass


class DownloadError(WeightsError):
    pass


class ChecksumError(WeightsError):
    pass
