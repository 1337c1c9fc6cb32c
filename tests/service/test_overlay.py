"""The overlay page in a real browser (Debian's Chromium driven by Selenium) against a real
`dfstream serve` with a live RTSP camera: transparent where there is nothing to say, the face's box
in the label's colour where the face is, the badge in its corner; it reconnects by itself when
the server restarts. Screenshots go to the test's temporary folder and their pixels are checked."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.service.conftest import scripted

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
RED = (220, 38, 38)  # the default palette's fake


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        if os.environ.get("DFSTREAM_REQUIRE_SERVERS") == "1":
            pytest.fail("Chromium is missing: apt-get install chromium chromium-driver")
        pytest.skip("Chromium and its driver are not installed (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=640,360",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.execute_cdp_cmd("Emulation.setDefaultBackgroundColorOverride", {"color": {"r": 0, "g": 0, "b": 0, "a": 0}})
    # the page's viewport is the video's size, as an OBS browser source is set
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 640, "height": 360, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


def screenshot(driver, path: Path) -> np.ndarray:
    """The page as BGRA pixels (alpha 0 where it is transparent); also written to ``path``."""
    png = driver.get_screenshot_as_png()
    path.write_bytes(png)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape[2] == 4, "the screenshot has no alpha channel"
    return image


def wait_for(driver, script: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def colour_mask(image: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    bgr = np.array([rgb[2], rgb[1], rgb[0]])
    return (np.abs(image[:, :, :3].astype(int) - bgr).sum(axis=2) < 40) & (image[:, :, 3] > 200)


@pytest.mark.weights
def test_the_overlay_draws_box_and_badge_over_a_transparent_page_and_reconnects(browser, serve, rtsp_server, tmp_path):
    long_clip = __import__("stream").make_sample_clip(tmp_path / "face_40s.mp4", seconds=40.0)
    camera = rtsp_server({"/cam1": long_clip})
    served = serve([{"id": "cam1", "url": camera.url("/cam1")}], detectors=[scripted(tmp_path, [])],
                   smoothing={"method": "ema", "alpha": 0.5, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.2})  # fmt: skip
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
    wait_for(browser, "return document.body.dataset.feed === 'open' && document.getElementById('badge').dataset.label === 'fake'", 60,
             "the page to reconnect and show the badge again")  # fmt: skip
    with served.client() as anonymous:
        page = anonymous.get("/overlay/cam1")
        assert page.status_code == 200 and "connect-src 'self'" in page.headers["content-security-policy"]
        assert anonymous.get("/overlay/cam9").status_code == 404
