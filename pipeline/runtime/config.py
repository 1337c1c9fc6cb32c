"""The sections of the configuration the runtime reads: streams, faces, detectors, ensemble,
judge, smoothing, monitoring, and how events are delivered to sinks (the sinks themselves are configured
above ``pipeline``; ``dfstream.config`` extends this model with them)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field, model_validator

from core.strict import StrictModel
from pipeline.judging.cadence import JudgeConfig
from pipeline.judging.ensemble import EnsembleConfig
from pipeline.judging.incidents import IncidentConfig
from pipeline.judging.listening import VoiceConfig
from pipeline.judging.quality import QualityConfig
from pipeline.judging.smoothing import SmoothingConfig
from pipeline.models.audio.config import AudioDetectorConfig
from pipeline.models.config import DetectorConfig
from pipeline.models.faces.finder import FacesConfig
from pipeline.monitoring.monitor import MonitoringConfig
from pipeline.runtime.overload import OverloadConfig
from stream.config import StreamConfig


class DeliveryConfig(StrictModel):
    """The ``sinks`` section's settings for every sink's outbox."""

    outbox_capacity: int = Field(1000, ge=1)  # events waiting per sink before the oldest is dropped
    drain_timeout_s: float = Field(3.0, ge=0.0)  # at shutdown, how long the sinks may take to deliver what is queued


class PipelineConfig(StrictModel):
    # none: `dfstream serve` waiting for calls (WebRTC); `dfstream run` needs one (wiring.run says so)
    streams: list[StreamConfig] = Field(default_factory=list)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    detectors: list[DetectorConfig] = Field(min_length=1)
    audio_detectors: list[AudioDetectorConfig] = Field(default_factory=list)  # none: the voice is not judged
    voice: VoiceConfig = Field(default_factory=VoiceConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    incidents: IncidentConfig = Field(default_factory=IncidentConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)  # faces too poor to judge
    overload: OverloadConfig = Field(default_factory=OverloadConfig)
    sinks: DeliveryConfig = Field(default_factory=DeliveryConfig)
    monitoring: MonitoringConfig = Field(default_factory=lambda: MonitoringConfig(enable_system_monitoring=True))

    @model_validator(mode="after")
    def _verify(self) -> PipelineConfig:
        _unique("streams", [s.id for s in self.streams], "id")
        _unique("detectors", [d.name for d in self.detectors], "name")
        _unique("audio_detectors", [d.name for d in self.audio_detectors], "name")
        video = {d.name for d in self.detectors}
        for i, audio in enumerate(self.audio_detectors):  # one name space: a model's metrics carry its name alone
            if audio.name in video:
                raise ValueError(f"audio_detectors[{i}].name: {audio.name!r} is also a detector's name")
        if self.voice.ensemble.min_models > max(1, len(self.audio_detectors)):
            raise ValueError(
                f"voice.ensemble.min_models ({self.voice.ensemble.min_models}) exceeds the "
                f"{len(self.audio_detectors)} audio detectors configured"
            )
        if self.ensemble.min_models > len(self.detectors):
            raise ValueError(
                f"ensemble.min_models ({self.ensemble.min_models}) exceeds the {len(self.detectors)} detectors "
                "configured"
            )
        if self.ensemble.default_weights:
            raise ValueError(
                "ensemble.default_weights: in a config file each detector has its own weight (detectors[].weight)"
            )
        return self


def _unique(section: str, values: Iterable[str], key: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{section}[{i}].{key}: duplicate {key} {value!r}")
        seen.add(value)
