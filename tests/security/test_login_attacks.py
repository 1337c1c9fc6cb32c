"""Password guessing against a real `dfstream serve` on loopback, behind a (played) reverse proxy
that names each client in X-Forwarded-For: a burst of concurrent guesses gets no more tries than the
limit; a stranger guessing a username slows its owner's login, never locks it; a client that is not
a trusted proxy cannot choose the address it is counted under; a flood of logins neither takes the
memory (argon2 needs 64 MiB each) nor the threads the other routes answer from."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from tests.security.conftest import PASSWORD, Served, login, running

pytestmark = pytest.mark.weights
STREAM = {"id": "cam1", "url": "sample://astronaut", "fps": 2, "loop": True}
FAILURES, MAX_DELAY_S = 5, 2.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    api = {
        "trusted_proxies": ["127.0.0.1"],  # the test plays the proxy
        "login_limit": {"failures": FAILURES, "window_s": 60, "max_delay_s": MAX_DELAY_S, "concurrent": 2},
    }
    with running(tmp_path_factory.mktemp("login_attacks"), [STREAM], api) as server:
        yield server


def guess(served: Served, username: str, password: str, client: str | None = None) -> httpx.Response:
    """A login that the proxy says came from ``client``."""
    return login(served, username, password, {"X-Forwarded-For": client} if client else None)


def test_a_burst_of_concurrent_guesses_gets_no_more_tries_than_the_limit(served):
    """Check-then-act let every guess of a burst pass before the first failure was counted."""
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: guess(served, "viewer", "guess", "10.1.0.1").status_code, range(20)))
    assert codes.count(401) == FAILURES and codes.count(429) == 20 - FAILURES, codes


def test_a_stranger_guessing_a_username_slows_its_owner_but_cannot_lock_them_out(served):
    for address in ("10.2.0.1", "10.2.0.2", "10.2.0.3"):  # a guesser with a few addresses
        codes = [guess(served, "analyst", "guess", address).status_code for _ in range(FAILURES + 1)]
        assert codes == [401] * FAILURES + [429], codes  # each of its addresses is stopped
    started = time.monotonic()
    owner = guess(served, "analyst", PASSWORD, "10.3.0.1")
    took = time.monotonic() - started
    assert owner.status_code == 200, owner.text  # the owner, from their own address, gets in
    assert took < MAX_DELAY_S + 2.0, took  # slowed at most by the longest delay
    print(f"\nusername under attack: its owner logged in after {took:.2f} s (longest delay {MAX_DELAY_S} s)")
    assert guess(served, "analyst", PASSWORD, "10.3.0.1").elapsed.total_seconds() < 1.5  # afresh after a success


def test_x_forwarded_for_is_ignored_from_a_client_that_is_not_a_trusted_proxy(serve):
    served = serve([STREAM], {"login_limit": {"failures": 3, "window_s": 60}})  # no trusted proxy
    codes = [guess(served, "viewer", "guess", f"10.9.0.{i}").status_code for i in range(5)]
    assert codes == [401, 401, 401, 429, 429], codes  # one address, whatever the header claims


def test_a_flood_of_logins_keeps_memory_flat_and_other_routes_answering(served):
    process = psutil.Process(served.process.pid)
    before = process.memory_info().rss / 1e6
    peak = [before]
    latencies: list[float] = []
    done = threading.Event()

    def watch() -> None:
        with served.client("viewer") as viewer:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss / 1e6)
                started = time.monotonic()
                assert viewer.get("/api/v1/streams").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(40) as pool:  # 40 logins at once, each from its own address
        codes = list(pool.map(lambda i: guess(served, "admin", PASSWORD, f"10.4.{i}.1").status_code, range(40)))
    done.set()
    watcher.join(30)
    assert set(codes) <= {200, 503} and codes.count(200) >= 2, codes
    grown = peak[0] - before
    print(
        f"\n40 concurrent logins: RSS {before:.0f} MB, peak +{grown:.0f} MB; GET /streams meanwhile "
        f"worst {max(latencies) * 1000:.0f} ms; answers {sorted(set(codes))}"
    )
    assert grown < 2 * 64 + 100, grown  # two argon2 checks at a time, not forty (40 x 64 MiB)
    assert max(latencies) < 1.5, latencies
