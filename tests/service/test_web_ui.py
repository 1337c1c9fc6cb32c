"""The web UI in a real browser (Debian's Chromium, Selenium) against a real `dfstream serve`, used
as a person would: log in, watch the streams' live images change, follow a stream's label and
P(fake) chart, open an event and its snapshot and acknowledge it, upload a clip and watch it
finish. Screenshots go to the test's folder (or $DFSTREAM_SCREENSHOTS) and their pixels are checked."""

from __future__ import annotations

import time

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from tests.service.conftest import colour_mask, log_in, screenshot, scripted, wait_for

pytestmark = pytest.mark.weights
RED = (220, 38, 38)


def test_a_person_logs_in_watches_opens_an_event_and_analyses_a_clip(chromium, serve, tmp_path, short_clip):
    served = serve(
        [{"id": "cam1", "url": "sample://astronaut", "pace": "realtime", "loop": True}],
        api={"analysis": {"frames": 8}},
        detectors=[scripted(tmp_path, [])],
        smoothing={"method": "ema", "alpha": 0.5, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.2},
    )
    browser = chromium(1280, 800)
    log_in(browser, served.base)
    wait_for(browser, "return document.getElementById('who').textContent === 'analyst (analyst)'", 20, "the login")

    # the grid: cam1's live image arrives and changes
    wait_for(
        browser,
        "const i = document.querySelector('[data-stream=cam1] img'); return i && i.naturalWidth > 0",
        30,
        "the live image",
    )
    card = browser.find_element(By.CSS_SELECTOR, "[data-stream=cam1] img")
    first = screenshot(browser, tmp_path / "ui_streams_a.png", card)
    time.sleep(1.5)
    second = screenshot(browser, tmp_path / "ui_streams.png", card)
    assert np.abs(first[:, :, :3].astype(int) - second[:, :, :3]).mean() > 1, "the live image did not change"
    wait_for(
        browser,
        "return document.querySelector('[data-stream=cam1] .label.face').textContent !== ''",
        10,
        "the stream's label",
    )
    grid = screenshot(browser, tmp_path / "ui_grid.png")
    assert (
        colour_mask(grid, (22, 163, 74)).sum() + colour_mask(grid, (245, 158, 11)).sum() > 200
    )  # the label badge and the box

    # a fake episode: the stream page's label turns fake and the chart draws it in red
    start = time.time()
    scripted(tmp_path, [(start, start + 6)])
    browser.get(served.base + "/#/stream/cam1")
    wait_for(
        browser, "return document.getElementById('stream-label').dataset.label === 'fake'", 30, "the label to turn fake"
    )
    time.sleep(4)  # a few seconds of line in a two-minute chart
    page = screenshot(browser, tmp_path / "ui_stream.png")
    chart = screenshot(browser, tmp_path / "ui_stream_chart.png", browser.find_element(By.ID, "chart"))
    assert colour_mask(chart, RED).sum() > 40, "no red line in the P(fake) chart"
    assert colour_mask(page, RED).sum() > colour_mask(chart, RED).sum()  # the label badge too

    # the event: listed with its face, opened with its frame, acknowledged
    browser.get(served.base + "/#/events")
    wait_for(
        browser,
        "const i = document.querySelector('#events img.thumb'); return i && i.complete && i.naturalWidth > 0",
        40,
        "the event and its face",
    )
    screenshot(browser, tmp_path / "ui_events.png")
    browser.find_element(By.CSS_SELECTOR, "#events img.thumb").click()
    wait_for(
        browser,
        "const i = document.getElementById('event-frame'); return i && i.complete && i.naturalWidth === 640",
        20,
        "the frame",
    )
    screenshot(browser, tmp_path / "ui_event.png")
    browser.get(served.base + "/#/events")
    wait_for(browser, "return document.querySelector('#events button[data-ack]')", 20, "the acknowledge button")
    button = browser.find_element(By.CSS_SELECTOR, "#events button[data-ack]")
    event_id = button.get_attribute("data-ack")
    button.click()
    wait_for(
        browser,
        f"const r = document.querySelector('#events tr[data-event=\"{event_id}\"] td:last-child'); return r && "
        "r.textContent.trim() === 'analyst'",
        20,
        "the event acknowledged by analyst",
    )

    # a clip: uploaded, analysed, its verdict and chart shown
    browser.get(served.base + "/#/media")
    browser.find_element(By.ID, "file").send_keys(str(short_clip))
    browser.find_element(By.CSS_SELECTOR, "#upload button").click()
    media = wait_for(
        browser,
        "const r = document.querySelector('#media tr[data-status=done]'); return r && r.dataset.media",
        60,
        "the analysis",
    )
    browser.get(f"{served.base}/#/media/{media}")
    wait_for(browser, "return document.getElementById('media-verdict')", 20, "the verdict")
    verdict = browser.find_element(By.ID, "media-verdict").text
    with served.client("viewer") as viewer:
        results = viewer.get(f"/api/v1/media/{media}/results").json()
    assert verdict == f"{results['verdict']} {results['fake_probability']:.2f}"
    media_chart = screenshot(browser, tmp_path / "ui_media.png", browser.find_element(By.ID, "media-chart"))
    assert (np.abs(media_chart[:, :, :3].astype(int) - media_chart[5, 5, :3]).sum(axis=2) > 60).sum() > 500, (
        "the chart is empty"
    )
    screenshot(browser, tmp_path / "ui_media_page.png")
