"""The voice in a real browser (Chromium, Selenium) against a real `dfstream serve` judging a clip
with espeak-ng speech: the overlay's voice badge sits beside the face badge, never over it, the
stream page shows the voice's label and its P(spoof) line, and the voice episode is an event whose
peak window plays in the event page. Pixels and the WAV are checked."""

from __future__ import annotations

import io
import time
import wave

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from tests.service.conftest import colour_mask, log_in, screenshot, scripted, wait_for

pytestmark = pytest.mark.weights
RED, GREEN = (220, 38, 38), (22, 163, 74)  # the default palette's fake and real


@pytest.fixture
def served(serve, sound_clips, aasist_dir, tmp_path):
    return serve(
        [{"id": "call", "url": str(sound_clips["speech"]), "pace": "realtime", "loop": True}],
        detectors=[scripted(tmp_path, [])],  # the face is real throughout: red on the page is the voice
        audio_detectors=[{"name": "aasist_l", "type": "aasist_l", "weights": str(aasist_dir / "AASIST-L.pth")}],
    )


def rect(browser, element_id: str) -> dict:
    return browser.execute_script(f"return document.getElementById('{element_id}').getBoundingClientRect().toJSON()")


def test_the_overlay_and_the_stream_page_show_the_voice(chromium, served, tmp_path):
    overlay = chromium(640, 360)
    overlay.execute_cdp_cmd("Emulation.setDefaultBackgroundColorOverride", {"color": {"r": 0, "g": 0, "b": 0, "a": 0}})
    for corner in ("top-right", "bottom-left"):
        overlay.get(f"{served.base}/overlay/call?corner={corner}#token={served.token('viewer')}")
        wait_for(overlay, "return document.getElementById('voice').dataset.label === 'fake'", 60, "the voice badge")
        wait_for(overlay, "return document.getElementById('badge').dataset.label === 'real'", 30, "the face badge")
        text = overlay.execute_script("return document.getElementById('voice-text').textContent")
        assert text.startswith("voice: likely synthetic ") and float(text.rsplit(" ", 1)[1]) > 0.9, text
        face, voice = rect(overlay, "badge"), rect(overlay, "voice")
        apart = voice["top"] >= face["bottom"] if corner.startswith("top") else voice["bottom"] <= face["top"]
        assert apart, (corner, face, voice)  # one column: the voice badge beside the face badge, not over it
        image = screenshot(overlay, tmp_path / f"overlay_voice_{corner}.png")
        red, green = colour_mask(image, RED), colour_mask(image, GREEN)
        v = {k: round(x) for k, x in voice.items()}
        f = {k: round(x) for k, x in face.items()}
        assert red[v["top"] : v["bottom"], v["left"] : v["right"]].mean() > 0.5, "the voice badge is not red"
        assert green[f["top"] : f["bottom"], f["left"] : f["right"]].mean() > 0.5, "the face badge is not green"

    page = chromium(1280, 800)
    log_in(page, served.base)
    wait_for(page, "return document.querySelector('[data-stream=call] .label.voice:not([hidden])')", 30, "the card")
    assert page.execute_script("return document.querySelector('[data-stream=call] .label.voice').dataset.label") in (
        "fake",
        "uncertain",
        "no_speech",
    )
    page.get(served.base + "/#/stream/call")
    wait_for(page, "return document.getElementById('voice-label').dataset.label === 'fake'", 30, "the voice label")
    wait_for(page, "return document.getElementById('stream-label').dataset.label === 'real'", 30, "the face label")
    chart = page.find_element(By.ID, "chart")
    deadline = time.monotonic() + 10  # the chart is drawn every 0.5 s, a voice window comes every 2 s
    while colour_mask(screenshot(page, tmp_path / "stream_voice.png", chart), RED).sum() < 100:
        assert time.monotonic() < deadline, "no P(spoof) line on the chart"
        time.sleep(0.25)
    with served.client("viewer") as viewer:
        stream = viewer.get("/api/v1/streams/call").json()
    assert stream["voice"] == "fake" and stream["looks_fake"] == ["voice"] and stream["label"] == "real"
    assert stream["last_voice"]["spoof_probability"] > 0.9 and stream["last_voice"]["speech"] >= 0.3

    # the episode is an event with the sound of its peak window; the real face made none
    with served.client("viewer") as viewer:
        events = viewer.get("/api/v1/events").json()["items"]
        assert events and {e["modality"] for e in events} == {"voice"}, events
        event = events[-1]
        assert event["track_id"] == 0 and event["face_url"] is None and event["peak_probability"] > 0.9
        assert viewer.get("/api/v1/events?modality=face").json()["items"] == []
        answer = viewer.get(event["audio_url"])
        assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
        assert viewer.get(f"/api/v1/events/{event['id']}/face.jpg").status_code == 404
    with wave.open(io.BytesIO(answer.content)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        assert 2.0 <= w.getnframes() / 16_000 <= 4.04
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(samples).max() > 3000  # speech, not silence
    page.get(f"{served.base}/#/event/{event['id']}")
    duration = wait_for(
        page,
        "const a = document.getElementById('event-audio'); return a && a.readyState >= 1 && a.duration",
        20,
        "audio",
    )
    assert 2.0 <= duration <= 4.05


def test_an_upload_gets_a_voice_result_with_the_numbers_eval_gives(served, sound_clips, aasist_dir, tmp_path):
    import csv

    from tests.service.conftest import dfstream

    ids = {}
    with served.client("analyst") as analyst:
        for name in ("speech", "mute"):
            with sound_clips[name].open("rb") as fh:
                answer = analyst.post("/api/v1/media", files={"file": (f"{name}.mp4", fh, "video/mp4")})
            assert answer.status_code == 201, answer.text
            ids[name] = answer.json()["id"]
    speech, mute = (served.wait_media(ids[n]) for n in ("speech", "mute"))
    assert speech["status"] == "done" and mute["status"] == "done"
    assert mute["voice"]["verdict"] == "no_audio" and mute["voice"]["windows"] == []
    voice = speech["voice"]
    assert voice["verdict"] == "fake" and voice["spoof_probability"] > 0.9 and set(voice["models"]) == {"aasist_l"}
    # a window every 2 s of sound, to the chunk the 2 s fall in (0.12 s of AAC at 44.1 kHz), and one at the end
    ends = [w["end"] for w in voice["windows"]]
    assert len(ends) == 5 and all(abs(end - 2 * (i + 1)) < 0.4 for i, end in enumerate(ends)), ends

    # dfstream eval on the same file: the same windows, the same P(spoof), from the same code
    for label in ("real", "fake"):
        (tmp_path / "set" / label).mkdir(parents=True)
    (tmp_path / "set" / "fake" / "speech.mp4").write_bytes(sound_clips["speech"].read_bytes())
    evaluated = dfstream(
        "eval",
        str(tmp_path / "set"),
        "--out",
        str(tmp_path / "out"),
        "--audio-detectors",
        f"aasist_l={aasist_dir / 'AASIST-L.pth'}",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    with (tmp_path / "out" / "voice_windows.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["end"]) for r in rows] == [w["end"] for w in voice["windows"]]
    for row, window in zip(rows, voice["windows"]):
        assert float(row["fused"]) == pytest.approx(window["spoof_probability"], abs=1e-6)
