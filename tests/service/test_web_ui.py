"""The web UI in a real browser (Debian's Chromium, Selenium) against a real `dfstream serve`, used
as a person would: log in, watch the streams' live images change, follow a stream's label and
P(fake) chart, open an event and its snapshot and acknowledge it, upload a clip and watch it
finish. Screenshots go to the test's folder (or $DFSTREAM_SCREENSHOTS) and their pixels are checked."""

from __future__ import annotations

import time

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from tests.helpers import CuttableLink, wait_until
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


def wait_for_s(driver, script: str, timeout: float, what: str) -> float:
    """``wait_for``, and how long it took."""
    start = time.monotonic()
    wait_for(driver, script, timeout, what)
    return time.monotonic() - start


def test_a_stream_page_that_lost_its_feed_for_20_s_shows_the_episode_it_missed(chromium, serve, tmp_path):
    """The browser reaches serve through a link the test cuts for 20 s while a fake episode comes and
    goes; when the link is back, EventSource reconnects with its Last-Event-ID and the chart draws
    the episode in red, on the same page (not reloaded)."""
    served = serve(
        [{"id": "cam1", "url": "sample://astronaut", "pace": "realtime", "loop": True}],
        detectors=[scripted(tmp_path, [])],
        smoothing={"method": "ema", "alpha": 0.5, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.2},
    )
    link = CuttableLink(served.port)
    try:
        base = f"http://127.0.0.1:{link.port}"
        browser = chromium(1280, 800)
        log_in(browser, base)
        wait_for(browser, "return document.getElementById('who').textContent !== ''", 20, "the login")
        browser.get(base + "/#/stream/cam1")
        wait_for(browser, "return document.body.dataset.feed === 'live'", 30, "the feed")
        wait_for(browser, "return document.getElementById('stream-label').dataset.label === 'real'", 30, "real")
        browser.execute_script("window.sameDocument = true")
        chart = browser.find_element(By.ID, "chart")
        assert colour_mask(screenshot(browser, tmp_path / "feed_before.png", chart)[:, :-84], RED).sum() == 0

        link.cut()
        cut = time.time()
        wait_for(browser, "return document.body.dataset.feed === 'reconnecting'", 10, "the page to notice the cut")
        scripted(tmp_path, [(cut + 2, cut + 14)])  # fake from 2 s to 14 s into the cut
        with served.client("viewer") as viewer:  # the episode happens at the server while the page is away
            wait_until(lambda: viewer.get("/api/v1/events?stream=cam1").json()["items"], 25, "the episode's event")
        assert browser.execute_script("return document.getElementById('stream-label').dataset.label") != "fake"
        time.sleep(max(0.0, cut + 20 - time.time()))
        away = screenshot(browser, tmp_path / "feed_away.png")
        assert colour_mask(away, (245, 158, 11)).sum() > 0  # the caption says it is reconnecting
        assert browser.execute_script("return document.getElementById('live').naturalWidth") == 0  # and it is

        link.restore()
        back_s = wait_for_s(browser, "return document.body.dataset.feed === 'live'", 15, "the feed to come back")
        assert browser.execute_script("return window.sameDocument === true"), "the page was reloaded"
        wait_for(browser, "return document.getElementById('live').naturalWidth > 0", 15, "the live image again")
        time.sleep(1)  # the chart redraws every 0.5 s
        after = screenshot(browser, tmp_path / "feed_after.png", chart)
        lines = after[:, :-84]  # not the track names in the margin
        red = colour_mask(lines, RED).sum()
        print(f"feed back {back_s:.1f} s after the link; episode drawn in {red} red pixels")
        assert red > 30, "the missed episode is not in the chart"  # 12 s of a 2-minute line: about 70; none: 0
        assert browser.execute_script("return document.getElementById('stream-label').dataset.label") != "fake"
    finally:
        link.close()
