"""Every configured model, its weights fetched where the manifest knows them (unless offline), then
loaded: what ``dfstream run``, ``dfstream annotate`` and the Ray engine's node runtimes start with."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.models.audio.config import AudioDetectorConfig
from pipeline.models.audio.loading import load_voice_models
from pipeline.models.audio.scorer import VoiceModel
from pipeline.models.config import DetectorConfig
from pipeline.models.detector import BaseDetector
from pipeline.models.registry import ModelRegistry
from pipeline.models.weights import ensure_available, load_manifest


def load_detectors(
    configs: Sequence[DetectorConfig], offline: bool, say: Callable[[str], None]
) -> dict[str, BaseDetector]:
    """Any failure stops here, naming the detector."""
    manifest = load_manifest()
    ensure_available([d.weights for d in configs if d.weights in manifest], offline, say)
    return ModelRegistry().load_configured(configs)


def load_voices(
    configs: Sequence[AudioDetectorConfig], offline: bool, say: Callable[[str], None]
) -> dict[str, VoiceModel]:
    manifest = load_manifest()
    ensure_available([a.weights_name for a in configs if a.weights_name in manifest], offline, say)
    return load_voice_models(configs)
