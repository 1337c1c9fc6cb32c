"""One stream's voice, cut into the windows the voice models judge, each with the share of it that
is speech.

Sound arrives in chunks (``stream.AudioChunk``); the listener keeps the last ``WINDOW`` samples
(4.04 s, the models' input) and the speech gate's answer for every 32 ms of them. Every ``hop_s``
of new sound it offers a window: the latest 4.04 s (or all there is, once ``min_window_s`` has
come: the models tile a shorter input), overlapping the window before by ``WINDOW - hop``. A
window whose speech share is below ``min_speech`` is not judged: it is ``no_speech``. A gap in the
sound (``chunk.gap``: a reconnect, lost packets, a file looping) starts the window afresh, so no
window joins sound from either side of a hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from core.strict import StrictModel
from pipeline.judging.ensemble import EnsembleConfig
from pipeline.judging.evidence import PACKAGED_VOICE, VOICE
from pipeline.judging.smoothing import Smoothing, SmoothingConfig
from pipeline.judging.speech import Gate
from pipeline.models.audio.aasist import SAMPLE_RATE, WINDOW
from stream import AudioChunk


def _voice_smoothing() -> dict:
    # a window every 2 s, each 4 s of evidence; the cusum's rate is stated per hour of a stream's
    # speech, ten minutes of it at a stretch (a call, a segment). Shift 3, not the face's 4: a quarter
    # of the real recordings AASIST was fitted on score P(spoof) ~ 1 all along, at the top of the
    # fit, and at shift 4 only such windows add evidence, so a real voice like them would alarm in
    # 14 s; at 3 it takes three minutes of it. The ema's alpha per window, a label from the second.
    return {
        "method": "cusum",
        "period_s": 2.0,
        "track_s": 600.0,
        "shift": 3.0,
        "alpha": 0.6,
        "min_frames": 2,
        "min_duration_s": 0.0,
    }


class VoiceConfig(StrictModel):
    """The ``voice`` section: how often a stream's voice is judged and when a window counts as speech."""

    # measured (bench/voice.py): AASIST on onnxruntime takes 0.26 s of a core per window, so a
    # window every 2 s is about 13 % of a core per stream, and a change of voice is heard within 2 s
    hop_s: float = Field(2.0, ge=0.25, le=30.0)
    min_window_s: float = Field(2.0, gt=0.0, le=WINDOW / SAMPLE_RATE)  # the first window of a stream or after a gap
    min_speech: float = Field(0.3, ge=0.0, le=1.0)  # share of a window's 32 ms frames the gate calls speech
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0)  # silero's P(speech) for a frame to count as speech
    no_audio_after_s: float = Field(3.0, gt=0.0)  # no sound this long while the stream runs: voice is no_audio
    # cusum against the packaged real-speech baseline (AASIST, fitted on the development set's
    # recordings), or a site's own (dfstream calibrate --real-only --audio-detectors)
    smoothing: SmoothingConfig = Field(default_factory=lambda: SmoothingConfig(**_voice_smoothing()))
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)

    @model_validator(mode="before")
    @classmethod
    def _voice_smoothing_defaults(cls, data: object) -> object:
        # the fields a file sets go over the voice's defaults (a window every 2 s), not a face's
        if isinstance(data, dict) and isinstance(data.get("smoothing"), dict):
            data = {**data, "smoothing": {**_voice_smoothing(), **data["smoothing"]}}
        return data

    @model_validator(mode="after")
    def _verify(self) -> VoiceConfig:
        if self.ensemble.default_weights:
            raise ValueError("voice.ensemble.default_weights: each audio detector has its own weight")
        return self


def voice_smoothing(config: VoiceConfig, detector_types: list[str]) -> Smoothing:
    """How every stream's voice is smoothed and alarmed: by evidence against real speech (the packaged
    AASIST baseline, or ``voice.smoothing.baseline``), or as ``voice.smoothing`` says otherwise."""
    fusion = config.ensemble.fusion_method.value
    return Smoothing.build(config.smoothing, VOICE, detector_types, fusion, PACKAGED_VOICE)


@dataclass(frozen=True, eq=False)
class Window:
    """A stretch of one stream's sound, ready to judge (or not: ``speech`` below the bar)."""

    samples: np.ndarray  # float32, at most WINDOW
    speech: float  # share of its gate frames that are speech
    pts_start: float | None  # stream clock, like a video frame's pts
    pts_end: float | None
    arrival_ts: float  # wall clock when its last sample arrived
    arrival_mono: float

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class Listener:
    def __init__(self, config: VoiceConfig, gate: Gate):
        self.config = config
        self.gate = gate
        self.hop = int(config.hop_s * SAMPLE_RATE)
        self.min_window = int(config.min_window_s * SAMPLE_RATE)
        self._restart()

    def _restart(self) -> None:
        self._samples = np.zeros(0, np.float32)  # the last WINDOW samples at most
        self._flags = np.zeros(0, bool)  # the gate's answer per frame, the last frame ending at _judged
        self._unjudged = np.zeros(0, np.float32)  # samples after the last whole gate frame
        self._since_window = 0
        self._pts_end: float | None = None
        self._offered = False
        self.gate.reset()

    def hear(self, chunk: AudioChunk) -> Window | None:
        """Take a chunk; the window it completes, if any."""
        if chunk.gap:
            self._restart()
        samples = chunk.samples
        self._samples = np.concatenate([self._samples, samples])[-WINDOW:]
        self._gate(samples)
        self._since_window += len(samples)
        self._pts_end = None if chunk.pts is None else chunk.pts + len(samples) / SAMPLE_RATE
        due = self._since_window >= self.hop if self._offered else len(self._samples) >= self.min_window
        if not due:
            return None
        return self._window(chunk.arrival_ts, chunk.arrival_mono)

    def finish(self, arrival_ts: float, arrival_mono: float) -> Window | None:
        """At the end of the sound: a last window over what came since the one before (the last
        words of a file are judged too), unless that is under a quarter of a hop."""
        fresh = self._since_window if self._offered else len(self._samples)
        if fresh < self.hop // 4:
            return None
        return self._window(arrival_ts, arrival_mono)

    def _window(self, arrival_ts: float, arrival_mono: float) -> Window:
        self._offered, self._since_window = True, 0
        n = self.gate.frame_samples
        frames = max(1, len(self._samples) // n)
        flags = self._flags[-frames:]
        speech = float(flags.mean()) if len(flags) else 0.0
        seconds = len(self._samples) / SAMPLE_RATE
        start = None if self._pts_end is None else self._pts_end - seconds
        return Window(self._samples.copy(), speech, start, self._pts_end, arrival_ts, arrival_mono)

    def _gate(self, samples: np.ndarray) -> None:
        n = self.gate.frame_samples
        pending = np.concatenate([self._unjudged, samples])
        whole = len(pending) // n * n
        flags = [self.gate(pending[i : i + n]) for i in range(0, whole, n)]
        self._unjudged = pending[whole:]
        self._flags = np.concatenate([self._flags, np.array(flags, bool)])[-(WINDOW // n + 1) :]

    def speaking(self, window: Window) -> bool:
        return window.speech >= self.config.min_speech
