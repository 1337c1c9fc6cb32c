"""Detector types by name: ``@register("meso4")`` on a ``BaseDetector`` subclass makes it a
``type`` a config's detectors and every new ``ModelRegistry`` know. Built-in detectors register
when ``pipeline.models`` is imported; a plugin registers when its module is imported."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from core.errors import ConfigError, PluginError
from pipeline.models.detector import BaseDetector

D = TypeVar("D", bound=type[BaseDetector])

_TYPES: dict[str, type[BaseDetector]] = {}


def register(name: str) -> Callable[[D], D]:
    """Class decorator: make a detector type known by ``name``."""

    def add(cls: D) -> D:
        if not (inspect.isclass(cls) and issubclass(cls, BaseDetector)):
            raise PluginError(f"@register({name!r}): {cls!r} is not a BaseDetector subclass")
        known = _TYPES.get(name)
        if known is not None and known is not cls:
            raise ConfigError(f"@register({name!r}): already taken by {known.__module__}.{known.__qualname__}")
        _TYPES[name] = cls
        return cls

    return add


def detector_types() -> dict[str, type[BaseDetector]]:
    """Every registered detector type, by name."""
    return dict(_TYPES)
