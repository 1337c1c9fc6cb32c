"""Graceful overload: when the machine cannot keep up, every stream sheds the same work, in order.

Without it, a pipeline past its capacity collapses instead of degrading: once a track waits longer
than its judge interval for a score, every frame it is on is due, the detectors' queues fill and the
sources drop whatever frame they hold, unevenly. The governor watches how late frames are and sets
one *level* that every stream of the runtime follows:

- 0: the configured rates;
- 0 → 1: the judge rate of tracks at the full rate (``judge.max_rate_hz``) and the face-finding
  rate lowered together, geometrically, to their floors (``judge_floor_hz``, ``faces_floor_hz``);
  a moved box waits a growing share of the lowered interval before it is scored again. A new
  track is still scored at once;
- 1 → 2: on top, frames are dropped evenly in every stream, up to ``max_drop`` of them, by the
  source where they are decoded (``Feed.shed_frames``: no RGB conversion, no hand-over for a frame
  nobody will look at), counted as ``frames_dropped{reason="overload"}``; the source's own drops
  (its queue full) are what this prevents.

The signal: every stream tells the governor each frame's lateness (arrival at decode → its verdicts
published) and its source's drops for a full queue. Every ``interval_s`` the governor takes the
window's p90 lateness: above ``target_ms``, or any source drop, raises the level by a step (up to three
when the p90 is that many times the target); under ``PROMPT`` of it for ``CALM_WINDOWS`` windows
in a row lowers the level by a smaller one: it rises fast and falls slowly, probing down toward
the least shedding that keeps the target (a machine short of CPU drops frames in bursts, a second
or two apart, so one prompt window proves little); in between it holds.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass

from pydantic import Field

from core.strict import StrictModel

RAISE_STEP = 0.1  # per interval: from the full rates to the floors in 5 s at the default interval
LOWER_STEP = 0.05  # back in 10 s
CALM_WINDOWS = 4  # lowered only after this many prompt windows in a row: drops come in bursts
PROMPT = 0.8  # of the target: a p90 under it is prompt
TOP = 2.0


class OverloadConfig(StrictModel):
    enabled: bool = True
    target_ms: float = Field(150.0, gt=0.0)  # the p90 lateness above which the streams shed work
    judge_floor_hz: float = Field(2.0, gt=0.0)  # no track is judged less often than this while overloaded
    faces_floor_hz: float = Field(3.0, gt=0.0)  # nor are faces looked for less often than this
    max_drop: float = Field(0.75, ge=0.0, lt=1.0)  # the most frames each stream drops, past both floors
    interval_s: float = Field(0.5, gt=0.0)


@dataclass(frozen=True)
class Shedding:
    """What every stream does at one level."""

    level: float = 0.0
    max_drop: float = 0.75

    @property
    def share(self) -> float:
        """How far the rates are lowered toward their floors, 0-1."""
        return min(self.level, 1.0)

    @property
    def drop(self) -> float:
        """The share of frames each stream drops."""
        return max(0.0, self.level - 1.0) * self.max_drop

    def rate(self, full_hz: float, floor_hz: float) -> float:
        """A rate lowered toward its floor (never raised: a rate already under its floor stays)."""
        if full_hz <= floor_hz or self.share == 0.0:
            return full_hz
        return full_hz * (floor_hz / full_hz) ** self.share


class Governor:
    def __init__(self, config: OverloadConfig):
        self.config = config
        self.shedding = Shedding(0.0, config.max_drop)
        self._lags: list[float] = []
        self._drops = 0
        self._calm = 0  # prompt windows in a row
        self._lock = threading.Lock()  # sources count their drops from their decode threads

    @property
    def level(self) -> float:
        return self.shedding.level

    def lateness(self, seconds: float) -> None:
        """One frame's arrival → verdicts (from the event loop)."""
        self._lags.append(seconds)

    def dropped(self, n: int = 1) -> None:
        """Frames a source dropped because its queue was full (from any thread)."""
        with self._lock:
            self._drops += n

    def adjust(self) -> float:
        """One step of the controller over what was seen since the last; returns the new level."""
        lags, self._lags = self._lags, []
        with self._lock:
            drops, self._drops = self._drops, 0
        if not self.config.enabled:
            return self.level
        target = self.config.target_ms / 1000.0
        late = _p90(lags)
        level = self.level
        self._calm = self._calm + 1 if not drops and late < target * PROMPT else 0
        if drops or late > target:
            # far behind (at a start, a burst of streams): faster, up to three steps at once
            level = min(TOP, level + RAISE_STEP * min(3.0, max(1.0, late / target)))
        elif self._calm >= CALM_WINDOWS:
            level = max(0.0, level - LOWER_STEP)
        if not math.isclose(level, self.level):
            self.shedding = Shedding(level, self.config.max_drop)
        return self.level

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval_s)
            self.adjust()


def _p90(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
