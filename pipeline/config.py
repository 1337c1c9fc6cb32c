"""The configuration file: YAML → validated models that mirror its sections.

    streams, faces, detectors, ensemble, smoothing, sinks, monitoring

``${NAME}`` (or ``${NAME:-default}``) in any string is replaced from the environment, so secrets
stay out of the file. ``--set a.b.0.c=value`` overrides a value (parsed as YAML). Errors name
the field: ``streams[1].url: unsupported scheme 'rtp+x'``. Checks that touch the disk (weights
files) live in ``verify_files``, not in the models.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from sinks.config import SinksConfig
from stream.config import StreamConfig
from stream.urls import redact, url_password

from .configbase import StrictModel
from .detector import DeviceName
from .ensemble import EnsembleConfig
from .errors import ConfigError
from .faces import FacesConfig
from .fusion import FusionMethod
from .monitor import MonitoringConfig
from .smoothing import SmoothingConfig

log = logging.getLogger(__name__)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class DetectorConfig(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str
    weights: str | None = None  # a file, or a name from configs/models.yaml; None: the type's default
    device: DeviceName = "auto"
    max_batch: int = Field(8, ge=1)  # measured: small CNNs on a 2-core CPU slow down per image in big batches
    max_wait_ms: float = Field(0.0, ge=0.0)  # 0: batches form only while the worker is busy (see FacesConfig)
    fp16: bool = False  # CUDA only
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    weight: float = Field(1.0, ge=0.0)  # in the ensemble

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from .detectors import BUILTIN_DETECTORS

        if value not in BUILTIN_DETECTORS:
            raise ValueError(f"unknown detector type {value!r}; known: {', '.join(sorted(BUILTIN_DETECTORS))}")
        return value


class EnsembleSection(StrictModel):
    method: FusionMethod = FusionMethod.WEIGHTED_AVERAGE
    min_models: int = Field(1, ge=1)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    temperature: float = Field(1.0, gt=0.0)
    attention_temperature: float = Field(0.25, gt=0.0)
    uncertainty: bool = True
    calibration: str | None = None  # a JSON file written by EnsembleManager.save_calibration

    def to_ensemble_config(self, detectors: list[DetectorConfig]) -> EnsembleConfig:
        return EnsembleConfig(
            fusion_method=self.method,
            default_weights={d.name: d.weight for d in detectors},
            temperature=self.temperature,
            attention_temperature=self.attention_temperature,
            min_models=self.min_models,
            max_models=max(len(detectors), self.min_models),
            confidence_threshold=self.threshold,
            enable_uncertainty=self.uncertainty,
        )


class RuntimeConfig(StrictModel):
    streams: list[StreamConfig] = Field(min_length=1)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    detectors: list[DetectorConfig] = Field(min_length=1)
    ensemble: EnsembleSection = Field(default_factory=EnsembleSection)
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    monitoring: MonitoringConfig = Field(default_factory=lambda: MonitoringConfig(enable_system_monitoring=True))

    @model_validator(mode="after")
    def _verify(self) -> RuntimeConfig:
        _unique("streams", [s.id for s in self.streams], "id")
        _unique("detectors", [d.name for d in self.detectors], "name")
        if self.ensemble.min_models > len(self.detectors):
            raise ValueError(
                f"ensemble.min_models ({self.ensemble.min_models}) exceeds the {len(self.detectors)} detectors configured"
            )
        return self


def _unique(section: str, values: Iterable[str], key: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{section}[{i}].{key}: duplicate {key} {value!r}")
        seen.add(value)


# ---- loading -----------------------------------------------------------------------------------
def load_config(path: str | Path, overrides: Iterable[str] = ()) -> RuntimeConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with streams, detectors, ...")
    for override in overrides:
        apply_override(raw, override)
    for where in cleartext_secrets(raw):
        log.warning("%s: %s holds a password in clear text; put it in the environment and write ${VAR}", path, where)
    return parse_config(substitute_env(raw))


def cleartext_secrets(value: Any, path: str = "") -> list[str]:
    """Where the raw (unsubstituted) config holds a URL password that is not a ${VAR}."""
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in cleartext_secrets(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in cleartext_secrets(v, f"{path}[{i}]")]
    if isinstance(value, str):
        password = url_password(value)
        if password and not _ENV.fullmatch(password):
            return [path]
    return []


def redacted(value: Any) -> Any:
    """``value`` with every URL password replaced by ***, for printing a resolved config."""
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def parse_config(data: dict[str, Any]) -> RuntimeConfig:
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_errors(exc))) from None


def format_errors(exc: ValidationError) -> list[str]:
    """One line per problem: ``streams[0].url: unsupported scheme 'rtp+x'``."""
    lines = []
    for error in exc.errors():
        path = ""
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(_printable(f"{path or 'config'}: {message}"))
    return lines


def _printable(line: str) -> str:
    """Keys and values come from the user: a control character in one must not split or garble
    the one line that reports it."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def substitute_env(value: Any, path: str = "") -> Any:
    if isinstance(value, dict):
        return {k: substitute_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")

        return _ENV.sub(replace, value)
    return value


def apply_override(data: dict[str, Any], override: str) -> None:
    """``a.b.0.c=value``: set a nested key (list items by index); the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"--set {_printable(override)}: expected key.path=value")
    key, text = override.split("=", 1)
    parts, key = key.split("."), _printable(key)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: the value is not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = _printable(".".join(parts[: i + 1]))
        if isinstance(node, list):
            if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {where} is not an item of a list of {len(node)}")
            index = int(part)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {key}: {_printable('.'.join(parts[:i]))} is not a mapping or a list")


def verify_files(config: RuntimeConfig) -> list[str]:
    """Problems only the disk can show: weights, calibration and TLS files that do not exist."""
    from .weights import load_manifest

    manifest = load_manifest()
    problems = []
    for i, detector in enumerate(config.detectors):
        weights = detector.weights
        if weights is not None and weights not in manifest and not Path(weights).expanduser().is_file():
            problems.append(f"detectors[{i}].weights: no such file {weights!r} (and not a name in configs/models.yaml)")
    calibration = config.ensemble.calibration
    if calibration is not None and not Path(calibration).is_file():
        problems.append(f"ensemble.calibration: no such file {calibration!r}")
    tls = config.sinks.mqtt.tls if config.sinks.mqtt is not None else None
    for key in ("ca_file", "cert_file", "key_file"):
        name = getattr(tls, key, None)
        if name is not None and not Path(name).expanduser().is_file():
            problems.append(f"sinks.mqtt.tls.{key}: no such file {name!r}")
    return problems
