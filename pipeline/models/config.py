"""The ``detectors`` section of the configuration: one entry per detector the ensemble runs."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.strict import StrictModel
from pipeline.models.devices import BackendName, DeviceName
from pipeline.models.plugins import detector_types


class DetectorConfig(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str
    weights: str | None = None  # a file, or a name from configs/models.yaml; None: the type's default
    device: DeviceName = "auto"
    max_batch: int = Field(8, ge=1)  # measured: small CNNs on a 2-core CPU slow down per image in big batches
    max_wait_ms: float = Field(0.0, ge=0.0)  # 0: batches form only while the worker is busy (see FacesConfig)
    fp16: bool = False  # CUDA only
    backend: BackendName = (
        "auto"  # on the CPU: torch, or the module exported to onnxruntime / openvino (checked against torch at load)
    )
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    weight: float = Field(1.0, ge=0.0)  # in the ensemble

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        known = detector_types()
        if value not in known:
            raise ValueError(f"unknown detector type {value!r}; known: {', '.join(sorted(known))}")
        return value
