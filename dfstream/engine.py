"""The ``runtime`` section: which engine runs the streams.

``engine: local`` (the default) runs everything in this process, as ``dfstream run`` always has.
``engine: ray`` runs the same config on a Ray cluster (``dfstream.ray``): one actor per stream,
Ray Serve deployments for faces and each detector. Only this section differs between the two.
Nothing here imports Ray: the local engine never needs it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from core.strict import StrictModel


class DeploymentSection(StrictModel):
    """A Ray Serve deployment (the face finder, or each detector): replicas and what each needs."""

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)  # above min_replicas: Serve autoscales between them
    target_ongoing_requests: float = Field(4.0, gt=0)  # autoscaling: requests per replica it aims for
    num_cpus: float = Field(1.0, ge=0)  # also the replica's torch threads (at least 1)
    num_gpus: float | None = Field(None, ge=0)  # None: 1 where the model's device is cuda, else 0
    resources: dict[str, float] = Field(default_factory=dict)  # custom Ray resources a replica needs

    def gpus(self, device: str) -> float:
        return self.num_gpus if self.num_gpus is not None else (1.0 if device.startswith("cuda") else 0.0)


class StreamActorsSection(StrictModel):
    """One Ray actor per stream: decode, tracking, smoothing and the stream's sinks."""

    num_cpus: float = Field(1.0, ge=0)
    # e.g. {dfstream_stream_slots: 1}: only nodes started with --resources '{"dfstream_stream_slots": N}'
    # take streams, N each (the decode nodes)
    resources: dict[str, float] = Field(default_factory=dict)
    max_restarts: int = Field(-1, ge=-1)  # -1: restarted by Ray as often as it dies
    strategy: Literal["SPREAD", "DEFAULT"] = "SPREAD"  # SPREAD: streams over every node that can take one


class RuntimeSection(StrictModel):
    engine: Literal["local", "ray"] = "local"
    # ray: auto (the cluster this machine belongs to, or $RAY_ADDRESS), local (start one here),
    # ray://host:10001 (Ray Client) or host:6379 (a head node's GCS)
    address: str = "auto"
    namespace: str = Field("dfstream", min_length=1)
    streams: StreamActorsSection = Field(default_factory=StreamActorsSection)
    faces: DeploymentSection = Field(default_factory=DeploymentSection)
    detectors: DeploymentSection = Field(default_factory=DeploymentSection)  # each detector's deployment
    deployments: dict[str, DeploymentSection] = Field(default_factory=dict)  # by detector name: its own, instead
    metrics_interval_s: float = Field(2.0, gt=0)  # how often each actor and replica reports its numbers

    @field_validator("address")
    @classmethod
    def _known_address(cls, value: str) -> str:
        if value not in ("auto", "local") and not value.startswith("ray://") and ":" not in value:
            raise ValueError(f"address {value!r}: expected auto, local, ray://host:port or host:port")
        return value

    @field_validator("faces", "detectors")
    @classmethod
    def _replica_bounds(cls, value: DeploymentSection) -> DeploymentSection:
        _check_bounds(value)
        return value

    @field_validator("deployments")
    @classmethod
    def _each_bounds(cls, value: dict[str, DeploymentSection]) -> dict[str, DeploymentSection]:
        for section in value.values():
            _check_bounds(section)
        return value


def _check_bounds(section: DeploymentSection) -> None:
    if section.max_replicas < section.min_replicas:
        raise ValueError(f"max_replicas ({section.max_replicas}) is below min_replicas ({section.min_replicas})")
