"""The ``audio_detectors`` section: the models that judge a stream's voice, beside the video
``detectors``. Each answers P(spoof) for a 16 kHz window; the voice ensemble fuses them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.strict import StrictModel
from pipeline.models.config import OutputSpec
from pipeline.models.devices import BackendName, DeviceName

# type → the manifest entry its weights default to (configs/models.yaml)
AUDIO_TYPES = {"aasist": "aasist", "aasist_l": "aasist_l"}


class WaveformSpec(StrictModel):
    """How a window of the stream's voice (16 kHz mono float32 in [-1, 1], what every voice model
    here reads) becomes a declared model's input: tiled or cut to ``samples`` (None: the length the
    model's file fixes, else 64,600, AASIST's 4.04 s), laid out N x samples or N x 1 x samples."""

    samples: int | None = Field(None, ge=1600)  # at least 0.1 s
    layout: Literal["NS", "NCS"] = "NS"


class AudioDetectorConfig(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["aasist", "aasist_l", "onnx"]  # onnx: any voice model declared by input / output
    weights: str | None = None  # a file, or a name from configs/models.yaml; None: the type's entry
    device: DeviceName = "auto"
    # measured (bench/voice.py): a window costs 0.26 s of a core on onnxruntime, 0.93 s on torch
    backend: BackendName = "auto"
    max_batch: int = Field(4, ge=1)  # windows of several streams judged together
    max_wait_ms: float = Field(0.0, ge=0.0)
    weight: float = Field(1.0, ge=0.0)  # in the voice ensemble
    # a declared (onnx) voice model only; its output's fake_index / real_index say which value means spoof
    input: WaveformSpec | None = None
    output: OutputSpec | None = None

    @model_validator(mode="after")
    def _declared(self) -> AudioDetectorConfig:
        if self.type == "onnx" and self.weights is None:
            raise ValueError("weights: a declared voice model (type onnx) needs its model file")
        if self.type != "onnx" and (self.input is not None or self.output is not None):
            raise ValueError(
                f"input / output: only a declared voice model (type onnx) takes them; {self.type!r} knows its own"
            )
        return self

    @property
    def weights_name(self) -> str:
        return self.weights or AUDIO_TYPES[self.type]
