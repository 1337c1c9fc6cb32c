"""Seats for long-lived responses (feed subscribers, live-view viewers): at most ``total`` at once
and ``per_user`` of them one user's, so neither a stranger with one token nor many clients can hold
the server's connections, memory and render time. A seat refused is 429 (yours are taken) or 503
(all are); a seat is given back once, however the response ends."""

from __future__ import annotations

from collections import Counter

from fastapi import HTTPException


class Seat:
    def __init__(self, seats: Seats, user_id: int):
        self._seats, self._user_id, self._held = seats, user_id, True

    def release(self) -> bool:
        """Give the seat back; True the first time (what else the response held goes with it)."""
        if not self._held:
            return False
        self._held = False
        self._seats._give_back(self._user_id)
        return True


class Seats:
    def __init__(self, what: str, total: int, per_user: int):
        self.what, self.total, self.per_user = what, total, per_user
        self._by_user: Counter[int] = Counter()

    @property
    def taken(self) -> int:
        return sum(self._by_user.values())

    def take(self, user_id: int) -> Seat:
        if self._by_user[user_id] >= self.per_user:
            raise HTTPException(
                429,
                f"you hold {self.per_user} {self.what} already (the most one user may); close one",
                {"Retry-After": "5"},
            )
        if self.taken >= self.total:
            raise HTTPException(
                503, f"the server holds its most {self.what} ({self.total}); try again later", {"Retry-After": "5"}
            )
        self._by_user[user_id] += 1
        return Seat(self, user_id)

    def _give_back(self, user_id: int) -> None:
        self._by_user[user_id] -= 1
        if self._by_user[user_id] <= 0:
            del self._by_user[user_id]
