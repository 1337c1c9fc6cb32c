"""The service's figures, from a real `dfstream serve` on loopback:

    python -m bench.api --weights DIR [--database URL ...] [--events 100000] [--clients 50] [--upload-mb 500]

- GET /api/v1/events latency (p50 / p99) with ``--events`` events in the database, under ``--clients``
  concurrent clients (a mix: newest page, a stream filter, a time range, the second page);
- upload throughput (MB/s) of a ``--upload-mb`` video, and the server's resident memory while it
  streams in (sampled every 50 ms).

Each ``--database`` (default: SQLite in a temporary folder) must be empty; the events are written
straight into it, as the store sink writes them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import av
import httpx
import numpy as np
import psutil
import yaml
from sqlalchemy import insert

from service.db.models import StoredEvent
from service.db.schema import make_engine, upgrade
from stream import make_sample_clip

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench password"


def fill_events(url: str, count: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    now = time.time()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        started = dt.datetime.fromtimestamp(now - (count - i) * 3.0, dt.UTC)
        p = float(rng.uniform(0.7, 1.0))
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "stream": f"cam{i % 20}",
                "track_id": i,
                "label": "fake",
                "started_at": started,
                "ended_at": started + dt.timedelta(seconds=2),
                "peak_probability": p,
                "peak_at": started,
                "mean_probability": p - 0.05,
                "verdicts": 60,
                "models_at_peak": {"meso4": p, "mesoinception4": p},
                "models_mean": {"meso4": p, "mesoinception4": p},
                "bbox_at_peak": [100.0, 50.0, 180.0, 150.0],
                "updated_at": started,
            }
        )
    with engine.begin() as connection:
        for start in range(0, count, 5000):
            connection.execute(insert(StoredEvent), rows[start : start + 5000])
    engine.dispose()


def start_server(folder: Path, url: str, weights: Path, port: int, upload_mb: int) -> subprocess.Popen:
    config = {
        "streams": [{"id": "cam0", "url": "sample://astronaut", "pace": "realtime", "loop": True, "fps": 2}],
        "detectors": [{"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5")}],
        "api": {
            "port": port,
            "database": url,
            "data_dir": str(folder / "data"),
            "max_upload_mb": upload_mb + 10,
            "analysis": {"frames": 8},
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "DFSTREAM_ADMIN_PASSWORD": PASSWORD}
    subprocess.run(
        [sys.executable, "-m", "dfstream", "users", "add", str(path), "bench", "--role", "analyst"],
        env=env,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dfstream", "serve", str(path), "--offline"],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "serve.log", "w"),
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"dfstream serve did not start: {(folder / 'serve.log').read_text()[-2000:]}")


async def event_latencies(base: str, token: str, clients: int, per_client: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=60, limits=httpx.Limits(max_connections=clients)
    ) as client:
        first = (await client.get("/api/v1/events", params={"limit": 50})).json()
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
        queries = [
            {"limit": 50},
            {"limit": 50, "stream": "cam7"},
            {"limit": 50, "since": since},
            {"limit": 50, "cursor": first["next_cursor"]},
        ]
        timings: list[float] = []

        async def one(k: int) -> None:
            for i in range(per_client):
                started = time.perf_counter()
                answer = await client.get("/api/v1/events", params=queries[(k + i) % len(queries)])
                timings.append(time.perf_counter() - started)
                assert answer.status_code == 200 and len(answer.json()["items"]) == 50, answer.text

        await asyncio.gather(*(one(k) for k in range(clients)))
    return timings


def big_video(path: Path, megabytes: int) -> Path:
    """A valid MPEG-TS of the sample clip repeated to ``megabytes`` (TS segments concatenate)."""
    clip = make_sample_clip(path.with_name("sample.mp4"), seconds=10.0)
    segment = path.with_name("segment.ts")
    with av.open(str(clip)) as source, av.open(str(segment), "w", format="mpegts") as out:
        out_stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    data = segment.read_bytes()
    with path.open("wb") as fh:
        for _ in range(megabytes * 1_000_000 // len(data) + 1):
            fh.write(data)
    return path


def upload(base: str, token: str, path: Path, pid: int) -> tuple[float, float, float]:
    """(MB/s, the server's RSS before, its peak RSS during the upload) in MB."""
    process = psutil.Process(pid)
    before = process.memory_info().rss / 1e6
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss / 1e6)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with path.open("rb") as fh:
        answer = httpx.post(
            f"{base}/api/v1/media",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": ("big.ts", fh)},
            timeout=600,
        )
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    assert answer.status_code == 201, answer.text
    return path.stat().st_size / 1e6 / elapsed, before, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api")
    parser.add_argument("--weights", type=Path, required=True, help="folder with Meso4_DF.h5")
    parser.add_argument(
        "--database", action="append", help="empty databases to measure (default: SQLite in a temporary folder)"
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--upload-mb", type=int, default=500, help="0: skip the upload figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dfstream-bench-api-") as tmp:
        root = Path(tmp)
        for k, url in enumerate(args.database or [f"sqlite:///{root / 'sqlite' / 'dfstream.db'}"]):
            folder = root / f"db{k}"
            folder.mkdir()
            kind = url.split(":", 1)[0].split("+")[0]
            started = time.perf_counter()
            fill_events(url, args.events)
            print(f"{kind}: {args.events} events written in {time.perf_counter() - started:.1f} s", flush=True)
            port = 18000 + k
            server = start_server(folder, url, args.weights, port, args.upload_mb)
            try:
                base = f"http://127.0.0.1:{port}"
                token = httpx.post(
                    f"{base}/api/v1/auth/token", data={"username": "bench", "password": PASSWORD}
                ).json()["access_token"]
                for clients, requests in ((1, 100), (args.clients, args.requests)):
                    started = time.perf_counter()
                    timings = sorted(asyncio.run(event_latencies(base, token, clients, requests)))
                    rate = len(timings) / (time.perf_counter() - started)
                    p50, p99 = statistics.median(timings) * 1e3, timings[int(0.99 * (len(timings) - 1))] * 1e3
                    print(
                        f"{kind}: GET /events with {args.events} events, {clients} clients x {requests}: "
                        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {rate:.0f} requests/s",
                        flush=True,
                    )
                if args.upload_mb and k == 0:
                    video = big_video(root / "big.ts", args.upload_mb)
                    rate, before, peak = upload(base, token, video, server.pid)
                    print(
                        f"upload of {video.stat().st_size / 1e6:.0f} MB: {rate:.0f} MB/s; server RSS "
                        f"{before:.0f} MB before, "
                        f"peak {peak:.0f} MB during (+{peak - before:.0f} MB)",
                        flush=True,
                    )
                    video.unlink()
            finally:
                server.terminate()
                server.wait(30)


if __name__ == "__main__":
    main()
