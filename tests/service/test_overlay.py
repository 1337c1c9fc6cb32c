"""The overlay page in a real browser (Debian's Chromium driven by Selenium) against a real
`dfstream serve` with a live RTSP camera: transparent where there is nothing to say, the face's box
in the label's colour where the face is, the badge in its corner; it reconnects by itself when
the server restarts. Screenshots go to the test's temporary folder and their pixels are checked."""

from __future__ import annotations

import time

import pytest

from tests.service.conftest import colour_mask, screenshot, scripted, wait_for

RED = (220, 38, 38)  # the default palette's fake


@pytest.fixture(scope="module")
def browser(chromium):
    driver = chromium(640, 360)  # the page's viewport is the video's size, as an OBS browser source is set
    driver.execute_cdp_cmd("Emulation.setDefaultBackgroundColorOverride", {"color": {"r": 0, "g": 0, "b": 0, "a": 0}})
    return driver


@pytest.mark.weights
def test_the_overlay_draws_box_and_badge_over_a_transparent_page_and_reconnects(browser, serve, rtsp_server, tmp_path):
    long_clip = __import__("stream").make_sample_clip(tmp_path / "face_40s.mp4", seconds=40.0)
    camera = rtsp_server({"/cam1": long_clip})
    served = serve(
        [{"id": "cam1", "url": camera.url("/cam1")}],
        detectors=[scripted(tmp_path, [])],
        smoothing={"method": "ema", "alpha": 0.5, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.2},
    )
    scripted(tmp_path, [(time.time(), time.time() + 600)])  # fake from now on
    token = served.token("viewer")

    browser.get(f"{served.base}/overlay/cam1#token={token}")
    wait_for(browser, "return document.getElementById('badge').dataset.label === 'fake'", 40, "the badge to say fake")
    text = browser.execute_script("return document.getElementById('text').textContent")
    assert text.startswith("likely deepfake 0.9"), text
    with served.client("viewer") as viewer:
        box = viewer.get("/api/v1/streams/cam1").json()["tracks"][0]["bbox"]
    image = screenshot(browser, tmp_path / "overlay.png")
    assert image.shape[:2] == (360, 640)
    red = colour_mask(image, RED)
    # the badge: top-right corner by default
    assert red[:70, 440:].sum() > 1500, "no red badge in the top-right corner"
    # the box: red pixels around where the face is (window and frame are both 640x360)
    x1, y1, x2, y2 = (round(v) for v in box)
    around = red[max(0, y1 - 40) : y2 + 40, max(0, x1 - 40) : x2 + 40]
    assert around.sum() > (x2 - x1) + (y2 - y1), "no red box around the face"
    # and nothing else: the page is transparent
    transparent = image[:, :, 3] == 0
    assert transparent.mean() > 0.85, f"only {transparent.mean():.0%} of the page is transparent"

    browser.get(f"{served.base}/overlay/cam1?badge_only=1&corner=bottom-left#token={token}")
    wait_for(browser, "return document.getElementById('badge').dataset.label === 'fake'", 20, "the badge again")
    image = screenshot(browser, tmp_path / "overlay_badge_only.png")
    red = colour_mask(image, RED)
    assert red[290:, :200].sum() > 1500 and red[:200, :].sum() == 0, "the badge is not alone in the bottom-left corner"

    served.stop()  # the server restarts; the page finds it again by itself
    wait_for(browser, "return document.body.dataset.feed === 'reconnecting'", 20, "the page to notice")
    browser.execute_script("document.getElementById('badge').dataset.label = 'gone'")
    served.start()
    wait_for(
        browser,
        "return document.body.dataset.feed === 'open' && document.getElementById('badge').dataset.label === 'fake'",
        60,
        "the page to reconnect and show the badge again",
    )
    with served.client() as anonymous:
        page = anonymous.get("/overlay/cam1")
        assert page.status_code == 200 and "connect-src 'self'" in page.headers["content-security-policy"]
        assert anonymous.get("/overlay/cam9").status_code == 404
