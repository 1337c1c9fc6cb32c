"""Live events into a database: each incident of a fake face becomes one event record, written when
it starts, updated while it lasts, closed when the incident closes (its face judged real for
``incidents.quiet_s``, or gone that long), or the stream goes away; a dip of the label inside an
incident is not a new event, and a face the tracker lost and found again within the quiet time
stays the same event. Verdicts without an incident (made by hand) make one event per fake label.
The peak's face and frame are kept as JPEG snapshots.

A voice episode is an event too (``modality`` voice, track 0): from the voice's label turning fake
until it turns real or uncertain, its sound stops (``no_audio``) or the stream goes away; a pause
in the speech (``no_speech`` windows) does not end it. The peak window's sound is kept as evidence
(16 kHz mono 16-bit WAV, at most 4.04 s: about 130 kB).

The sink knows no database: it hands ``EventRecord``s to an ``EventWriter`` (the service's writes
them with SQLAlchemy), in a thread. While the writer fails (a database restarting) the records wait,
newest state per event, up to ``capacity`` records and ``max_mb`` bytes, and are retried with
backoff: none is lost within that, and what does not fit is counted. With ``spool.durable`` they
also wait on disk (``sinks/spool.py``) from the first failed write until the database takes them,
so a dfstream killed meanwhile writes them at its next start (an event that was still ongoing then
ends where the spool last saw it, ``end_reason`` restart). A write that fails while the database
answers is a record it refuses (a value it will not take): each is tried alone, and one refused
``max_tries`` times is set aside, counted and logged once with the reason, so it never holds the
others back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
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

from .spool import Spool, SpoolConfig, SpoolError

log = logging.getLogger(__name__)
STORE = Subject.sink("store")
SPOOL_PATH = Path("dfstream-data/spool/store.sqlite3")  # spool.durable with no path: beside serve's default data


class StoreConfig(StrictModel):
    capacity: int = Field(10000, ge=1)  # event records waiting for the database before the oldest closed ones go
    max_mb: float = Field(256.0, gt=0)  # and their bytes (snapshots, most of it)
    max_tries: int = Field(3, ge=1)  # a record the database refuses this often, while it takes others, is set aside
    spool: SpoolConfig = Field(default_factory=SpoolConfig)  # durable: what waits is on disk too
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

    @property
    def size(self) -> int:
        """Bytes it holds, about: its snapshots and sound, and a kilobyte for the rest."""
        return 1024 + sum(len(b) for b in (self.face_jpeg, self.frame_jpeg, self.audio_wav) if b is not None)

    def to_bytes(self, seen_at: float) -> bytes:
        """As the spool keeps it: a JSON line (``seen_at``: when the sink last saw it), then the bytes."""
        blobs = [b or b"" for b in (self.face_jpeg, self.frame_jpeg, self.audio_wav)]
        fields = {k: v for k, v in self.__dict__.items() if k not in ("face_jpeg", "frame_jpeg", "audio_wav")}
        header = {**fields, "seen_at": seen_at, "blobs": [len(b) if b else None for b in blobs]}
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[EventRecord, float]:
        line, _, rest = data.partition(b"\n")
        header = json.loads(line)
        seen_at, lengths = header.pop("seen_at"), header.pop("blobs")
        blobs, at = [], 0
        for length in lengths:
            blobs.append(None if length is None else rest[at : at + length])
            at += length or 0
        header["bbox_at_peak"] = tuple(header["bbox_at_peak"])
        return cls(**header, face_jpeg=blobs[0], frame_jpeg=blobs[1], audio_wav=blobs[2]), seen_at


class EventWriter(Protocol):
    def write(self, records: list[EventRecord]) -> None:
        """Insert or update every record, in one transaction (called in a worker thread)."""

    def reachable(self) -> bool:
        """Whether the database answers at all (a failed write then means it refused a record)."""


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
    incident: int | None = None  # the pipeline's incident it records (None: verdicts without one)

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
        spool = config.spool
        self._spool = Spool(spool.path or SPOOL_PATH, spool.sync, "store") if spool.durable else None
        self._spooled: dict[str, int] = {}  # event id -> the spool's record of its newest pending state
        self._numbers = itertools.count(1)
        self._away = False  # the last write failed: what waits goes to the spool as it comes
        self._tries: dict[str, int] = {}  # event id -> writes the database refused
        self._set_aside: set[str] = set()  # events it refused max_tries times: their later states too

    async def _open(self) -> None:
        if self._spool is not None:
            self._resume(self._spool)
        self.monitor.set_gauge(STORE, Gauge.PENDING_WRITES, len(self._pending))
        self._flushing = self.spawn("flusher", self._flusher)

    def _resume(self, spool: Spool) -> None:
        """What a run that died left waiting for the database is written first; an event it still
        had open ends where that run last saw it."""
        recovered = spool.open()
        self.monitor.count(STORE, Count.SPOOL_LOST, recovered.lost)
        self._numbers = itertools.count(recovered.last_n + 1)
        replaced = []
        for n, data in recovered.records:
            try:
                record, seen_at = EventRecord.from_bytes(data)
            except (ValueError, KeyError, TypeError) as exc:  # CRC-intact but not ours: a file from elsewhere
                log.error("store: spool %s: record %d unreadable (%s), dropped", spool.path, n, one_line(exc))
                replaced.append(n)
                continue
            if record.ended_at is None:
                record.ended_at, record.end_reason = max(seen_at, record.started_at), "restart"
            if record.id in self._spooled:
                replaced.append(self._spooled[record.id])
            self._pending[record.id], self._spooled[record.id] = record, n
        spool.remove(replaced)
        self._away = bool(self._pending)
        self.monitor.set_gauge(STORE, Gauge.SPOOL_BYTES, spool.bytes)
        if self._pending:
            left = len(self._pending)
            log.info("store: %d event record(s) a previous run left unwritten go first (%s)", left, spool.path)

    async def publish(self, event: Event) -> None:
        if isinstance(event, Verdict):
            self._on_verdict(event)
        elif isinstance(event, VoiceVerdict):
            self._on_voice(event)
        elif isinstance(event, StreamState):
            open_incidents = {i["id"] for i in event.incidents}
            for key in list(self._episodes):
                if key[0] != event.stream:
                    continue
                episode = self._episodes[key]
                gone = key[2] not in event.tracks if key[1] == "face" else event.voice in (None, "no_audio")
                why = "track_gone" if key[1] == "face" else "sound_gone"
                if episode.incident is not None:  # it ends with its incident: quiet, or gone for the quiet time
                    if episode.incident not in open_incidents:
                        self._end_episode(key, event.updated_at, why if gone else "label")
                elif gone:
                    self._end_episode(key, event.updated_at, why)
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
        kept = [i for i in self._pending if i in self._spooled]
        lost = len(self._pending) - len(kept)
        if kept:
            log.error(
                "store: %d event records not written at shutdown (the database is unreachable): "
                "kept in %s for the next start",
                len(kept),
                self._spool.path if self._spool is not None else "",
            )
        if lost:
            self.monitor.count(STORE, Count.EVENTS_DROPPED, lost, reason="shutdown")
            log.error("store: %d event records not written at shutdown: the database is unreachable", lost)
        if self._spool is not None:
            self._spool.close()

    # ---- episodes ---------------------------------------------------------------------------------
    def _on_verdict(self, verdict: Verdict) -> None:
        key = (verdict.stream, "face", verdict.track_id)
        if verdict.incident is not None and key not in self._episodes:
            self._follow(key, verdict.incident)  # the face found again: its incident's event goes on
        if verdict.label == "fake":
            peak = _Peak(verdict.fake_probability, verdict.ts, verdict.models, verdict.bbox)
            self._episode(key, verdict.label_since, verdict.incident).add(peak, image=verdict.image)
        elif key in self._episodes and verdict.incident is None:  # a dip inside an incident ends nothing
            self._end_episode(key, verdict.label_since, "label")

    def _on_voice(self, verdict: VoiceVerdict) -> None:
        key = (verdict.stream, "voice", VOICE_TRACK)
        if verdict.label == "fake" and verdict.spoof_probability is not None:
            peak = _Peak(verdict.spoof_probability, verdict.ts, verdict.models, ())
            self._episode(key, verdict.label_since, verdict.incident).add(peak, audio=verdict.audio)
        elif verdict.label != "no_speech" and key in self._episodes and verdict.incident is None:
            self._end_episode(key, verdict.label_since, "label")  # a pause in the speech ends nothing

    def _follow(self, key: EpisodeKey, incident: int) -> None:
        """The open event of ``incident`` under another track, moved to this one."""
        for other, episode in list(self._episodes.items()):
            if other[:2] == key[:2] and episode.incident == incident:
                self._episodes[key] = self._episodes.pop(other)
                return

    def _episode(self, key: EpisodeKey, since: float, incident: int | None = None) -> _Episode:
        episode = self._episodes.get(key)
        if episode is None:
            episode = self._episodes[key] = _Episode(uuid.uuid4().hex, key[0], key[1], key[2], since)
            episode.incident = incident
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
            if episode.id in self._set_aside:
                continue
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
            if self._away:
                self._to_spool(record)
        self._closed.clear()
        self._bound()
        self.monitor.set_gauge(STORE, Gauge.PENDING_WRITES, len(self._pending))

    def _bound(self) -> None:
        """Beyond ``capacity`` records or ``max_mb`` bytes, the oldest closed events go first (an
        open one will be rewritten whole anyway), counted."""
        limit = int(self.config.max_mb * 2**20)
        size = sum(r.size for r in self._pending.values())
        if len(self._pending) <= self.config.capacity and size <= limit:
            return
        dropped = 0
        for record in sorted(self._pending.values(), key=lambda r: (r.ended_at is None, r.started_at)):
            if len(self._pending) <= self.config.capacity and size <= limit:
                break
            self._forget(record.id)
            size -= record.size
            dropped += 1
        self.monitor.count(STORE, Count.EVENTS_DROPPED, dropped, reason="store_full")
        log.error(
            "store: %d event records dropped: more than %d (or %g MB) waiting for the database",
            dropped,
            self.config.capacity,
            self.config.max_mb,
        )

    def _to_spool(self, record: EventRecord) -> None:
        """The record's newest state on disk, its older one gone."""
        if self._spool is None:
            return
        n = next(self._numbers)
        try:
            self._spool.append(n, record.to_bytes(time.time()))
            self.problems.clear("spool", "store: writing to the spool %s again", self._spool.path)
        except SpoolError as exc:
            self.monitor.count(STORE, Count.SPOOL_ERRORS)
            self.problems("spool", "%s; the event waits in memory only", exc, level=logging.ERROR)
            return
        earlier = self._spooled.get(record.id)
        self._spooled[record.id] = n
        if earlier is not None:
            self._spool.remove([earlier])
        self.monitor.set_gauge(STORE, Gauge.SPOOL_BYTES, self._spool.bytes)

    def _forget(self, event_id: str) -> None:
        """Written, dropped or set aside: no longer waiting, in memory or on disk."""
        self._pending.pop(event_id, None)
        self._tries.pop(event_id, None)
        n = self._spooled.pop(event_id, None)
        if n is not None and self._spool is not None:
            self._spool.remove([n])
            self.monitor.set_gauge(STORE, Gauge.SPOOL_BYTES, self._spool.bytes)

    async def _write(self) -> bool:
        batch = list(self._pending.values())
        try:
            await asyncio.to_thread(self.writer.write, batch)
        except Exception as exc:  # noqa: BLE001 -- away, or a record refused: which, the database says
            self.monitor.count(STORE, Count.WRITE_ERRORS)
            if await asyncio.to_thread(self._reachable) and await self._one_by_one(batch):
                return True
            self.problems(
                "write",
                "store: writing %d events failed (retrying): %s",
                len(batch),
                one_line(exc),
                level=logging.ERROR,
            )
            if not self._away:  # from now on what waits is on disk as well
                self._away = True
                for record in self._pending.values():
                    self._to_spool(record)
            return False
        failures = self.problems.clear("write")
        if failures:
            log.warning("store: database back after %d failed writes; %d events written", failures, len(batch))
        self._written(batch)
        return True

    def _reachable(self) -> bool:
        try:
            return bool(self.writer.reachable())
        except Exception:  # noqa: BLE001 -- a check that fails is an answer too
            return False

    def _written(self, batch: list[EventRecord]) -> None:
        self._backoff.reset()
        self._away = False
        for record in batch:
            if self._pending.get(record.id) is record:
                self._forget(record.id)
        self.monitor.count(STORE, Count.ROWS_WRITTEN, len(batch))
        self.monitor.set_gauge(STORE, Gauge.PENDING_WRITES, len(self._pending))

    async def _one_by_one(self, batch: list[EventRecord]) -> bool:
        """The database answers but refused the batch: each record alone, so one it will not take
        holds back none of the others; refused ``max_tries`` times (the first while others were
        taken), it is set aside. None taken, none refused before: it is not the records, it is the
        database (a table away, its disk full), and they all wait."""
        written, refused = [], []
        for record in batch:
            try:
                await asyncio.to_thread(self.writer.write, [record])
                written.append(record)
            except Exception as exc:  # noqa: BLE001 -- this record, refused
                refused.append((record, exc))
        # refused while others were taken; or alone now, but refused so before
        suspects = refused if written else [(r, e) for r, e in refused if self._tries.get(r.id)]
        if not written and not suspects:
            return False
        for record, exc in suspects:
            tries = self._tries[record.id] = self._tries.get(record.id, 0) + 1
            if tries >= self.config.max_tries and self._pending.get(record.id) is record:
                self._forget(record.id)
                self._set_aside.add(record.id)
                self.monitor.count(STORE, Count.EVENTS_DROPPED, reason="refused")
                self.problems(
                    "refused",
                    "store: event %s (stream %s) set aside after %d refused writes: %s",
                    record.id,
                    record.stream,
                    tries,
                    one_line(exc),
                    level=logging.ERROR,
                )
        self._written(written)
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
