"""Incidents (``pipeline/judging/incidents.py``): one fake face or voice, one incident, however its
label wavers, until it has been quiet for ``quiet_s``."""

from __future__ import annotations

import itertools

import pytest

from pipeline.judging.incidents import IncidentConfig, Incidents


def incidents(quiet_s: float = 10.0) -> Incidents:
    counter = itertools.count(1)
    return Incidents(IncidentConfig(quiet_s=quiet_s), lambda: next(counter))


def test_a_dip_of_the_label_inside_an_incident_is_not_a_new_one():
    book = incidents(quiet_s=5.0)
    assert book.observe("face", 1, "real", 0.0, 100.0) is None
    first = book.observe("face", 1, "fake", 1.0, 101.0)
    assert first is not None and first.id == 1 and first.opened_ts == 101.0
    # real for 3 s, uncertain, fake again: the same incident
    for t, label in ((2.0, "real"), (4.0, "real"), (5.0, "uncertain"), (6.0, "fake"), (7.0, "real")):
        assert book.observe("face", 1, label, t, 100.0 + t) is first
    assert book.opened == 1
    # real from 7 s on: closed at 12 s, and the next verdict has no incident
    assert book.observe("face", 1, "real", 11.9, 111.9) is first
    assert book.observe("face", 1, "real", 12.0, 112.0) is None
    assert not book.open
    # a new alarm after it closed is a new incident
    assert book.observe("face", 1, "fake", 13.0, 113.0).id == 2


def test_uncertain_holds_an_incident_open_without_starting_its_quiet_time():
    book = incidents(quiet_s=2.0)
    book.observe("face", 1, "fake", 0.0, 0.0)
    for t in (1.0, 3.0, 5.0):
        assert book.observe("face", 1, "uncertain", t, t) is not None


def test_a_track_lost_and_found_again_within_the_quiet_time_is_the_same_incident():
    book = incidents(quiet_s=3.0)
    first = book.observe("face", 1, "fake", 0.0, 0.0)
    book.gone("face", 1, 1.0)
    assert first.track_id is None and book.expire(2.0) == []
    again = book.observe("face", 7, "fake", 2.5, 2.5)  # the tracker's new id for the same face
    assert again is first and first.track_id == 7 and first.tracks == [1, 7]
    book.gone("face", 7, 3.0)
    assert book.expire(5.9) == [] and book.expire(6.0) == [first]
    assert book.observe("face", 9, "fake", 7.0, 7.0).id == 2  # too late: a new incident


def test_two_fake_faces_at_once_are_two_incidents_and_the_voice_is_its_own():
    book = incidents()
    a = book.observe("face", 1, "fake", 0.0, 0.0)
    b = book.observe("face", 2, "fake", 0.0, 0.0)
    voice = book.observe("voice", None, "fake", 0.5, 0.5)
    assert len({a.id, b.id, voice.id}) == 3 and voice.subject == "voice"
    # no_speech (a pause) holds the voice's; no_audio (gone) starts its quiet time
    assert book.observe("voice", None, "no_speech", 2.0, 2.0) is voice
    book.gone("voice", None, 3.0)
    assert voice.quiet_since == 3.0
    assert book.observe("voice", None, "fake", 4.0, 4.0) is voice  # the sound back and still fake
    assert [i.id for i in book.close_all()] == [a.id, b.id, voice.id] and not book.open


@pytest.mark.parametrize("quiet_s", [0.0, 1.0])
def test_quiet_time_zero_closes_at_the_first_real_judgement(quiet_s):
    book = incidents(quiet_s=quiet_s)
    book.observe("face", 1, "fake", 0.0, 0.0)
    closed = book.observe("face", 1, "real", 0.5, 0.5) is None
    assert closed == (quiet_s == 0.0)
