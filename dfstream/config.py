"""The configuration file: YAML → validated models that mirror its sections.

    streams, faces, detectors, ensemble, smoothing, sinks, monitoring, api, runtime

``${NAME}`` (or ``${NAME:-default}``) in any string is replaced from the environment, so secrets
stay out of the file. ``--set a.b.0.c=value`` overrides a value (parsed as YAML). Errors name
the field: ``streams[1].url: unsupported scheme 'rtp+x'``. Checks that touch the disk (weights
files) live in ``verify_files``, not in the models.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError
from core.redaction import redact, url_password
from core.strict import StrictModel
from pipeline.models.weights import load_manifest
from pipeline.runtime.config import PipelineConfig
from service.config import ApiConfig
from sinks.config import SinksConfig

log = logging.getLogger(__name__)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# ---- the runtime section: which engine runs the streams ------------------------------------------
# ``engine: local`` (the default) runs everything in this process, as ``dfstream run`` always has.
# ``engine: ray`` runs the same config on a Ray cluster (``dfstream.ray``): a node runtime per node
# that takes streams (the local runtime, for its share of them), a controller that places them, and
# optionally a shared Ray Serve pool per model (``deployments``). Only this section differs between
# the two, and nothing here imports Ray: the local engine never needs it.
class DeploymentConfig(StrictModel):
    """A model served from a shared Ray Serve pool (a GPU pool, say) instead of in each node runtime."""

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)  # above min_replicas: Serve autoscales between them
    target_ongoing_requests: float = Field(4.0, gt=0)  # autoscaling: requests per replica it aims for
    num_cpus: float = Field(1.0, ge=0)  # also the replica's torch threads (at least 1)
    num_gpus: float | None = Field(None, ge=0)  # None: 1 where the model's device is cuda, else 0
    resources: dict[str, float] = Field(default_factory=dict)  # custom Ray resources a replica needs

    def gpus(self, device: str) -> float:
        return self.num_gpus if self.num_gpus is not None else (1.0 if device.startswith("cuda") else 0.0)


class StreamSlotsConfig(StrictModel):
    """What one stream takes of a node. A node takes as many streams as it has room for: its CPUs
    over ``num_cpus`` and each of ``resources`` over what the node advertises; a node without one
    of ``resources`` takes none (e.g. ``{dfstream_stream_slots: 1}``: only the nodes started with
    ``--resources '{"dfstream_stream_slots": N}'`` take streams, N each)."""

    num_cpus: float = Field(1.0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)


class NodesConfig(StrictModel):
    """The node runtimes' heartbeats: a node whose beats stop for ``lost_after_s`` is lost, and its
    streams are started on the others (a runtime that cannot reach the controller that long stops
    its streams itself, so a stream never runs on two nodes)."""

    heartbeat_s: float = Field(0.5, gt=0)
    lost_after_s: float = Field(3.0, gt=0)
    # a node runtime without streams this long is stopped, so the autoscaler can let its node go; it
    # is started again when streams wait for a slot or the others carry two more than it would
    release_after_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _beats_before_loss(self) -> NodesConfig:
        if self.lost_after_s < 3 * self.heartbeat_s:
            raise ValueError(
                f"lost_after_s ({self.lost_after_s}) must be at least 3 heartbeats ({3 * self.heartbeat_s})"
            )
        return self


# sections of the first Ray design (an actor per stream, every model a Serve deployment): what to do now
_RETIRED = {
    "faces": "faces are found in each node runtime now; remove it",
    "detectors": "detectors run in each node runtime now; a shared pool for one is runtime.deployments.<name>",
    "streams.max_restarts": "the controller starts a lost node's streams on the others; remove it",
    "streams.strategy": "the controller places streams on the nodes by free slots; remove it",
}


class EngineConfig(StrictModel):
    engine: Literal["local", "ray"] = "local"
    # ray: auto (the cluster this machine belongs to, or $RAY_ADDRESS), local (start one here),
    # ray://host:10001 (Ray Client) or host:6379 (a head node's GCS)
    address: str = "auto"
    namespace: str = Field("dfstream", min_length=1)
    streams: StreamSlotsConfig = Field(default_factory=StreamSlotsConfig)
    nodes: NodesConfig = Field(default_factory=NodesConfig)
    deployments: dict[str, DeploymentConfig] = Field(default_factory=dict)  # by detector or voice model name
    metrics_interval_s: float = Field(2.0, gt=0)  # how often each node runtime and replica reports its numbers

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, hint in _RETIRED.items():
                section, _, field = key.rpartition(".")
                holder = data.get(section) if section else data
                if isinstance(holder, dict) and field in holder:
                    raise ValueError(f"{key} (the first Ray design's): {hint}")
        return data

    @field_validator("address")
    @classmethod
    def _known_address(cls, value: str) -> str:
        if value not in ("auto", "local") and not value.startswith("ray://") and ":" not in value:
            raise ValueError(f"address {value!r}: expected auto, local, ray://host:port or host:port")
        return value

    @field_validator("deployments")
    @classmethod
    def _each_bounds(cls, value: dict[str, DeploymentConfig]) -> dict[str, DeploymentConfig]:
        for section in value.values():
            _check_bounds(section)
        return value


def _check_bounds(section: DeploymentConfig) -> None:
    if section.max_replicas < section.min_replicas:
        raise ValueError(f"max_replicas ({section.max_replicas}) is below min_replicas ({section.min_replicas})")


class DfstreamConfig(PipelineConfig):
    """The whole file: the runtime's sections, the sinks that tell the world, and the HTTP service
        (used by `dfstream serve`, and for its database by a store sink under `dfstream run`), and the
    engine that runs it all (local, or a Ray cluster)."""

    sinks: SinksConfig = Field(default_factory=SinksConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    runtime: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _known_deployments(self) -> DfstreamConfig:
        names = {d.name for d in self.detectors} | {a.name for a in self.audio_detectors}
        for name in self.runtime.deployments:
            if name not in names:
                raise ValueError(
                    f"runtime.deployments.{name}: no detector named {name!r} (have {', '.join(sorted(names))})"
                )
        return self


# ---- loading -----------------------------------------------------------------------------------
def load_config(path: str | Path, overrides: Iterable[str] = ()) -> DfstreamConfig:
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


def cleartext_secrets(raw: Any) -> list[str]:
    """Where the raw (unsubstituted) config holds a URL password that is not a ${VAR}."""
    found: list[str] = []

    def check(path: str, text: str) -> str:
        password = url_password(text)
        if password and not _ENV.fullmatch(password):
            found.append(path)
        return text

    _map_strings(raw, check)
    return found


def redacted(value: Any) -> Any:
    """``value`` with every URL password replaced by ***, for printing a resolved config."""
    return _map_strings(value, lambda _, text: redact(text))


def _map_strings(value: Any, leaf: Callable[[str, str], Any], path: str = "") -> Any:
    """``value`` (YAML data) with every string replaced by ``leaf(its field path, it)``."""
    if isinstance(value, dict):
        return {k: _map_strings(v, leaf, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, leaf, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):
        return leaf(path, value)
    return value


def parse_config(data: dict[str, Any]) -> DfstreamConfig:
    try:
        return DfstreamConfig.model_validate(data)
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


def substitute_env(value: Any) -> Any:
    def substitute(path: str, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")

        return _ENV.sub(replace, text)

    return _map_strings(value, substitute)


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


def verify_files(config: DfstreamConfig) -> list[str]:
    """Problems only the disk can show: weights, calibration, baseline and TLS files that do not exist."""
    manifest = load_manifest()
    problems = []
    for i, detector in enumerate(config.detectors):
        weights = detector.weights
        place = Path(weights).expanduser() if weights is not None else None
        # a Hugging Face checkpoint is a folder
        there = place is None or (place.is_dir() if detector.type == "hf_image_classifier" else place.is_file())
        if weights not in manifest and not there:
            problems.append(f"detectors[{i}].weights: no such file {weights!r} (and not a name in configs/models.yaml)")
        reference = detector.reference
        if reference is not None and not Path(reference).expanduser().is_file():
            problems.append(f"detectors[{i}].reference: no such file {reference!r}")
    for i, voice in enumerate(config.audio_detectors):
        weights = voice.weights_name
        if weights in manifest and manifest[weights].modality != "audio":
            problems.append(
                f"audio_detectors[{i}].weights: {weights!r} is a face detector's weights, not a voice model's"
            )
        elif weights not in manifest and not Path(weights).expanduser().is_file():
            problems.append(
                f"audio_detectors[{i}].weights: no such file {weights!r} (and not a name in configs/models.yaml)"
            )
    calibration = config.ensemble.calibration
    if calibration is not None and not Path(calibration).is_file():
        problems.append(f"ensemble.calibration: no such file {calibration!r}")
    for where, smoothing in (("smoothing", config.smoothing), ("voice.smoothing", config.voice.smoothing)):
        baseline = smoothing.baseline
        if baseline is not None and not Path(baseline).expanduser().is_file():
            problems.append(f"{where}.baseline: no such file {baseline!r} (dfstream calibrate --real-only writes one)")
    tls = config.sinks.mqtt.tls if config.sinks.mqtt is not None else None
    for key in ("ca_file", "cert_file", "key_file"):
        name = getattr(tls, key, None)
        if name is not None and not Path(name).expanduser().is_file():
            problems.append(f"sinks.mqtt.tls.{key}: no such file {name!r}")
    return problems
