"""The one wait between retries: capped exponential with "equal jitter" (half the delay fixed, half
random), so a retry never comes at once and many clients that failed together do not retry in
lockstep. Sources, MQTT, the store and video outputs all wait this way."""

from __future__ import annotations

import random

from core.errors import ConfigError


class Backoff:
    """``next()``: 0.5-1.0 x initial_s, then 1-2 x, 2-4 x ... up to max_s; ``reset()`` after a success."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None):
        if not 0 < initial_s <= max_s:
            raise ConfigError(f"backoff needs 0 < initial_s ({initial_s}) <= max_s ({max_s})")
        self.initial_s, self.max_s = initial_s, max_s
        self.attempts = 0  # failures since the last reset
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The wait before the next try (and count this failure)."""
        delay = min(self.max_s, self.initial_s * 2 ** min(self.attempts, 64))
        self.attempts += 1
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def reset(self) -> None:
        self.attempts = 0
