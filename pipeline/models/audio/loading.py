"""Every configured voice model loaded, as ``load_configured`` loads the video detectors: a
failure names the model and stops here, before any stream opens."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import DetectorError, WeightsError
from pipeline.models.audio.config import AudioDetectorConfig
from pipeline.models.audio.declared import DeclaredVoiceScorer
from pipeline.models.audio.scorer import VoiceModel, VoiceScorer
from pipeline.models.weights import resolve_weights


def load_voice_models(configs: Sequence[AudioDetectorConfig]) -> dict[str, VoiceModel]:
    models: dict[str, VoiceModel] = {}
    for config in configs:
        try:
            path = resolve_weights(config.weights_name)
            if config.type == "onnx":
                models[config.name] = DeclaredVoiceScorer(
                    config.name, path, config.input, config.output, config.backend, config.device
                )
            else:
                models[config.name] = VoiceScorer(config.type, path, config.backend, config.device)
        except (DetectorError, WeightsError) as exc:
            raise type(exc)(f"audio detector {config.name!r}: {exc}") from exc
    return models
