"""The ``detectors`` section of the configuration: one entry per detector the ensemble runs.

A built-in ``type`` knows its own preprocessing. A declared one (``onnx``, ``torchscript``) is any
image classifier the user brings: ``weights`` is its file, ``input`` says how a face crop becomes
its input and ``output`` how its output becomes P(fake)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.strict import StrictModel
from pipeline.models.devices import BackendName, DeviceName
from pipeline.models.plugins import detector_types

DECLARED_TYPES = ("onnx", "torchscript", "hf_image_classifier")  # described by ``input`` / ``output``, not code


class InputSpec(StrictModel):
    """How a face crop becomes the model's input: cut with ``crop_margin`` around the face box,
    resized to ``size``, in ``channels`` order, each pixel ``(value x scale - mean) / std`` per
    channel (value 0–255), laid out ``layout``, float32."""

    size: tuple[int, int] | None = None  # (height, width); None: the model's own, when its file fixes it
    resize: Literal["stretch", "longest_side_pad"] = "stretch"
    interpolation: Literal["nearest", "bilinear", "bicubic", "area"] = "bilinear"
    crop_margin: float = Field(0.2, ge=0.0, le=2.0)  # of the box's width / height, added on each side
    crop_align: bool = False  # aligned on the face's landmarks, ``crop_margin`` of it on each side
    channels: Literal["RGB", "BGR"] = "RGB"
    scale: float = Field(1 / 255, gt=0.0)  # 1/255: pixels in [0, 1]; 1: in [0, 255]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @field_validator("size")
    @classmethod
    def _big_enough(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 8:
            raise ValueError(f"{value}: both sides must be >= 8")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"{value}: every channel must be > 0")
        return value


class OutputSpec(StrictModel):
    """How the model's output becomes P(fake). ``type``: ``logit`` (raw scores; ``activation``
    turns them into probabilities: ``sigmoid`` for one value or independent ones, ``softmax``
    across classes; default: sigmoid for one value, softmax for several) or ``probability``.
    ``fake_index``: which value means fake, or ``real_index``: which means real (P(fake) = 1 − it);
    one value means fake unless ``real_index: 0`` says otherwise; ``fake_label``: by the name a
    Hugging Face checkpoint gives it (``id2label``). ``name``: the output to read when the model has
    several."""

    type: Literal["logit", "probability"] = "logit"
    activation: Literal["sigmoid", "softmax"] | None = None
    fake_index: int | None = Field(None, ge=0)
    real_index: int | None = Field(None, ge=0)
    fake_label: str | None = Field(None, min_length=1)
    name: str | None = None

    @model_validator(mode="after")
    def _one_index(self) -> OutputSpec:
        if sum(v is not None for v in (self.fake_index, self.real_index, self.fake_label)) > 1:
            raise ValueError("give one of fake_index, real_index or fake_label")
        if self.type == "probability" and self.activation is not None:
            raise ValueError(f"activation {self.activation!r}: probabilities take none (type: logit takes one)")
        return self


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
    # declared types only (``onnx``, ``torchscript``)
    input: InputSpec | None = None
    output: OutputSpec | None = None
    reference: str | None = None  # the same model in the other format (TorchScript for onnx, ONNX for torchscript)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        known = detector_types()
        if value not in known:
            raise ValueError(f"unknown detector type {value!r}; known: {', '.join(sorted(known))}")
        return value

    @model_validator(mode="after")
    def _declared(self) -> DetectorConfig:
        if self.backend == "tensorrt":
            if self.type != "onnx":
                raise ValueError(f"backend tensorrt: for models declared as type onnx, not {self.type}")
            if self.device == "cpu":
                raise ValueError("backend tensorrt runs on a GPU; the device here is cpu (use device: cuda)")
        if self.type in DECLARED_TYPES:
            if self.weights is None:
                raise ValueError(f"weights: a declared detector (type {self.type}) needs its model file")
            if self.reference is not None and self.type == "hf_image_classifier":
                raise ValueError("reference: only for onnx and torchscript (the same model in the other format)")
            if self.type != "hf_image_classifier" and self.output is not None and self.output.fake_label is not None:
                raise ValueError("output.fake_label: only a Hugging Face checkpoint names its labels; give fake_index")
        else:
            for key in ("input", "output", "reference"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key}: only a declared detector (type {' or '.join(DECLARED_TYPES)}) takes it; "
                        f"{self.type!r} knows its own"
                    )
        return self
