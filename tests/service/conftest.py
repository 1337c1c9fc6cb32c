"""A real PostgreSQL (Debian's, run by initdb / pg_ctl in a temporary directory) and a real
`dfstream serve` process on loopback, with users of each role."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml

from tests.helpers import REPO, TEST_WEIGHTS, free_port, mesonets, wait_listening, wait_until

# `dfstream` with the test-only detector type registered (plugins register on import)
LAUNCH = "import sys, tests.scripted_detector; from dfstream.cli import main; sys.exit(main(sys.argv[1:]))"
PASSWORD = "correct horse battery"
ROLES = ("admin", "analyst", "viewer")


def dfstream(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# ---- PostgreSQL --------------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """A throwaway cluster on a free loopback port; ``stop`` / ``start`` to play a restart."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="dfstream-pg-"))
        self.port = free_port()
        self.data = self.root / "data"
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "dfstream", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def start(self) -> Postgres:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "30", "start"
        )
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def create(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dfstream", name)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql+psycopg://dfstream@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        try:
            self.stop()
        except AssertionError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("DFSTREAM_REQUIRE_SERVERS") == "1":
            pytest.fail("PostgreSQL is missing: apt-get install postgresql")
        pytest.skip("PostgreSQL's initdb / pg_ctl are not installed (apt-get install postgresql)")
    server = Postgres(bin_dir).start()
    yield server
    server.close()


_databases = iter(range(1, 10_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dfstream.db'}"
    return request.getfixturevalue("postgres").create(f"dfstream_{os.getpid()}_{next(_databases)}")


# ---- dfstream serve ------------------------------------------------------------------------------
def write_config(folder: Path, streams: list[dict], api: dict, detectors: list[dict] | None = None, **sections) -> Path:
    config = {
        "streams": streams,
        "faces": {"detect_every": 3, "detect_max_side": 640},
        "detectors": detectors or mesonets(TEST_WEIGHTS),
        "api": {"data_dir": str(folder / "data"), **api},
        **sections,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def scripted(folder: Path, windows: list[tuple[float, float]], name: str = "script.json") -> dict:
    """A ``scripted`` detector entry, fake during ``windows`` (epoch seconds)."""
    path = folder / name
    path.write_text(json.dumps({"base": 0.05, "fake": 0.95, "windows": windows}))
    return {"name": "scripted", "type": "scripted", "weights": str(path)}


class Served:
    """`dfstream serve CONFIG` in its own process, with a user of each role (password PASSWORD)."""

    def __init__(self, config: Path, port: int):
        self.config = config
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.log = config.parent / "serve.log"
        self._tokens: dict[str, str] = {}

    def add_users(self) -> Served:
        for role in ROLES:
            result = dfstream(
                "users", "add", str(self.config), role, "--role", role, env={"DFSTREAM_ADMIN_PASSWORD": PASSWORD}
            )
            assert result.returncode == 0, result.stderr
        return self

    def start(self, timeout: float = 60) -> Served:
        self._tokens.clear()
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, "serve", str(self.config), "--offline"],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_listening([self.port], self.process, "dfstream serve", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()[-3000:]}") from None
        return self

    def token(self, role: str) -> str:
        if role not in self._tokens:
            answer = httpx.post(
                f"{self.base}/api/v1/auth/token", data={"username": role, "password": PASSWORD}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            self._tokens[role] = answer.json()["access_token"]
        return self._tokens[role]

    def client(self, role: str | None = None, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(role)}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill(signal.SIGTERM)

    def wait_media(
        self, media_id: int, role: str = "viewer", timeout: float = 120, until: tuple[str, ...] = ("done", "failed")
    ) -> dict:
        found: dict = {}

        def finished() -> bool:
            with self.client(role) as client:
                found.update(client.get(f"/api/v1/media/{media_id}").json())
            return found["status"] in until

        wait_until(finished, timeout, f"media {media_id} to reach {until}")
        return found


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """Start `dfstream serve` on a config written from the arguments; stopped after the test."""
    started: list[Served] = []

    def start(streams: list[dict], api: dict | None = None, users: bool = True, **sections) -> Served:
        port = free_port()
        config = write_config(tmp_path, streams, {"port": port, **(api or {})}, **sections)
        served = Served(config, port)
        if users:
            served.add_users()
        started.append(served.start())
        return served

    yield start
    for served in started:
        served.stop()


# ---- a real browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium driven by Selenium: ``chromium(width, height)`` opens one with that viewport."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        if os.environ.get("DFSTREAM_REQUIRE_SERVERS") == "1":
            pytest.fail("Chromium is missing: apt-get install chromium chromium-driver")
        pytest.skip("Chromium and its driver are not installed (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    from selenium import webdriver

    opened = []

    def open_browser(width: int, height: int, flags: tuple[str, ...] = (), headless: bool = True):
        """``flags``: more of Chromium's (fake media devices); ``headless=False``: on $DISPLAY (Xvfb)."""
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (
            *(("--headless=new",) if headless else ()),
            *flags,
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={width},{height}",
        ):
            options.add_argument(flag)
        session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
        session.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        opened.append(session)
        return session

    yield open_browser
    for session in opened:
        session.quit()


def screenshot(driver, path: Path, element=None) -> np.ndarray:
    """The page (or one element) as BGRA pixels; also written to ``path`` (the test's own folder,
    or $DFSTREAM_SCREENSHOTS for the README's pictures)."""
    png = element.screenshot_as_png if element is not None else driver.get_screenshot_as_png()
    path.write_bytes(png)
    folder = os.environ.get("DFSTREAM_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / path.name).write_bytes(png)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    return image if image.shape[2] == 4 else np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])


def log_in(driver, base: str, username: str = "analyst") -> None:
    """The web UI's login form, filled in and sent as a person would (password PASSWORD)."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()


def wait_for(driver, script: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def colour_mask(image: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """Opaque pixels of (about) this colour."""
    bgr = np.array([rgb[2], rgb[1], rgb[0]])
    return (np.abs(image[:, :, :3].astype(int) - bgr).sum(axis=2) < 40) & (image[:, :, 3] > 200)


def sse_events(response: httpx.Response) -> Iterator[dict]:
    """The Server-Sent Events of a streaming response, as a client parses them: {"id", "event",
    "data"} (data parsed as JSON where it is), comments skipped, an event without id: has id None."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                try:
                    data = json.loads(fields["data"])
                except ValueError:
                    data = fields["data"]
                yield {"id": fields.get("id"), "event": fields.get("event", "message"), "data": data}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
