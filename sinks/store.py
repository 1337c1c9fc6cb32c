"""Live events into a database: each episode of a track labelled fake becomes one event record,
written when it starts, updated while it lasts, closed when the label leaves fake, the track ends
or the stream goes away. The peak's face and frame are kept as JPEG snapshots.

A voice episode is an event too (``modality`` voice, track 0): from the voice's label turning fake
until it turns real or uncertain, its sound stops (``no_audio``) or the stream goes away; a pause
in the speech (``no_speech`` windows) does not end it. The peak window's sound is kept as evidence
(16 kHz mono 16-bit WAV, at most 4.04 s: about 130 kB).

The sink knows no database: it hands ``EventRecord``s to an ``EventWriter`` (the service's writes
them with SQLAlchemy), in a thread. While the writer fails (a database restarting) the records wait
in memory, newest state per event, up to ``capacity``, and are retried with backoff: none is lost
within that capacity, and what does not fit is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from pydantic import Field

from core.backoff import Backoff
from core.errors import one_line
from core.lifecycle import Lifecycle
from core.strict import StrictModel
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.events import Event, StreamState, StreamStatus, Verdict, VoiceVerdict

log = logging.getLogger(__name__)
STORE = Subject.sink("store")


class StoreConfig(StrictModel):
    capacity: int = Field(10000, ge=1)  # event records waiting for the database before the oldest closed ones go
    flush_interval_s: float = Field(0.5, gt=0)  # how often changed events are written
    retry_max_s: float = Field(10.0, gt=0)  # the longest wait between retries while the database is away
    jpeg_quality: int = Field(85, ge=10, le=100)
    face_margin: float = Field(0.3, ge=0)  # the face snapshot's box grown by this share per side


@dataclass
class EventRecord:
    """An event as the database stores it. Snapshots are set only when they changed since the last
    write, so an update does not resend them."""

    id: str
    stream: str
    track_id: int
    started_at: float  # epoch seconds
    ended_at: float | None
    peak_probability: float
    peak_at: float
    mean_probability: float
    verdicts: int
    models_at_peak: dict[str, float]
    models_mean: dict[str, float]
    bbox_at_peak: tuple[float, float, float, float]
    label: str = "fake"
    modality: str = "face"  # face, or voice (track_id 0, no box: the evidence is audio_wav)
    face_jpeg: bytes | None = None
    frame_jpeg: bytes | None = None
    audio_wav: bytes | None = None
    # why it ended: label (it left fake), track_gone, sound_gone, stream_down, shutdown; restart is the
    # service's (an event a run that died left open, closed at the next start)
    end_reason: str | None = None


class EventWriter(Protocol):
    def write(self, records: list[EventRecord]) -> None:
        """Insert or update every record, in one transaction (called in a worker thread)."""


VOICE_TRACK = 0  # a voice event's track id (face tracks count from 1)
EpisodeKey = tuple[str, str, int]  # stream, modality, track


@dataclass
class _Peak:
    """What an episode keeps of its highest verdict."""

    probability: float
    at: float
    models: dict[str, float]
    bbox: tuple[float, float, float, float] | tuple[()]


@dataclass
class _Episode:
    id: str
    stream: str
    modality: str
    track_id: int
    started_at: float
    peak: _Peak | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    verdicts: int = 0
    probability_sum: float = 0.0
    model_sums: dict[str, float] = field(default_factory=dict)
    model_counts: dict[str, int] = field(default_factory=dict)
    peak_image: np.ndarray | None = None  # the frame of the peak, until it is encoded
    peak_audio: np.ndarray | None = None  # the sound of the peak window, until it is encoded
    snaps: tuple[bytes, bytes] | None = None  # face and frame JPEGs, until they join a record
    wav: bytes | None = None  # the peak window as WAV, until it joins a record
    changed: bool = True

    def add(self, peak: _Peak, image: np.ndarray | None = None, audio: np.ndarray | None = None) -> None:
        self.verdicts += 1
        self.probability_sum += peak.probability
        for name, p in peak.models.items():
            self.model_sums[name] = self.model_sums.get(name, 0.0) + p
            self.model_counts[name] = self.model_counts.get(name, 0) + 1
        if self.peak is None or peak.probability > self.peak.probability:
            self.peak = peak
            if image is not None:
                self.peak_image = image
            if audio is not None:
                self.peak_audio = audio
        self.changed = True

    def record(self) -> EventRecord:
        p = self.peak
        assert p is not None  # an episode begins with its first verdict
        return EventRecord(
            id=self.id,
            stream=self.stream,
            track_id=self.track_id,
            started_at=self.started_at,
            ended_at=self.ended_at,
            end_reason=self.end_reason,
            peak_probability=p.probability,
            peak_at=p.at,
            mean_probability=round(self.probability_sum / self.verdicts, 6),
            verdicts=self.verdicts,
            models_at_peak=dict(p.models),
            models_mean={k: round(v / self.model_counts[k], 6) for k, v in self.model_sums.items()},
            bbox_at_peak=p.bbox,  # type: ignore[arg-type]
            modality=self.modality,
        )


class StoreSink(Lifecycle):
    def __init__(self, config: StoreConfig, writer: EventWriter, monitor: PerformanceMonitor):
        super().__init__("store")
        self.config = config
        self.writer = writer
        self.monitor = monitor
        self._episodes: dict[EpisodeKey, _Episode] = {}  # open ones, by (stream, modality, track)
        self._closed: list[_Episode] = []  # closed since the last flush
        self._pending: dict[str, EventRecord] = {}  # id → newest state not yet written
        self._wake = asyncio.Event()
        self._flushing: asyncio.Task | None = None
        self._backoff = Backoff(config.flush_interval_s, max(config.flush_interval_s, config.retry_max_s))
        self._closing = False

    async def _open(self) -> None:
        self.monitor.set_gauge(STORE, Gauge.PENDING_WRITES, 0)
        self._flushing = self.spawn("flusher", self._flusher)

    async def publish(self, event: Event) -> None:
        if isinstance(event, Verdict):
            self._on_verdict(event)
        elif isinstance(event, VoiceVerdict):
            self._on_voice(event)
        elif isinstance(event, StreamState):
            for key in list(self._episodes):
                if key[0] != event.stream:
                    continue
                if key[1] == "face" and key[2] not in event.tracks:
                    self._end_episode(key, event.updated_at, "track_gone")
                elif key[1] == "voice" and event.voice in (None, "no_audio"):
                    self._end_episode(key, event.updated_at, "sound_gone")
        elif isinstance(event, StreamStatus) and event.status != "online":
            for key in [k for k in self._episodes if k[0] == event.stream]:
                self._end_episode(key, event.ts, "stream_down")

    async def _close(self) -> None:
        for key in list(self._episodes):
            self._end_episode(key, time.time(), "shutdown")
        # told, not cancelled: Python 3.11's wait_for swallows a cancel that lands as the wake-up does
        self._closing = True
        self._wake.set()
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self._encode_snapshots()
        self._collect()
        for _ in range(3):  # a database restarting as we stop gets a few seconds
            if not self._pending or await self._write():
                break
            await asyncio.sleep(1.0)
        if self._pending:
            left = len(self._pending)
            self.monitor.count(STORE, Count.EVENTS_DROPPED, left, reason="shutdown")
            log.error("store: %d event records not written at shutdown: the database is unreachable", left)

    # ---- episodes ---------------------------------------------------------------------------------
    def _on_verdict(self, verdict: Verdict) -> None:
        key = (verdict.stream, "face", verdict.track_id)
        if verdict.label == "fake":
            peak = _Peak(verdict.fake_probability, verdict.ts, verdict.models, verdict.bbox)
            self._episode(key, verdict.label_since).add(peak, image=verdict.image)
        elif key in self._episodes:
            self._end_episode(key, verdict.label_since, "label")

    def _on_voice(self, verdict: VoiceVerdict) -> None:
        key = (verdict.stream, "voice", VOICE_TRACK)
        if verdict.label == "fake" and verdict.spoof_probability is not None:
            peak = _Peak(verdict.spoof_probability, verdict.ts, verdict.models, ())
            self._episode(key, verdict.label_since).add(peak, audio=verdict.audio)
        elif verdict.label != "no_speech" and key in self._episodes:  # a pause in the speech ends nothing
            self._end_episode(key, verdict.label_since, "label")

    def _episode(self, key: EpisodeKey, since: float) -> _Episode:
        episode = self._episodes.get(key)
        if episode is None:
            episode = self._episodes[key] = _Episode(uuid.uuid4().hex, key[0], key[1], key[2], since)
            self._wake.set()  # a new event is written at once, not at the next tick
        return episode

    def _end_episode(self, key: EpisodeKey, at: float, reason: str) -> None:
        episode = self._episodes.pop(key)
        episode.ended_at = max(at, episode.started_at)
        episode.end_reason = reason
        episode.changed = True
        self._closed.append(episode)
        self._wake.set()

    # ---- writing ----------------------------------------------------------------------------------
    async def _flusher(self) -> None:
        delay = self.config.flush_interval_s
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            if self._closing:
                return
            self._wake.clear()
            await self._encode_snapshots()
            self._collect()
            if not self._pending:
                delay = self.config.flush_interval_s
                continue
            delay = self.config.flush_interval_s if await self._write() else self._backoff.next()

    async def _encode_snapshots(self) -> None:
        """JPEGs of every peak that changed, encoded in a thread; taken from the episodes here, on
        the loop, so a peak that moves meanwhile is not paired with another verdict's box."""
        episodes = [*self._episodes.values(), *self._closed]
        todo = [(e, e.peak_image, e.peak.bbox) for e in episodes if e.peak_image is not None and e.peak is not None]
        sounds = [(e, e.peak_audio) for e in episodes if e.peak_audio is not None]
        if not todo and not sounds:
            return
        for episode, _, _ in todo:
            episode.peak_image = None
        for episode, _ in sounds:
            episode.peak_audio = None
        margin, quality = self.config.face_margin, self.config.jpeg_quality

        def encode() -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
            return [snapshots(image, box, margin, quality) for _, image, box in todo], [wav(a) for _, a in sounds]

        pictures, recordings = await asyncio.to_thread(encode)
        for (episode, _, _), snaps in zip(todo, pictures):
            episode.snaps = snaps
            episode.changed = True
        for (episode, _), recording in zip(sounds, recordings):
            episode.wav = recording
            episode.changed = True

    def _collect(self) -> None:
        """Changed episodes → pending records (newest state wins, snapshots kept until written)."""
        for episode in [*self._episodes.values(), *self._closed]:
            if not episode.changed:
                continue
            episode.changed = False
            record = episode.record()
            if episode.snaps is not None:
                record.face_jpeg, record.frame_jpeg = episode.snaps
                episode.snaps = None
            if episode.wav is not None:
                record.audio_wav, episode.wav = episode.wav, None
            earlier = self._pending.get(record.id)
            if earlier is not None and record.face_jpeg is None:
                record = replace(record, face_jpeg=earlier.face_jpeg, frame_jpeg=earlier.frame_jpeg)
            if earlier is not None and record.audio_wav is None:
                record = replace(record, audio_wav=earlier.audio_wav)
            self._pending[record.id] = record
        self._closed.clear()
        overflow = len(self._pending) - self.config.capacity
        if overflow > 0:
            # the oldest closed events go first: an open one will be rewritten whole anyway
            victims = sorted(self._pending.values(), key=lambda r: (r.ended_at is None, r.started_at))[:overflow]
            for record in victims:
                del self._pending[record.id]
            self.monitor.count(STORE, Count.EVENTS_DROPPED, overflow, reason="store_full")
            log.error(
                "store: %d event records dropped: more than %d waiting for the database", overflow, self.config.capacity
            )
        self.monitor.set_gauge(STORE, Gauge.PENDING_WRITES, len(self._pending))

    async def _write(self) -> bool:
        batch = list(self._pending.values())
        try:
            await asyncio.to_thread(self.writer.write, batch)
        except Exception as exc:  # noqa: BLE001 -- the database is away: keep the records, try again later
            self.monitor.count(STORE, Count.WRITE_ERRORS)
            self.problems(
                "write",
                "store: writing %d events failed (retrying): %s",
                len(batch),
                one_line(exc),
                level=logging.ERROR,
            )
            return False
        failures = self.problems.clear("write")
        if failures:
            log.warning("store: database back after %d failed writes; %d events written", failures, len(batch))
        self._backoff.reset()
        for record in batch:
            if self._pending.get(record.id) is record:
                del self._pending[record.id]
        self.monitor.count(STORE, Count.ROWS_WRITTEN, len(batch))
        self.monitor.set_gauge(STORE, Gauge.PENDING_WRITES, len(self._pending))
        return True


def snapshots(
    image: np.ndarray, bbox: tuple[float, float, float, float], margin: float, quality: int
) -> tuple[bytes, bytes]:
    """JPEGs of the face (its box grown by ``margin`` per side) and of the whole frame."""
    import cv2

    height, width = image.shape[:2]
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    face = bgr[top:bottom, left:right] if right > left and bottom > top else bgr
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    return cv2.imencode(".jpg", face, params)[1].tobytes(), cv2.imencode(".jpg", bgr, params)[1].tobytes()


def wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    """16 kHz mono float samples as a 16-bit PCM WAV file, which every browser plays."""
    import io
    import wave

    pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()
