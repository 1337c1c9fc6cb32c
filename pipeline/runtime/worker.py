"""One stream's whole path from source to verdict: decode, find and track faces, have them scored,
smooth each track, publish. A worker gets only the narrow ``StreamHost`` interface, so the same worker
runs beside in-process batchers or, later, remote ones (a Ray actor per stream)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.errors import ConfigError, InsufficientModelsError
from core.ratelog import RateLimitedLog
from pipeline.judging.cadence import Cadence, JudgeConfig, Scored
from pipeline.judging.ensemble import EnsembleResult
from pipeline.judging.incidents import IncidentConfig, Incidents
from pipeline.judging.listening import VoiceConfig
from pipeline.judging.quality import QualityConfig, Reason, measure
from pipeline.judging.smoothing import Smoothing, TrackSmoother
from pipeline.judging.tracking import IouTracker
from pipeline.models.detections import Box, Detections
from pipeline.models.faces.finder import FacesConfig
from pipeline.monitoring.keys import DECODE_TO_FACES, END_TO_END, SCORES_TO_VERDICT, Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.backends import Answers
from pipeline.runtime.events import StreamState, StreamStatus, Verdict, stream_label
from pipeline.runtime.live import Face, LiveTap, Shot
from pipeline.runtime.numbering import Counting, Numbering
from pipeline.runtime.overload import Governor, Shedding
from pipeline.runtime.voice import VoiceHost, VoiceWorker
from stream import Frame, Source, SourceCount, SourceStatus, StreamConfig
from stream.call_source import CallSource
from stream.calls import CallHub

log = logging.getLogger(__name__)

WARMUP_S = 2.0  # a stream's first seconds, not counted as load


class StreamHost(VoiceHost, Protocol):
    """What a stream worker needs from the rest of the runtime, and nothing more."""

    async def find_faces(self, image: np.ndarray) -> Detections: ...

    async def score_faces(
        self, image: np.ndarray, boxes: list[Box], landmarks: list[np.ndarray | None] | None = None
    ) -> list[Answers]: ...

    def fuse(self, face: Answers) -> EnsembleResult: ...


@dataclass
class TrackState:
    """A judged track: its smoother, its last score and its last scored verdict (a track exists
    here from its first verdict)."""

    smoother: TrackSmoother
    scored: Scored
    verdict: Verdict

    @property
    def label(self) -> str:
        return self.verdict.label

    @property
    def probability(self) -> float:
        return self.verdict.fake_probability


@dataclass
class _Queued:
    frame: Frame
    tracked: Detections
    closed: list[int] = field(default_factory=list)


_SOURCE_COUNTS: dict[SourceCount, tuple[Count, dict[str, str]]] = {
    SourceCount.FRAMES_DECODED: (Count.FRAMES_DECODED, {}),
    SourceCount.DROPPED_FPS_CAP: (Count.FRAMES_DROPPED, {"reason": "fps_cap"}),
    SourceCount.DROPPED_QUEUE_FULL: (Count.FRAMES_DROPPED, {"reason": "queue_full"}),
    SourceCount.DROPPED_OVERLOAD: (Count.FRAMES_DROPPED, {"reason": "overload"}),
    SourceCount.DECODE_ERRORS: (Count.DECODE_ERRORS, {}),
    SourceCount.ERRORS: (Count.SOURCE_ERRORS, {}),
    SourceCount.RECONNECTS: (Count.RECONNECTS, {}),
    SourceCount.STALLS: (Count.STALLS, {}),
    SourceCount.AUDIO_CHUNKS: (Count.AUDIO_CHUNKS, {}),
    SourceCount.AUDIO_DROPPED: (Count.AUDIO_DROPPED, {}),
    SourceCount.AUDIO_DECODE_ERRORS: (Count.AUDIO_DECODE_ERRORS, {}),
}


class _SourceMetrics:
    """A source's counts, into the monitor under its stream; its drops for a full queue to the
    governor too (the pipeline is behind)."""

    def __init__(self, monitor: PerformanceMonitor, subject: Subject, behind: Callable[[int], None] | None):
        self.monitor, self.subject, self.behind = monitor, subject, behind

    def count(self, key: SourceCount, n: int = 1) -> None:
        name, label_values = _SOURCE_COUNTS[key]
        self.monitor.count(self.subject, name, n, **label_values)
        if key is SourceCount.DROPPED_QUEUE_FULL and self.behind is not None:
            self.behind(n)

    def expected_fps(self, fps: float) -> None:
        self.monitor.set_gauge(self.subject, Gauge.EXPECTED_FPS, fps)


class StreamWorker:
    """Two tasks per stream: the detect loop finds faces (every ``detect_every`` frames) and tracks
    them; the score loop has the tracks that are due scored (``Cadence``), fuses, smooths and
    publishes a verdict for every tracked face. Frame n+1's faces are found
    while frame n is scored. The queue between them is small and blocking, so when the pipeline is
    behind the pressure reaches the source, which drops its oldest frame (counted). With ``voice``
    (a voice model is configured and the stream's ``audio`` is ``auto``), a third task judges the
    stream's sound (``VoiceWorker``) from the same source.

    A live stream follows the runtime's ``Governor`` (overload): it reports each frame's lateness
    and sheds judging, face finding and then frames at the level the governor sets for all streams.
    A file read as fast as it decodes is never shed: its pace is the pipeline's, and its verdicts are
    the file's."""

    def __init__(
        self,
        config: StreamConfig,
        faces: FacesConfig,
        judge: JudgeConfig,
        smoothing: Smoothing,
        host: StreamHost,
        monitor: PerformanceMonitor,
        stop: asyncio.Event,
        tap: LiveTap | None = None,
        numbering: Numbering | None = None,
        voice: VoiceConfig | None = None,
        calls: CallHub | None = None,
        governor: Governor | None = None,
        incidents: IncidentConfig | None = None,
        quality: QualityConfig | None = None,
    ):
        """``calls``: where a ``whip://`` stream's sessions arrive (``dfstream serve`` has one);
        ``governor``: the runtime's, when it sheds work under overload; ``incidents``: when an
        alarm's incident closes; ``quality``: which faces are too poor to judge."""
        self.config = config
        self.calls = calls
        self.tap = tap
        self.subject = Subject.stream(config.id)
        self.detect_every = faces.detect_every
        self.smoothing = smoothing
        self.cadence = Cadence(judge)
        self.host = host
        self.monitor = monitor
        self.stop = stop
        self.tracker = IouTracker(faces.iou_threshold, faces.max_missed, faces.max_jump)
        self.tracks: dict[int, TrackState] = {}
        self.state: tuple | None = None  # what the last published state said
        self.numbering = numbering or Counting()
        self.seq_key = f"{config.id}/verdicts"
        # incident ids continue across restarts and moves, as verdicts' seq do (the number keeper)
        self.quality = quality or QualityConfig()
        self.incidents = Incidents(incidents or IncidentConfig(), lambda: self.numbering.next(f"{config.id}/incidents"))
        self.frames_seen = 0  # the stream's frames so far, those dropped on the way included
        self.live = config.live
        self.governor = governor if config.live else None
        self.shedding = Shedding()
        self.last_faces: tuple[int, float] | None = None  # frame index and time of the last face finding
        self.frame_period: float | None = None  # the stream's frame interval, smoothed
        self.last_t: float | None = None
        self.degraded: str | None = None  # the reason while the stream is shed (a status reason)
        self.online = False
        self.opened_at = time.monotonic()  # the source's start: its first seconds are not load
        self.told_quarter = 0
        self.problems = RateLimitedLog(log)
        self.voice = (
            VoiceWorker(config.id, voice, host, monitor, self.numbering, self.live, self._publish_state, self.incidents)
            if voice is not None and config.audio == "auto"
            else None
        )

    async def run(self) -> None:
        self.monitor.set_gauge(self.subject, Gauge.UP, 0)
        if self.governor is not None:
            self.monitor.set_gauge(self.subject, Gauge.DEGRADED, 0)
            self.monitor.set_gauge(self.subject, Gauge.FRAMES_SHED, 0)
            if self.cadence.full_hz is not None:
                self.monitor.set_gauge(self.subject, Gauge.JUDGE_RATE, self.cadence.full_hz)
        if self.config.kind != "webrtc":
            await self._judge_source(self._source(Source))
            return
        if self.calls is None:
            raise ConfigError(
                f"stream {self.config.id}: {self.config.url} streams are pushed to `dfstream serve` (its WHIP "
                "endpoint); `dfstream run` has no server to receive them"
            )
        inbox = self.calls.inbox(self.config.id)
        self._on_status(self.config.id, SourceStatus.OFFLINE, f"waiting for a call (WHIP: POST /whip/{self.config.id})")
        try:
            async for session in inbox.sessions(self.stop):
                self.tracker.forget()  # a new call: the faces of the last one are not these
                await self._judge_source(self._source(functools.partial(CallSource, session)))
        finally:
            await self.calls.forget(self.config.id)

    def _source(self, kind: Callable[..., Source | CallSource]) -> Source | CallSource:
        return kind(
            self.config,
            on_status=self._on_status,
            counters=_SourceMetrics(self.monitor, self.subject, self._dropped if self.governor else None),
            listen=self.voice is not None,
        )

    async def _judge_source(self, source: Source | CallSource) -> None:
        self.opened_at = time.monotonic()
        async with source:
            stopper = asyncio.create_task(self._stop_on_request(source), name=f"dfstream[{self.config.id}].stop")
            queue: asyncio.Queue[_Queued | None] = asyncio.Queue(maxsize=2)
            loops = [self._detect(source, queue), self._score(queue)]
            if self.voice is not None:
                loops.append(self.voice.run(source.sound()))
            try:
                await asyncio.gather(*loops)
            finally:
                stopper.cancel()
            # drained: the stream shows no face any more, nothing stays alarmed, then (leaving the
            # block) it goes offline
            self.tracks.clear()
            self.incidents.close_all()
            self._publish_state()

    async def _stop_on_request(self, source: Source | CallSource) -> None:
        await self.stop.wait()
        source.request_stop()

    async def _detect(self, source: Source | CallSource, queue: asyncio.Queue[_Queued | None]) -> None:
        last_seq: int | None = None
        try:
            async for frame in source:
                # frames are indexed as the stream numbered them: the ones dropped on the way (a full
                # queue, shed under overload) count, so the tracker's motion and the face-finding
                # interval stay in stream frames
                gap = frame.seq - last_seq if last_seq is not None and frame.seq > last_seq else 1
                last_seq = frame.seq
                self.frames_seen += gap
                index = self.frames_seen - 1
                t = self._time(frame)
                self._clock(t, gap)
                self.monitor.set_gauge(self.subject, Gauge.QUEUE_DEPTH, source.queued())
                shedding = self._follow_load()
                source.shed_frames(shedding.drop)
                if not self._faces_due(index, t, shedding):
                    await queue.put(_Queued(frame, self.tracker.carry(index)))
                    continue
                self.last_faces = (index, t)
                try:
                    found = await self.host.find_faces(frame.image)
                except Exception as exc:
                    self.monitor.count(self.subject, Count.FACE_ERRORS)
                    self.problems("faces", "%s: face detection failed: %s", self.config.id, exc)
                    found = Detections.empty()
                tracked, closed = self.tracker.update(found, index)
                self.monitor.count(self.subject, Count.FACES_DETECTED, len(found))
                self.monitor.record_latency(DECODE_TO_FACES, time.monotonic() - frame.arrival_mono)
                await queue.put(_Queued(frame, tracked, closed))
        finally:
            await queue.put(None)

    async def _score(self, queue: asyncio.Queue[_Queued | None]) -> None:
        while (item := await queue.get()) is not None:
            t = self._time(item.frame)
            for track_id in item.closed:
                self.tracks.pop(track_id, None)
                self.incidents.gone("face", track_id, t)
            self.incidents.expire(t)  # the state published after this frame says what closed
            if len(item.tracked):
                await self._judge(item.frame, item.tracked)
            self.monitor.count(self.subject, Count.FRAMES_PROCESSED)
            if self.governor is not None and self._warm():
                self.governor.lateness(time.monotonic() - item.frame.arrival_mono)
            self._publish_state()
            if self.tap is not None and self.tap.watching(self.config.id):
                await self._show(item.frame, item.tracked)

    async def _judge(self, frame: Frame, tracked: Detections) -> None:
        height, width = frame.image.shape[:2]
        boxes = np.clip(tracked.xyxy, 0, [width, height, width, height])
        t = self._time(frame)
        ids = [int(i) for i in tracked.track_ids]
        due = [i for i, tid in enumerate(ids) if self.cadence.due(_scored(self.tracks.get(tid)), boxes[i], t)]
        # faces too poor to judge are not scored (and add no evidence): checked when they are due
        poor = {
            i: reason
            for i in due
            if (reason := measure(frame.image, _box(boxes[i]), tracked.landmarks[i]).reason(self.quality))
        }
        due = [i for i in due if i not in poor]
        points = [tracked.landmarks[i] for i in due]
        faces = (
            dict(zip(due, await self.host.score_faces(frame.image, [_box(boxes[i]) for i in due], points)))
            if due
            else {}
        )
        scored_at = time.monotonic()
        for i, track_id in enumerate(ids):
            face = faces.get(i)
            track = self.tracks.get(track_id)
            if i in poor:
                self._unjudged(frame, t, track_id, track, _box(boxes[i]), len(ids), poor[i])
                continue
            if face is None:
                assert track is not None  # a track without a state is always due
                self._carry(frame, track, _box(boxes[i]), len(ids))
                continue
            try:
                fused = self.host.fuse(face)
            except InsufficientModelsError as exc:
                self.monitor.count(self.subject, Count.VERDICTS_SKIPPED)
                self.problems("no_verdict", "%s: no verdict for track %d: %s", self.config.id, track_id, exc)
                continue
            self._emit(frame, t, track_id, boxes[i], len(ids), fused, face.failed)
        if faces:
            self.monitor.record_latency(SCORES_TO_VERDICT, time.monotonic() - scored_at)
        skimmed = sum(self.cadence.skimmed(track.scored, t) for track in self.tracks.values())
        self.monitor.set_gauge(self.subject, Gauge.TRACKS_SKIMMED, skimmed)

    # ---- overload: the governor's level, followed ------------------------------------------------
    def _warm(self) -> bool:
        # a source's first seconds say nothing of the load: the models' first calls, a server's burst
        # of buffered frames at connect
        return time.monotonic() - self.opened_at >= WARMUP_S

    def _dropped(self, n: int) -> None:
        """The source dropped frames for a full queue (from its decode thread)."""
        if self._warm():
            assert self.governor is not None
            self.governor.dropped(n)

    def _clock(self, t: float, frames: int) -> None:
        """The stream's frame interval, from this frame's time and the ``frames`` since the last one."""
        if self.last_t is not None and 0.0 < t - self.last_t < 1.0:
            dt = (t - self.last_t) / frames
            first = self.frame_period is None
            self.frame_period = dt if self.frame_period is None else 0.9 * self.frame_period + 0.1 * dt
            if first and self.governor is not None:
                self.monitor.set_gauge(self.subject, Gauge.FACES_RATE, round(self._full_faces_hz(), 3))
        self.last_t = t

    def _faces_due(self, index: int, t: float, shedding: Shedding) -> bool:
        if self.last_faces is None:
            return True
        last_index, last_t = self.last_faces
        if index - last_index < self.detect_every:
            return False
        if shedding.share == 0.0 or self.frame_period is None:
            return True
        assert self.governor is not None
        faces_hz = shedding.rate(self._full_faces_hz(), self.governor.config.faces_floor_hz)
        return t - last_t >= 1.0 / faces_hz - self.cadence.slack

    def _full_faces_hz(self) -> float:
        """How often faces are looked for at ``detect_every`` and the stream's frame rate."""
        assert self.frame_period is not None
        return 1.0 / (self.detect_every * self.frame_period)

    def _follow_load(self) -> Shedding:
        if self.governor is None or self.governor.shedding is self.shedding:
            return self.shedding
        shedding = self.shedding = self.governor.shedding
        config = self.governor.config
        full = self.cadence.max_rate_hz
        self.cadence.shed(None if full is None else shedding.rate(full, config.judge_floor_hz), shedding.share)
        faces_hz = None
        if self.frame_period is not None:
            faces_hz = shedding.rate(self._full_faces_hz(), config.faces_floor_hz)
            self.monitor.set_gauge(self.subject, Gauge.FACES_RATE, round(faces_hz, 3))
        if self.cadence.full_hz is not None:
            self.monitor.set_gauge(self.subject, Gauge.JUDGE_RATE, round(self.cadence.full_hz, 3))
        self.monitor.set_gauge(self.subject, Gauge.DEGRADED, 1 if shedding.level > 0 else 0)
        self.monitor.set_gauge(self.subject, Gauge.FRAMES_SHED, round(shedding.drop, 4))
        self.degraded = _degraded_reason(shedding, self.cadence.full_hz, faces_hz) if shedding.level > 0 else None
        # told when it begins (level > 0: quarter 1), ends (0), or crosses a quarter step: not at every small move
        if _quarter(shedding) != self.told_quarter:
            self.told_quarter = _quarter(shedding)
            if self.online:
                self.host.publish(StreamStatus(self.config.id, SourceStatus.ONLINE.value, self.degraded, time.time()))
        return shedding

    def _time(self, frame: Frame) -> float:
        # smoothing and the judge rate run on stream time for files read asap, on arrival time for live input
        return frame.pts if (not self.live and frame.pts is not None) else frame.arrival_mono

    def _emit(
        self,
        frame: Frame,
        t: float,
        track_id: int,
        box: np.ndarray,
        faces: int,
        fused: EnsembleResult,
        failed: dict[str, str],
    ) -> None:
        track = self.tracks.get(track_id)
        smoother = track.smoother if track is not None else self.smoothing.track()
        smoothed = smoother.update(fused.fake_probability, fused.uncertainty or 0.0, t)
        scored = self.cadence.scored(_scored(track), box, t, smoothed.calm)
        incident = self._incident(track_id, smoothed.label, t, frame.arrival_ts)
        latency = time.monotonic() - frame.arrival_mono
        now = time.time()
        verdict = Verdict(
            stream=self.config.id,
            track_id=track_id,
            seq=self.numbering.next(self.seq_key),
            ts=now,
            frame_seq=frame.seq,
            frame_pts=frame.pts,
            label=smoothed.label,
            label_since=frame.arrival_ts - (t - smoothed.label_since),
            fake_probability=round(smoothed.probability, 6),
            raw_probability=round(fused.fake_probability, 6),
            uncertainty=round(smoothed.uncertainty, 6),
            models={k: round(v, 6) for k, v in fused.model_scores.items()},
            bbox=_box(box),
            faces_in_frame=faces,
            latency_ms=round(latency * 1000.0, 2),
            failed_models=tuple(sorted(failed)),
            frame_size=(frame.image.shape[1], frame.image.shape[0]),
            scored=True,
            scored_at=frame.arrival_ts,
            judge_rate_hz=self.cadence.rate_hz(scored, t),
            evidence=smoothed.evidence,
            incident=incident,
            image=frame.image if smoothed.label == "fake" else None,
        )
        self.tracks[track_id] = TrackState(smoother, scored, dataclasses.replace(verdict, image=None))
        self.monitor.record_latency(END_TO_END, latency)
        self.monitor.count(self.subject, Count.VERDICTS, label=smoothed.label)
        self.host.publish(verdict)

    def _carry(self, frame: Frame, track: TrackState, box: Box, faces: int) -> None:
        """The track's last scored verdict, at this frame and where its face is now."""
        last = track.verdict
        incident = self._incident(last.track_id, last.label, self._time(frame), frame.arrival_ts)
        self.monitor.count(self.subject, Count.VERDICTS_CARRIED)
        image = frame.image if last.label == "fake" else None
        self._again(last, frame, box, faces, last.label, unjudged=None, incident=incident, image=image)

    def _unjudged(
        self, frame: Frame, t: float, track_id: int, track: TrackState | None, box: Box, faces: int, reason: Reason
    ) -> None:
        """A face too poor to judge: ``uncertain``, the reason said; its track's evidence, smoothed
        P(fake) and incident left where they were (a track never judged says P(fake) 0.5 with
        uncertainty 1: nothing known)."""
        self.monitor.count(self.subject, Count.FACES_UNJUDGED, reason=reason)
        if track is not None:
            base = dataclasses.replace(track.verdict, failed_models=())
        else:
            base = Verdict(
                stream=self.config.id,
                track_id=track_id,
                seq=0,
                ts=0.0,
                frame_seq=frame.seq,
                frame_pts=frame.pts,
                label="uncertain",
                label_since=frame.arrival_ts,
                fake_probability=0.5,
                raw_probability=0.5,
                uncertainty=1.0,
                models={},
                bbox=box,
                faces_in_frame=faces,
                latency_ms=0.0,
            )
        incident = self._incident(track_id, "uncertain", t, frame.arrival_ts)
        size = (frame.image.shape[1], frame.image.shape[0])
        self._again(
            base, frame, box, faces, "uncertain", frame_size=size, unjudged=reason, incident=incident, image=None
        )

    def _again(self, last: Verdict, frame: Frame, box: Box, faces: int, label: str, **changes: object) -> None:
        """``last`` again, at this frame and where its face is now, unscored, published."""
        latency = time.monotonic() - frame.arrival_mono
        verdict = dataclasses.replace(
            last,
            seq=self.numbering.next(self.seq_key),
            ts=time.time(),
            frame_seq=frame.seq,
            frame_pts=frame.pts,
            label=label,
            bbox=box,
            faces_in_frame=faces,
            latency_ms=round(latency * 1000.0, 2),
            scored=False,
            **changes,
        )
        self.monitor.record_latency(END_TO_END, latency)
        self.monitor.count(self.subject, Count.VERDICTS, label=label)
        self.host.publish(verdict)

    async def _show(self, frame: Frame, tracked: Detections) -> None:
        faces = []
        for track_id, box in zip(tracked.track_ids, tracked.xyxy):
            state = self.tracks.get(int(track_id))
            # the live view follows incidents: a face stays red through the dips of its label
            label = "pending" if state is None else "fake" if state.verdict.incident is not None else state.label
            faces.append(Face(int(track_id), _box(box), label, state.probability if state else None))
        assert self.tap is not None
        await self.tap.offer(Shot(self.config.id, frame.seq, frame.pts, frame.arrival_mono, frame.image, tuple(faces)))

    # ---- incidents: one per fake face or voice ---------------------------------------------------
    def _incident(self, track_id: int, label: str, t: float, ts: float) -> int | None:
        before = self.incidents.opened
        incident = self.incidents.observe("face", track_id, label, t, ts)
        if self.incidents.opened > before:
            self.monitor.count(self.subject, Count.INCIDENTS, modality="face")
        return None if incident is None else incident.id

    def _publish_state(self) -> None:
        live = set(self.tracker.track_ids)
        judged = {tid: t for tid, t in self.tracks.items() if tid in live}
        labels = {tid: t.label for tid, t in judged.items()}
        incidents = tuple(i.to_dict() for i in sorted(self.incidents.open.values(), key=lambda i: i.id))
        # the stream's face is fake while a face incident is open, through the dips of its label
        faces_alarmed = any(i["subject"] == "face" for i in incidents)
        label = "fake" if faces_alarmed else stream_label(labels)
        voice = None if self.voice is None else self.voice.state
        self.monitor.set_gauge(self.subject, Gauge.ACTIVE_TRACKS, len(labels))
        self.monitor.set_gauge(self.subject, Gauge.INCIDENTS_OPEN, len(incidents))
        # published when the label, the tracks, the voice or the incidents change: a track that ends
        # (or starts) while the stream's label stays is news too, for whoever keeps one record per track
        if (label, labels, voice, incidents) != self.state:
            self.state = (label, labels, voice, incidents)
            top = max((t.probability for t in judged.values()), default=None)
            self.host.publish(
                StreamState(
                    self.config.id,
                    label,
                    labels,
                    None if top is None else round(top, 6),
                    time.time(),
                    voice,
                    None if self.voice is None else self.voice.spoof_probability,
                    incidents,
                )
            )

    def _on_status(self, stream_id: str, status: SourceStatus, reason: str | None) -> None:
        self.online = status is SourceStatus.ONLINE
        self.monitor.set_gauge(self.subject, Gauge.UP, 1 if self.online else 0)
        if self.online and reason is None:
            reason = self.degraded
        self.host.publish(StreamStatus(stream_id, status.value, reason, time.time()))


def _quarter(shedding: Shedding) -> int:
    return math.ceil(shedding.level * 4)


def _degraded_reason(shedding: Shedding, judge_hz: float | None, faces_hz: float | None) -> str:
    parts = ["degraded: overloaded"]
    if judge_hz is not None:
        parts.append(f"tracks judged at {judge_hz:.1f} Hz")
    if faces_hz is not None:
        parts.append(f"faces looked for at {faces_hz:.1f} Hz")
    if shedding.drop > 0:
        parts.append(f"{shedding.drop:.0%} of frames dropped")
    return ", ".join(parts)


def _scored(track: TrackState | None) -> Scored | None:
    return None if track is None else track.scored


def _box(values: np.ndarray) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2
