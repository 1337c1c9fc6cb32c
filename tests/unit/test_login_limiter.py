"""The login limiter's arithmetic: attempts counted before the check, an address refused, a
username only slowed (doubling, capped), a success starting afresh, and a bounded memory."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from service.auth import LoginLimiter


def test_a_username_past_the_limit_is_slowed_doubling_up_to_the_cap_never_refused():
    limiter = LoginLimiter(failures=3, window_s=60, max_delay_s=2.0)
    delays = [limiter.enter(f"10.0.0.{i}", "Alice") for i in range(7)]  # a new address each time
    assert delays == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 2.0]
    limiter.succeeded("10.0.0.99", "alice")  # usernames are counted case-blind
    assert limiter.enter("10.0.0.99", "alice") == 0.0


def test_an_address_past_the_limit_is_refused_until_its_window_passes():
    limiter = LoginLimiter(failures=2, window_s=60)
    limiter.enter("10.0.0.1", "a")
    limiter.enter("10.0.0.1", "b")
    with pytest.raises(HTTPException) as refused:
        limiter.enter("10.0.0.1", "c")
    assert refused.value.status_code == 429 and int(refused.value.headers["Retry-After"]) >= 59
    assert limiter.enter("10.0.0.2", "c") == 0.0  # another address is not held up


def test_a_right_password_does_not_count_against_its_address():
    limiter = LoginLimiter(failures=2, window_s=60)
    for _ in range(5):
        limiter.enter("10.0.0.1", "alice")
        limiter.succeeded("10.0.0.1", "alice")


def test_the_least_recently_seen_keys_are_forgotten_first():
    limiter = LoginLimiter(failures=1, window_s=60, keys=4)
    limiter.enter("10.0.0.1", "a")  # addr:10.0.0.1, user:a
    limiter.enter("10.0.0.2", "b")  # the first two are now the oldest of four
    limiter.enter("10.0.0.3", "c")  # ... and forgotten
    assert limiter.enter("10.0.0.1", "z") == 0.0  # forgotten: allowed again
    with pytest.raises(HTTPException):
        limiter.enter("10.0.0.3", "y")  # remembered: refused
