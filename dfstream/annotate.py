"""``dfstream annotate INPUT --out OUT.mp4``: a file or URL in, the same video out with every face's
box, track id, label and smoothed P(fake) drawn, and the verdict timeline along the bottom; judged
by the streaming runtime itself (faces, tracking, the ensemble, smoothing), not by a copy of it.

The runtime hands every judged frame, in order, to an encoder thread through a small queue it
waits on when full (the tap's backpressure): annotate judges no faster than it writes, and no
frame is skipped.

A file's sound is kept: its audio packets are copied into the output beside the new pictures.
With voice models (``audio_detectors``), the voice is judged first, by the code ``dfstream eval``
and uploads use (the same decoder, gate, windows and models), smoothed with the stream's
hysteresis, and each frame shows the voice badge of the last window that ended before it (judging
the voice inside the runtime would make the encoder wait for windows that need frames decoded
later). A live URL's sound is not kept."""

from __future__ import annotations

import asyncio
import heapq
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av

from core.errors import ConfigError, SourceError, one_line
from core.handoff import LoopHandoff, Stopped
from core.queues import DropOldestQueue, QueueClosed
from dfstream.config import DfstreamConfig
from pipeline.evaluation.voice import listen, score_windows
from pipeline.judging.ensemble import build_ensemble
from pipeline.judging.listening import voice_smoothing
from pipeline.models.audio.scorer import VoiceModel
from pipeline.models.detector import BaseDetector
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.drawing import Timeline, draw, draw_voice
from pipeline.runtime.live import Shot
from pipeline.runtime.runtime import Runtime
from sinks.video import H264Writer
from stream.probe import Probe, probe

STREAM = "input"


def probe_input(source: str) -> Probe:
    """What the encoder needs to know of the input before the first frame."""
    try:
        return probe(source)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None


VoiceMoment = tuple[float, str, float | None]  # a window's end (stream time), its smoothed label and P(spoof)


def voice_timeline(config: DfstreamConfig, voices: dict[str, VoiceModel], source: Path) -> list[VoiceMoment]:
    """The voice of ``source`` window by window, labelled as the runtime labels a stream's voice."""
    ensemble = build_ensemble(config.voice.ensemble, config.audio_detectors, None)
    windows = score_windows(listen(source, config.voice), voices, ensemble, config.voice.min_speech)
    smoother = voice_smoothing(config.voice, [d.type for d in config.audio_detectors]).track()
    moments: list[VoiceMoment] = []
    for w in windows:
        if w.spoof_probability is None:
            moments.append((w.end, "no_speech", None))
            continue
        smoothed = smoother.update(w.spoof_probability, 0.0, w.end)
        moments.append((w.end, smoothed.label, smoothed.probability))
    return moments


class _Writer(threading.Thread):
    def __init__(
        self,
        out: Path,
        found: Probe,
        handoff: LoopHandoff,
        progress: Callable[[int], None] | None,
        voice: list[VoiceMoment],
        sound: Path | None,
    ):
        super().__init__(name="dfstream[annotate].encode", daemon=True)
        self.out, self.found, self.handoff, self.progress = out, found, handoff, progress
        self.voice, self.sound = voice, sound
        self.shots: DropOldestQueue[Shot] = DropOldestQueue(16)
        self.written = 0
        self.error: BaseException | None = None
        self.timeline = Timeline(found.duration_s, found.width) if found.duration_s else None
        self._never = threading.Event()  # every queued shot is written: the queue's end alone stops it

    async def receive(self, shot: Shot) -> None:
        """The tap's follower: waits while the encoder is 16 frames behind."""
        await self.shots.put_wait(shot)

    def run(self) -> None:
        partial = self.out.with_name(f".{self.out.name}.part")
        try:
            found = self.found
            with H264Writer(
                str(partial),
                _format(self.out),
                found.width,
                found.height,
                found.fps,
                {"preset": "veryfast", "crf": "21"},
            ) as out:
                first_pts = None
                while (shot := self._next()) is not None:
                    canvas = draw(shot.image, shot.faces)
                    heard = [m for m in self.voice if m[0] <= (shot.pts or 0.0)]
                    if heard:
                        draw_voice(canvas, heard[-1][1], heard[-1][2])
                    if self.timeline is not None:
                        if first_pts is None:
                            first_pts = shot.pts or 0.0
                        self.timeline.draw(canvas, self.timeline.mark((shot.pts or 0.0) - first_pts, shot.faces))
                    out.write(canvas)
                    self.written = out.written
                    if self.progress is not None:
                        self.progress(1)
            if self.sound is not None:
                with_sound = self.out.with_name(f".{self.out.name}.sound.part")
                try:
                    copy_sound(partial, self.sound, with_sound, _format(self.out))
                    with_sound.replace(self.out)
                finally:
                    with_sound.unlink(missing_ok=True)
                partial.unlink(missing_ok=True)
            else:
                partial.replace(self.out)
        except BaseException as exc:  # noqa: BLE001 -- reported by annotate() on the main thread
            self.error = exc
            partial.unlink(missing_ok=True)
            self.handoff.call(self.shots.close)  # the runtime's next frames are dropped instead of waiting forever

    def _next(self) -> Shot | None:
        try:
            return self.handoff.wait(self.shots.get(), self._never)
        except (QueueClosed, Stopped):
            return None


