"""The feed's history: what a client that comes back with Last-Event-ID is given, and when it is
told to reload instead (a reset), decided by the numbering alone."""

from __future__ import annotations

from service.feed.history import MAX_ID_CHARS, FeedHistory, Reset


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _filled(n: int, minutes: float = 2, events: int = 100, step_s: float = 0.1) -> tuple[FeedHistory, Clock]:
    clock = Clock()
    history = FeedHistory(minutes, events, clock)
    for i in range(n):
        history.add("verdict", "cam1", f"event: verdict\ndata: {i}\n\n".encode())
        clock.now += step_s
    return history, clock


def test_a_client_gets_every_event_after_the_one_it_names_and_nothing_when_it_is_current():
    history, _ = _filled(10)
    got = history.after(history.id_of(4))
    assert [e.seq for e in got] == [5, 6, 7, 8, 9, 10] and got[0].body == b"event: verdict\ndata: 4\n\n"
    assert history.after(history.last_id) == [] and history.last_id == history.id_of(10)


def test_beyond_the_count_kept_it_is_a_reset_and_the_oldest_kept_still_resumes():
    history, _ = _filled(150, events=100)  # 51..150 kept
    assert len(history) == 100
    assert [e.seq for e in history.after(history.id_of(50))] == list(range(51, 151))
    too_old = history.after(history.id_of(49))
    assert (
        isinstance(too_old, Reset)
        and too_old.reason == "too_old"
        and "2 minutes, at most 100 events" in too_old.message
    )


def test_beyond_the_age_kept_it_is_a_reset_even_with_room_left():
    history, clock = _filled(10, minutes=1, events=1000, step_s=1)
    clock.now += 55  # events 1..5 are now more than a minute old
    assert isinstance(history.after(history.id_of(3)), Reset)
    assert [e.seq for e in history.after(history.id_of(5))] == [6, 7, 8, 9, 10]
    assert [e.seq for e in history.recent(60)] == [6, 7, 8, 9, 10]
    assert [e.seq for e in history.recent(58)] == [8, 9, 10]


def test_an_id_from_another_process_or_not_from_this_feed_is_a_reset_never_an_error():
    history, _ = _filled(5)
    other = FeedHistory(2, 100)
    assert history.epoch != other.epoch
    assert history.after(other.id_of(3)).reason == "restarted"
    for bad in (
        "",
        "garbage",
        "-3",
        f"{history.epoch}-",
        f"{history.epoch}-x1",
        "1" * (MAX_ID_CHARS + 1),
        "\x00-1",
        # digits to str.isdigit() that int() refuses (issue 38: a 500 that kept the feed seat)
        f"{history.epoch}-²",
        f"{history.epoch}-١٢",
    ):
        reset = history.after(bad)
        assert isinstance(reset, Reset) and reset.reason in ("unknown", "restarted"), bad
    ahead = history.after(history.id_of(6))
    assert ahead.reason == "unknown" and "ahead" in ahead.message


def test_with_no_history_every_event_is_still_numbered_and_only_a_current_client_resumes():
    history, _ = _filled(5, minutes=0)
    assert len(history) == 0 and history.last_id.endswith("-5")
    assert history.after(history.last_id) == []
    assert history.after(history.id_of(4)).reason == "too_old"
    assert history.recent(120) == []
