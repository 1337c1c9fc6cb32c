"""One stream's voice: its sound cut into windows (``Listener``), the windows with speech judged by
every voice model (through the host's batchers, shared by all streams), fused, smoothed with the
same hysteresis as a face track, and published as ``VoiceVerdict``s.

    Source.sound() ─chunks─▶ Listener (speech gate) ─window─▶ voice batchers ─▶ fuse ─▶ smooth ─▶ publish

The stream's state shows the voice's label (``state``); ``on_change`` tells the stream worker when
it changed, so the retained state is republished. While no sound arrives for
``voice.no_audio_after_s`` (a stream without an audio track, a track that stopped) the state is
``no_audio``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from core.errors import InsufficientModelsError
from core.ratelog import RateLimitedLog
from pipeline.judging.ensemble import EnsembleResult
from pipeline.judging.incidents import Incidents
from pipeline.judging.listening import Listener, VoiceConfig, Window
from pipeline.judging.smoothing import Smoothing
from pipeline.judging.speech import SileroGate
from pipeline.monitoring.keys import WINDOW_TO_VOICE, Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.backends import Answers
from pipeline.runtime.events import Event, VoiceLabel, VoiceState, VoiceVerdict
from pipeline.runtime.numbering import Numbering
from stream import AudioChunk

log = logging.getLogger(__name__)


class VoiceHost(Protocol):
    voice_smoothing: Smoothing | None  # every stream's voice is smoothed (and alarmed) alike; None: none judged

    async def score_voice(self, window: Window) -> Answers: ...

    def fuse_voice(self, answers: Answers) -> EnsembleResult: ...

    def publish(self, event: Event) -> None: ...


class VoiceWorker:
    def __init__(
        self,
        stream_id: str,
        config: VoiceConfig,
        host: VoiceHost,
        monitor: PerformanceMonitor,
        numbering: Numbering,
        live: bool,
        on_change: Callable[[], None],
        incidents: Incidents | None = None,
    ):
        self.stream_id = stream_id
        self.config = config
        self.host = host
        self.monitor = monitor
        self.numbering = numbering
        self.live = live
        self.on_change = on_change
        self.incidents = incidents  # the stream's (shared with its faces): the voice's incident joins them
        self._incident: int | None = None
        self._t = 0.0  # the last window's time on the smoothing clock
        self.subject = Subject.stream(stream_id)
        self.seq_key = f"{stream_id}/voice"
        self.listener = Listener(config, SileroGate(config.vad_threshold))
        assert host.voice_smoothing is not None, "a voice is judged only where voice models are configured"
        self.smoother = host.voice_smoothing.track()
        self.state: VoiceState = "no_audio"
        self.spoof_probability: float | None = None
        self._label: VoiceLabel | None = None
        self._label_since = time.time()
        self._heard = time.monotonic()
        self.problems = RateLimitedLog(log)

    async def run(self, sound: AsyncIterator[AudioChunk]) -> None:
        watchdog = asyncio.create_task(self._watch(), name=f"dfstream[{self.stream_id}].voice.watch")
        try:
            last = None
            async for chunk in sound:
                self._heard, last = time.monotonic(), chunk
                window = self.listener.hear(chunk)
                if window is not None:
                    await self._judge(window)
            if last is not None and (window := self.listener.finish(last.arrival_ts, last.arrival_mono)) is not None:
                await self._judge(window)
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            self._set_state("no_audio", None)

    async def _watch(self) -> None:
        limit = self.config.no_audio_after_s
        while True:
            await asyncio.sleep(min(0.5, limit / 4))
            if self.state != "no_audio" and time.monotonic() - self._heard > limit:
                self._set_state("no_audio", None)

    async def _judge(self, window: Window) -> None:
        self.monitor.set_gauge(self.subject, Gauge.SPEECH_SHARE, round(window.speech, 4))
        if not self.listener.speaking(window):
            self.monitor.count(self.subject, Count.VOICE_WINDOWS, result="no_speech")
            self._publish(window, "no_speech", None, None, {}, (), self._clock(window))
            return
        answers = await self.host.score_voice(window)
        try:
            fused = self.host.fuse_voice(answers)
        except InsufficientModelsError as exc:
            self.monitor.count(self.subject, Count.VOICE_WINDOWS, result="skipped")
            self.problems("no_voice", "%s: no voice verdict: %s", self.stream_id, exc)
            return
        self.problems.clear("no_voice")
        # smoothing runs on stream time for files read asap, on arrival time for live input (as faces do)
        t = self._clock(window)
        smoothed = self.smoother.update(fused.fake_probability, fused.uncertainty or 0.0, t)
        self.monitor.count(self.subject, Count.VOICE_WINDOWS, result="judged")
        self._publish(window, smoothed.label, smoothed, fused, fused.model_scores, tuple(sorted(answers.failed)), t)

    def _clock(self, window: Window) -> float:
        self._t = window.pts_end if (not self.live and window.pts_end is not None) else window.arrival_mono
        return self._t

    def _follow_incident(self, label: str, t: float, ts: float) -> int | None:
        """The voice's incident after this window; the stream's state is told when it opens or closes."""
        if self.incidents is None:
            return None
        before = self.incidents.opened
        incident = self.incidents.observe("voice", None, label, t, ts)
        if self.incidents.opened > before:
            self.monitor.count(self.subject, Count.INCIDENTS, modality="voice")
        current = None if incident is None else incident.id
        if current != self._incident:
            self._incident = current
            self.on_change()
        return current

    def _publish(self, window: Window, label: VoiceLabel, smoothed, fused, models, failed, t: float) -> None:  # noqa: ANN001
        now = time.time()
        incident = self._follow_incident(label, t, window.arrival_ts)
        if label != self._label:
            self._label, self._label_since = label, window.arrival_ts
        spoof = None if smoothed is None else round(smoothed.probability, 6)
        verdict = VoiceVerdict(
            stream=self.stream_id,
            seq=self.numbering.next(self.seq_key),
            ts=now,
            label=label,
            label_since=self._label_since,
            spoof_probability=spoof,
            raw_probability=None if fused is None else round(fused.fake_probability, 6),
            uncertainty=None if smoothed is None else round(smoothed.uncertainty, 6),
            models={k: round(v, 6) for k, v in models.items()},
            speech=round(window.speech, 4),
            window_start_pts=_rounded(window.pts_start),
            window_end_pts=_rounded(window.pts_end),
            window_s=round(window.seconds, 3),
            window_end_ts=window.arrival_ts,
            latency_ms=round((time.monotonic() - window.arrival_mono) * 1000.0, 2),
            failed_models=failed,
            incident=incident,
            audio=window.samples if label == "fake" else None,
        )
        self.monitor.record_latency(WINDOW_TO_VOICE, time.monotonic() - window.arrival_mono)
        self.host.publish(verdict)
        self._set_state(label, spoof)

    def _set_state(self, state: VoiceState, spoof: float | None) -> None:
        if state == "no_audio" and self.incidents is not None:
            self.incidents.gone("voice", None, self._t)  # its sound stopped: the incident goes quiet
        changed = state != self.state
        self.state, self.spoof_probability = state, spoof
        if changed:
            self.on_change()


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
