"""Which detectors exist, and which are loaded: the model registry, the one place detectors are
built (the framework API, ``dfstream run`` and ``dfstream eval`` all go through it).

Detector types register themselves by name (``pipeline.models.plugins.register``); the registry
never imports them (``pipeline.models`` imports the built-in ones, a plugin registers when imported).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError, DfstreamError, ModelLoadError, ModelNotFoundError, PluginError, one_line
from pipeline.models.config import DetectorConfig
from pipeline.models.detector import BaseDetector, ModelInfo, ModelStatus
from pipeline.models.plugins import detector_types

log = logging.getLogger(__name__)


@dataclass
class ModelEntry:
    """A registered detector: its class, the keyword arguments it is built with, and its state."""

    name: str
    cls: type[BaseDetector]
    defaults: dict[str, Any] = field(default_factory=dict)
    status: ModelStatus = ModelStatus.REGISTERED
    error: str | None = None
    instance: BaseDetector | None = None

    @property
    def info(self) -> ModelInfo | None:
        return self.instance.get_model_info() if self.instance is not None else None


class ModelRegistry:
    """Register detector classes by name, build and load them, and track each one's status.

    A new registry already holds every type registered with ``@register`` (the built-in ones:
    ``meso4``, ``mesoinception4``, ``dfb_xception``, ``dfb_efficientnet_b4``, ``dfb_meso4``,
    ``dfb_meso4inception``, ``dfdc_b7``); ``ModelRegistry(builtins=False)`` starts empty.
    """

    def __init__(self, builtins: bool = True):
        self._entries: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()
        if builtins:
            for name, cls in detector_types().items():
                self.register_model(name, cls)

    def register_model(self, name: str, cls: type[BaseDetector], **defaults: Any) -> None:
        """Register ``cls`` as ``name``; ``defaults`` are passed to its constructor on load."""
        if not (inspect.isclass(cls) and issubclass(cls, BaseDetector)):
            raise PluginError(f"register_model({name!r}): {cls!r} is not a BaseDetector subclass")
        with self._lock:
            self._entries[name] = ModelEntry(name=name, cls=cls, defaults=defaults)

    def load_model(self, name: str, model_path: str | None = None, **kwargs: Any) -> BaseDetector:
        """Build ``name`` (constructor keywords: the registered defaults, then ``kwargs``) and load
        its weights from ``model_path`` (None: the detector's default). Raises ``ModelLoadError``
        and marks the model FAILED with the reason when that does not work."""
        entry = self._entry(name)
        entry.status, entry.error = ModelStatus.LOADING, None
        try:
            options = {**entry.defaults, **kwargs}
            if "model_name" not in options and "model_name" in inspect.signature(entry.cls).parameters:
                options["model_name"] = name  # results then carry the name the user registered
            detector = entry.cls(**options)
            loaded = detector.load_model(model_path) if model_path is not None else detector.load_model()
            if loaded is False:
                raise ModelLoadError(f"{name}: load_model() returned False")
        except Exception as exc:
            entry.status, entry.error, entry.instance = ModelStatus.FAILED, one_line(exc), None
            if isinstance(exc, DfstreamError):
                raise
            raise ModelLoadError(f"{name}: {type(exc).__name__}: {exc}") from exc
        entry.status, entry.instance = ModelStatus.READY, detector
        log.info("model %s ready on %s", name, detector.device)
        return detector

    def load_configured(self, configs: Sequence[DetectorConfig]) -> dict[str, BaseDetector]:
        """Register and load each configured detector under its own name (two detectors may share a
        type with different weights). Any failure stops here, naming the detector: a stream is
        never judged by a model that did not load."""
        detectors: dict[str, BaseDetector] = {}
        for i, dc in enumerate(configs):
            try:
                cls = self._entry(dc.type).cls
                self.register_model(dc.name, cls, **_constructor_options(cls, dc))
                detectors[dc.name] = self.load_model(dc.name, dc.weights)
            except DfstreamError as exc:
                raise ModelLoadError(f"detectors[{i}] ({dc.name}): {exc}") from exc
        return detectors

    def load_all_models(self) -> dict[str, ModelStatus]:
        """Load every registered model not yet READY; failures are recorded, logged and returned,
        not raised, so one broken model does not keep the others from loading."""
        for name, entry in list(self._entries.items()):
            if entry.status is ModelStatus.READY:
                continue
            try:
                self.load_model(name)
            except DfstreamError as exc:
                log.warning("model %s failed to load: %s", name, exc)
        return self.get_all_status()

    def get_model(self, name: str) -> BaseDetector | None:
        """The loaded detector, or None when ``name`` is registered but not READY."""
        return self._entry(name).instance

    def unload_model(self, name: str) -> None:
        entry = self._entry(name)
        entry.instance = None
        entry.status, entry.error = ModelStatus.UNLOADED, None

    def get_status(self, name: str) -> ModelStatus:
        return self._entry(name).status

    def get_error(self, name: str) -> str | None:
        return self._entry(name).error

    def get_all_status(self) -> dict[str, ModelStatus]:
        return {name: entry.status for name, entry in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFoundError(
                f"unknown model {name!r}; registered: {', '.join(sorted(self._entries)) or 'none'}"
            )
        return entry


def _constructor_options(cls: type[BaseDetector], config: DetectorConfig) -> dict[str, Any]:
    """The config's options that ``cls`` takes; one it does not take, set away from its default,
    is a config error rather than silently ignored."""
    parameters = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    options: dict[str, Any] = {"device": config.device}
    for key in ("threshold", "fp16", "backend"):
        value = getattr(config, key)
        if takes_any or key in parameters:
            options[key] = value
        elif value != DetectorConfig.model_fields[key].default:
            raise ConfigError(f"{key}: detector type {config.type!r} ({cls.__name__}) does not take it")
    for key in ("input", "output", "reference"):  # a declared detector's (the config allows them nowhere else)
        if key in parameters:
            options[key] = getattr(config, key)
    return options