def copy_sound(video: Path, source: Path, out: Path, fmt: str | None) -> None:
    """``video``'s pictures and ``source``'s first audio track, packets copied as they are,
    interleaved by time, into ``out``."""
    with av.open(str(video)) as pictures, av.open(str(source)) as sound, av.open(str(out), "w", format=fmt) as target:
        picture_out = target.add_stream_from_template(pictures.streams.video[0])
        sound_in = sound.streams.audio[0]
        sound_out = target.add_stream_from_template(sound_in)

        def timed(packets, stream):  # (seconds, n, packet): the muxer is fed in time order
            for n, packet in enumerate(packets):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = stream
                yield float(packet.dts * packet.time_base), n, packet

        video_packets = timed(pictures.demux(pictures.streams.video[0]), picture_out)
        audio_packets = timed(sound.demux(sound_in), sound_out)
        for _, _, packet in heapq.merge(video_packets, audio_packets, key=lambda item: item[0]):
            target.mux(packet)


def _format(out: Path) -> str | None:
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}.get(out.suffix.lower())


def annotate(
    config: DfstreamConfig,
    detectors: dict[str, BaseDetector],
    source: str,
    out: Path,
    progress: Callable[[int], None] | None = None,
    voices: dict[str, VoiceModel] | None = None,
) -> dict:
    """Judge ``source`` and write ``out``; returns what was done (frames, seconds, fps, voice windows)."""
    found = probe_input(source)
    path = Path(source) if config.streams[0].kind == "file" else None
    sound = path if path is not None and _has_sound(path) else None
    voice = voice_timeline(config, voices, sound) if sound is not None and voices else []
    # the runtime judges the faces; the voice was judged above
    config = config.model_copy(update={"audio_detectors": []})
    if _format(out) is None:
        raise ConfigError(f"--out {out}: the name must end in .mp4, .mov, .mkv or .ts")
    out.parent.mkdir(parents=True, exist_ok=True)
    monitor = PerformanceMonitor(config.monitoring)
    started = time.perf_counter()

    async def judge() -> _Writer:
        runtime = Runtime(config, detectors, [], monitor)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a live input ends when asked; what was written is kept
            loop.add_signal_handler(sig, runtime.stop.set)
        writer = _Writer(out, found, LoopHandoff.here(), progress, voice, sound)
        writer.start()
        try:
            with runtime.tap.follow(STREAM, writer.receive):
                await runtime.run()
        finally:
            writer.shots.close()  # what is queued is still written
            await asyncio.to_thread(writer.join)
        return writer

    writer = asyncio.run(judge())
    if writer.error is not None:
        raise ConfigError(f"--out {out}: writing failed: {one_line(writer.error)}")
    elapsed = time.perf_counter() - started
    return {
        "frames": writer.written,
        "seconds": elapsed,
        "fps": writer.written / elapsed if elapsed else 0.0,
        "voice_windows": len(voice),
        "sound": sound is not None,
    }


def _has_sound(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError):
        return False
