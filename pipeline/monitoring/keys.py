"""The monitor's vocabulary: whom a number is about (a ``Subject``: kind and name) and which number
it is (a ``Count`` or a ``Gauge``, with labels as data). Nothing is ever parsed back out of a
string: a stream called ``faces`` and the face stage are two subjects."""

from __future__ import annotations

import enum
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]


class Kind(str, enum.Enum):
    MODEL = "model"  # a deepfake detector
    STREAM = "stream"  # one configured stream
    STAGE = "stage"  # a step of the runtime (faces, decode_to_faces, end_to_end, ...) or the runtime itself
    SINK = "sink"  # where verdicts go (jsonl, mqtt, ...)
    SERVICE = "service"  # a part of the HTTP service (api, analysis, retention, feed)


@dataclass(frozen=True, slots=True)
class Subject:
    kind: Kind
    name: str

    @classmethod
    def model(cls, name: str) -> Subject:
        return cls(Kind.MODEL, name)

    @classmethod
    def stream(cls, name: str) -> Subject:
        return cls(Kind.STREAM, name)

    @classmethod
    def stage(cls, name: str) -> Subject:
        return cls(Kind.STAGE, name)

    @classmethod
    def sink(cls, name: str) -> Subject:
        return cls(Kind.SINK, name)

    @classmethod
    def service(cls, name: str) -> Subject:
        return cls(Kind.SERVICE, name)


class Count(str, enum.Enum):
    """Totals since start."""

    FRAMES_DECODED = "frames_decoded"
    FRAMES_PROCESSED = "frames_processed"
    FRAMES_DROPPED = "frames_dropped"  # label reason: queue_full, fps_cap, ...
    FACES_DETECTED = "faces_detected"
    FACE_ERRORS = "face_errors"  # frames whose face detection failed
    SOURCE_ERRORS = "source_errors"  # failed opens and reads
    DECODE_ERRORS = "decode_errors"
    RECONNECTS = "reconnects"
    STALLS = "stalls"
    VERDICTS = "verdicts"  # label label: real, fake, uncertain
    VERDICTS_SKIPPED = "verdicts_skipped"
    VERDICTS_CARRIED = "verdicts_carried"  # verdicts that carried their track's last score (judge.max_rate_hz)
    CROP_ERRORS = "crop_errors"  # a model's crops that got no score
    EVENTS_DROPPED = "events_dropped"  # a sink's; label reason: outbox_full, shutdown
    MESSAGES_DROPPED = "messages_dropped"  # a sink's own message queue (MQTT's outbox) overflowed
    PUBLISHED = "published"
    CONNECTION_ERRORS = "connection_errors"
    ROWS_WRITTEN = "rows_written"  # the store sink's event rows written (an update counts again)
    WRITE_ERRORS = "write_errors"  # the store sink's failed writes (each retried)
    REJECTED = "rejected"  # the API's refused requests; label reason: unauthorized, forbidden, rate_limited, ...
    PRUNED = "pruned"  # retention; labels what (events, media), reason (age, disk)
    JOBS = "jobs"  # media analyses; label outcome: done, failed, resumed
    FRAMES_WRITTEN = "frames_written"  # the video sink's, per stream
    OUTPUT_ERRORS = "output_errors"  # the video sink's failed opens and writes, per stream
    AUDIO_CHUNKS = "audio_chunks"  # 0.1 s chunks of sound decoded, per stream
    AUDIO_DROPPED = "audio_dropped"  # chunks dropped because the voice path fell behind a live stream
    AUDIO_DECODE_ERRORS = "audio_decode_errors"
    VOICE_WINDOWS = "voice_windows"  # label result: judged, no_speech, skipped
    CALLS = "calls"  # WebRTC sessions; label event: started, ended, refused:<why>
    SPOOL_ERRORS = "spool_errors"  # a sink's durable spool failed a write (the record stays in memory only)
    FEED_RESUMES = "feed_resumes"  # feed clients back with Last-Event-ID; label outcome: replayed, reset:<why>
    SPOOL_LOST = "spool_lost"  # records a sink's spool had accepted and could not read back at start
    INCIDENTS = "incidents"  # alarms that opened an incident (one per fake face or voice); label modality
    FACES_UNJUDGED = "faces_unjudged"  # faces too poor to judge, not scored; label reason


class Gauge(str, enum.Enum):
    """Current values."""

    UP = "up"
    QUEUE_DEPTH = "queue_depth"
    ACTIVE_TRACKS = "active_tracks"
    INCIDENTS_OPEN = "incidents_open"  # a stream's open incidents (fake faces and voice)
    EXPECTED_FPS = "expected_fps"
    MODELS_READY = "models_ready"
    CONNECTED = "connected"
    OUTBOX_DEPTH = "outbox_depth"
    OUTBOX_CAPACITY = "outbox_capacity"
    PENDING_WRITES = "pending_writes"  # the store sink's event rows waiting for the database
    JOBS_WAITING = "jobs_waiting"  # media analyses queued
    FEED_CLIENTS = "feed_clients"  # live feed subscribers
    VIEWERS = "viewers"  # live view clients; label stream
    CALL_SESSIONS = "call_sessions"  # WebRTC sessions sending now
    OUTPUT_UP = "output_up"  # 1 while the video sink's output for a stream is open
    TRACKS_SKIMMED = "tracks_skimmed"  # a stream's live tracks judged at judge.min_rate_hz (calm)
    SPEECH_SHARE = "speech_share"  # the share of the stream's last voice window that was speech
    SPOOL_BYTES = "spool_bytes"  # a sink's durable spool: record bytes held on disk
    # overload (pipeline.runtime.overload), per live stream
    DEGRADED = "degraded"  # 1 while the stream sheds work because the machine cannot keep up
    JUDGE_RATE = "judge_rate_hz"  # the rate a track at the full rate is judged at now
    FACES_RATE = "faces_rate_hz"  # how often faces are looked for now
    FRAMES_SHED = "frames_shed"  # the share of frames dropped to keep up (0 until both rates are at their floors)


def labels(**values: str) -> Labels:
    return tuple(sorted(values.items()))


def key_text(name: Count | Gauge, labelled: Labels) -> str:
    """A series key for reports meant for people (``frames_dropped{reason=queue_full}``)."""
    return name.value + ("{" + ",".join(f"{k}={v}" for k, v in labelled) + "}" if labelled else "")


# The runtime's stages, timed separately
RUNTIME = Subject.stage("runtime")
FACES = Subject.stage("faces")
DECODE_TO_FACES = Subject.stage("decode_to_faces")
FACES_TO_SCORES = Subject.stage("faces_to_scores")
SCORES_TO_VERDICT = Subject.stage("scores_to_verdict")
END_TO_END = Subject.stage("end_to_end")
LIVE_VIEW = Subject.stage("live_view")  # frame decoded → annotated JPEG handed to a viewer
WINDOW_TO_VOICE = Subject.stage("window_to_voice")  # a voice window's last sample decoded → its voice verdict
STAGE_SPANS = (DECODE_TO_FACES, FACES_TO_SCORES, SCORES_TO_VERDICT, WINDOW_TO_VOICE)
