"""What the pipeline tells sinks: verdicts, stream status and state, alerts.

Plain data with ``to_dict()`` (JSON-ready); sinks need nothing else from the process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Union

import numpy as np

StreamLabel = Literal["no_face", "real", "fake", "uncertain"]
VoiceLabel = Literal["real", "fake", "uncertain", "no_speech"]
# a stream's voice now: a voice verdict's label, or no_audio while no sound reaches the voice models
VoiceState = Literal["no_audio", "no_speech", "real", "fake", "uncertain"]


@dataclass(frozen=True)
class Verdict:
    """One face track's judgement at one frame."""

    stream: str
    track_id: int
    seq: int  # per stream, +1 per verdict: a gap means a lost verdict
    ts: float  # wall clock, seconds since the epoch
    frame_seq: int
    frame_pts: float | None
    label: Literal["real", "fake", "uncertain"]
    label_since: float
    fake_probability: float  # smoothed
    raw_probability: float  # this frame's fused P(fake)
    uncertainty: float  # smoothed
    models: dict[str, float]  # each model's P(fake) on this frame
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    faces_in_frame: int
    latency_ms: float  # arrival at decode → verdict
    failed_models: tuple[str, ...] = ()
    frame_size: tuple[int, int] | None = None  # width, height of the frame bbox is in (to draw it over a video)
    # false when the track was not scored on this frame (judge.max_rate_hz) and the verdict carries its
    # last score; scored_at is the wall clock of the frame that score came from
    scored: bool = True
    scored_at: float | None = None
    # how often this track is scored now: judge.max_rate_hz, or min_rate_hz while it is calm (None: every frame)
    judge_rate_hz: float | None = None
    # smoothing cusum: the track's evidence as a share of the alarm threshold (1: alarmed); None otherwise
    evidence: float | None = None
    # the incident the track belongs to (pipeline.judging.incidents): from its first alarm until it
    # has been judged real for incidents.quiet_s, through the dips of its label; None: no incident
    incident: int | None = None
    # why this face was not judged (too_small, too_blurry, too_dark, too_bright, turned_away: pipeline.judging.quality);
    # its label is then uncertain and its numbers the track's last; None: judged (or carried)
    unjudged: str | None = None
    # the decoded RGB frame, attached only while the label is fake (for the store sink's snapshots);
    # a reference, never copied, never serialised
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    kind = "verdict"

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}
        data["models"] = dict(self.models)
        data["bbox"] = [round(v, 1) for v in self.bbox]
        data["failed_models"] = list(self.failed_models)
        data["frame_size"] = list(self.frame_size) if self.frame_size is not None else None
        return data


@dataclass(frozen=True)
class VoiceVerdict:
    """One stream's voice at the end of one window (``voice.hop_s`` apart, each up to 4.04 s long).

    ``no_speech``: the window held too little speech to be judged (``spoof_probability`` None).
    The window's times are on the stream clock, the same seconds as a face verdict's ``frame_pts``."""

    stream: str
    seq: int  # per stream, +1 per voice verdict (its own sequence beside the face verdicts')
    ts: float
    label: VoiceLabel
    label_since: float  # wall clock
    spoof_probability: float | None  # smoothed P(spoof)
    raw_probability: float | None  # this window's fused P(spoof)
    uncertainty: float | None
    models: dict[str, float]  # each voice model's P(spoof) for this window
    speech: float  # share of the window the speech gate called speech, 0-1
    window_start_pts: float | None
    window_end_pts: float | None
    window_s: float
    window_end_ts: float  # wall clock when the window's last sample was decoded
    latency_ms: float  # that moment → this verdict
    failed_models: tuple[str, ...] = ()
    incident: int | None = None  # the voice's incident, as a face verdict's
    # the window's 16 kHz samples, attached only while the label is fake (the store sink's evidence)
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)

    kind = "voice"

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "audio"}
        data["models"] = dict(self.models)
        data["failed_models"] = list(self.failed_models)
        return data


@dataclass(frozen=True)
class StreamStatus:
    """A source's connection state changed (online, reconnecting, offline)."""

    stream: str
    status: str
    reason: str | None
    ts: float

    kind = "status"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StreamState:
    """What a stream shows now, and the one answer to "is anything here fake right now": ``alarm``,
    true while an incident (a fake face or voice, ``pipeline.judging.incidents``) is open. ``label``
    is fake while a face incident is open (through the dips of its track's label), else uncertain
    when any track is, else real."""

    stream: str
    label: StreamLabel
    tracks: dict[int, str]  # track id → label
    fake_probability: float | None  # the highest smoothed P(fake) among the tracks; None without a face
    updated_at: float
    voice: VoiceState | None = None  # None: the stream's voice is not judged (no voice model, or audio: off)
    spoof_probability: float | None = None  # the voice's smoothed P(spoof) while it is judged
    # the open incidents: {id, subject (face or voice), track_id (a face's track now; None once lost), since}
    incidents: tuple[dict[str, Any], ...] = ()

    kind = "state"

    @property
    def alarm(self) -> bool:
        return bool(self.incidents) or bool(self.looks_fake)

    @property
    def looks_fake(self) -> list[str]:
        """What is alarmed now: "face", "voice", both or neither (an open incident, or a fake label)."""
        subjects = {i["subject"] for i in self.incidents}
        return [
            part for part, label in (("face", self.label), ("voice", self.voice)) if part in subjects or label == "fake"
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "label": self.label,
            "tracks": {str(k): v for k, v in self.tracks.items()},
            "fake_probability": self.fake_probability,
            "voice": self.voice,
            "spoof_probability": self.spoof_probability,
            "looks_fake": self.looks_fake,
            "alarm": self.alarm,
            "incidents": [dict(i) for i in self.incidents],
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Alert:
    type: str
    value: float
    threshold: float
    subject: str
    state: Literal["firing", "resolved"]
    ts: float
    message: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    kind = "alert"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Event = Union[Verdict, VoiceVerdict, StreamStatus, StreamState, Alert]


def stream_label(track_labels: dict[int, str]) -> StreamLabel:
    labels = set(track_labels.values())
    if not labels:
        return "no_face"
    if "fake" in labels:
        return "fake"
    return "uncertain" if "uncertain" in labels else "real"
