"""The ``audio_detectors`` section: the models that judge a stream's voice, beside the video
``detectors``. Each answers P(spoof) for a 16 kHz window; the voice ensemble fuses them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.strict import StrictModel
from pipeline.models.devices import BackendName, DeviceName

# type → the manifest entry its weights default to (configs/models.yaml)
AUDIO_TYPES = {"aasist": "aasist", "aasist_l": "aasist_l"}


class AudioDetectorConfig(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["aasist", "aasist_l"]
    weights: str | None = None  # a file, or a name from configs/models.yaml; None: the type's entry
    device: DeviceName = "auto"
    # measured (bench/voice.py): a window costs 0.26 s of a core on onnxruntime, 0.93 s on torch
    backend: BackendName = "auto"
    max_batch: int = Field(4, ge=1)  # windows of several streams judged together
    max_wait_ms: float = Field(0.0, ge=0.0)
    weight: float = Field(1.0, ge=0.0)  # in the voice ensemble

    @property
    def weights_name(self) -> str:
        return self.weights or AUDIO_TYPES[self.type]
