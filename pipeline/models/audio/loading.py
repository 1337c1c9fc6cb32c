"""Every configured voice model loaded, as ``load_configured`` loads the video detectors: a
failure names the model and stops here, before any stream opens."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import DetectorError, WeightsError
from pipeline.models.audio.config import AudioDetectorConfig
from pipeline.models.audio.scorer import VoiceScorer
from pipeline.models.weights import resolve_weights


def load_voice_models(configs: Sequence[AudioDetectorConfig]) -> dict[str, VoiceScorer]:
    models: dict[str, VoiceScorer] = {}
    for config in configs:
        try:
            path = resolve_weights(config.weights_name)
            models[config.name] = VoiceScorer(config.type, path, config.backend, config.device)
        except (DetectorError, WeightsError) as exc:
            raise type(exc)(f"audio detector {config.name!r}: {exc}") from exc
    return models
