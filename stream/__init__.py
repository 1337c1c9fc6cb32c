"""Where frames come from: PyAV decoding, converted at this edge into dfstream's ``Frame``."""

from .audio import AudioChunk
from .config import StreamConfig
from .frame import Frame
from .sample import make_sample_clip, sample_clip_path
from .source import Source, SourceCount, SourceCounters, SourceStatus

__all__ = [
    "AudioChunk",
    "Frame",
    "Source",
    "SourceCount",
    "SourceCounters",
    "SourceStatus",
    "StreamConfig",
    "make_sample_clip",
    "sample_clip_path",
]
