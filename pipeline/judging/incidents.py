"""Incidents: one fake person (or voice), one incident, however its label wavers.

A label is the judgement of the moment; what a person is paged by must not flap with it. An incident
opens at a subject's first alarm (a face track's label turning ``fake``, or the stream's voice) and
stays open through dips of the label: it closes only once the subject has been judged ``real`` (or
has been gone: its track lost, its sound stopped) for ``quiet_s`` without a new alarm. A track the
tracker lost leaves its incident open for ``quiet_s``: a new track that alarms meanwhile (the same
face found again) joins it instead of opening another. ``uncertain`` and ``no_speech`` hold an
incident as they are: neither clears a fake.

Synchronous and per stream; times are the stream's clock (the one the smoother runs on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from core.strict import StrictModel

Subject = Literal["face", "voice"]


class IncidentConfig(StrictModel):
    # how long a subject must be judged real (or be gone) before its incident closes: a minute of one
    # fake with dips in its label is one incident, one "on", one event
    quiet_s: float = Field(10.0, ge=0.0)


@dataclass
class Incident:
    id: int
    subject: Subject
    track_id: int | None  # the face track it follows now (a lost track's incident may pass to the next)
    opened_t: float  # stream clock
    opened_ts: float  # wall clock
    quiet_since: float | None = None  # stream clock: judged real (or gone) since, None while fake
    tracks: list[int] = field(default_factory=list)  # every track it followed

    def to_dict(self) -> dict:
        return {"id": self.id, "subject": self.subject, "track_id": self.track_id, "since": self.opened_ts}


class Incidents:
    """The open incidents of one stream. ``observe`` each judged subject; ``expire`` on every frame."""

    def __init__(self, config: IncidentConfig, next_id: Callable[[], int]):
        self.config = config
        self.next_id = next_id
        self.open: dict[int, Incident] = {}
        self._of: dict[tuple[Subject, int | None], int] = {}  # (subject, track) → incident id
        self.opened = 0  # incidents opened so far (a counter for metrics)

    def observe(self, subject: Subject, track_id: int | None, label: str, t: float, ts: float) -> Incident | None:
        """The incident this judgement belongs to (None: none open for it)."""
        key = (subject, track_id)
        incident = self.open.get(self._of.get(key, -1))
        if label == "fake":
            if incident is None:
                incident = self._lost(subject, t) or self._new(subject, track_id, t, ts)
                incident.track_id = track_id
                if track_id is not None:
                    incident.tracks.append(track_id)
                self._of[key] = incident.id
            incident.quiet_since = None
            return incident
        if incident is None:
            return None
        if label == "real" and incident.quiet_since is None:
            incident.quiet_since = t
        self.expire(t)
        return self.open.get(incident.id)

    def gone(self, subject: Subject, track_id: int | None, t: float) -> None:
        """A subject ended (its track lost, its sound stopped): its incident goes quiet from now."""
        incident = self.open.get(self._of.pop((subject, track_id), -1))
        if incident is not None:
            incident.track_id = None
            incident.quiet_since = t if incident.quiet_since is None else incident.quiet_since

    def expire(self, t: float) -> list[Incident]:
        """Close what has been quiet for ``quiet_s``; returns the closed incidents."""
        closed = [
            i for i in self.open.values() if i.quiet_since is not None and t - i.quiet_since >= self.config.quiet_s
        ]
        for incident in closed:
            del self.open[incident.id]
        if closed:
            ids = {i.id for i in closed}
            self._of = {k: v for k, v in self._of.items() if v not in ids}
        return closed

    def close_all(self) -> list[Incident]:
        """The stream ended: nothing stays open."""
        closed = list(self.open.values())
        self.open.clear()
        self._of.clear()
        return closed

    def of(self, subject: Subject, track_id: int | None) -> Incident | None:
        return self.open.get(self._of.get((subject, track_id), -1))

    def _lost(self, subject: Subject, t: float) -> Incident | None:
        """An open incident of this subject whose track is gone: the same face, found again."""
        lost = [i for i in self.open.values() if i.subject == subject and i.track_id is None]
        return max(lost, key=lambda i: i.quiet_since or t, default=None)

    def _new(self, subject: Subject, track_id: int | None, t: float, ts: float) -> Incident:
        incident = Incident(self.next_id(), subject, track_id, t, ts)
        self.open[incident.id] = incident
        self.opened += 1
        return incident
