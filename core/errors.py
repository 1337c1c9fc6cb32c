"""The errors dfstream raises, as one tree you can catch by meaning.

    DfstreamError
    ├── ConfigError (ValueError)            invalid configuration or arguments (field path in the message)
    ├── InputError (ValueError)             an image or frame the detectors cannot take
    ├── SourceError                         a stream cannot be read (the message names it)
    │   ├── SourceOpenError                 cannot be opened: refused, not found, no video in it
    │   ├── SourceTimeoutError (TimeoutError)   no answer within open_timeout_s
    │   └── SourceDecodeError               opened, but not one frame decodes
    ├── DetectorError
    │   ├── ModelNotFoundError (KeyError)   unknown model name
    │   ├── ModelLoadError                  weights missing, corrupt or mismatched
    │   ├── ModelNotLoadedError             predict before load_model
    │   ├── InferenceError                  a forward pass failed
    │   ├── PluginError (TypeError)         a class registered as a detector is not one
    │   └── BackendUnavailableError         a remote backend failed just now and is not asked again yet
    ├── EnsembleError
    │   └── InsufficientModelsError         fewer models answered than min_models
    ├── WeightsError
    │   ├── DownloadError                   fetching a weights file failed
    │   └── ChecksumError                   its sha256 does not match the manifest
    ├── SinkError                           a sink cannot deliver (the message names the sink)
    ├── NotRecordedError (KeyError)         the monitor holds no metrics under that name
    ├── ServiceError                        the HTTP service refuses a request
    │   ├── UploadError                     an upload that is not a readable video (HTTP status kept)
    │   └── QueueFullError                  the analysis queue is full (503)
    └── LifecycleError (RuntimeError)       a resource entered twice, or used outside its ``async with``

Lower-level errors (h5py, torch, urllib, PyAV, aiomqtt, SQLAlchemy) are translated at the boundary
with ``raise ... from exc`` so the cause stays attached.
"""

from __future__ import annotations


class DfstreamError(Exception):
    """Root of every error dfstream raises on purpose."""


class ConfigError(DfstreamError, ValueError):
    pass


class InputError(DfstreamError, ValueError):
    pass


class SourceError(DfstreamError):
    """A stream cannot be opened or read (the message names the stream and the cause)."""


class SourceOpenError(SourceError):
    pass


class SourceTimeoutError(SourceError, TimeoutError):
    pass


class SourceDecodeError(SourceError):
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


class PluginError(DetectorError, TypeError):
    pass


class BackendUnavailableError(DetectorError):
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


class SinkError(DfstreamError):
    pass


class NotRecordedError(DfstreamError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ServiceError(DfstreamError):
    pass


class UploadError(ServiceError):
    """An upload refused, with the HTTP status that says why (400, 413, 415)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.detail = message


class QueueFullError(ServiceError):
    pass


class LifecycleError(DfstreamError, RuntimeError):
    pass


def one_line(exc: BaseException, *, with_type: bool = False, limit: int = 300) -> str:
    """An exception as the one line an error message or a log quotes: its first line (FFmpeg, torch
    and h5py write several), optionally after its type name; the type name alone when it says nothing."""
    lines = str(exc).strip().splitlines()
    text = lines[0][:limit] if lines else ""
    if with_type:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__
